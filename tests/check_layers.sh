#!/usr/bin/env bash
# The import picture (docs/development.md#layout), checked over every #include in the tree:
#   core/ (base: error, rng, threads, device) <- core/io <- core/userstep <- core/model <- core/eval
#   mixture/, routing/, personalization/ and cuda/ stand on core and never include each other;
#   apps/ includes core/, data/ and apps/ only (families come from the registry).
# Prints each violation and exits 1 if there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
check() {  # check FILES_GLOB_DIR ALLOWED_REGEX
  local dir=$1 allowed=$2
  while IFS= read -r line; do
    file=${line%%:*}
    inc=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$line")
    if ! grep -Eq "^($allowed)" <<<"$inc"; then
      echo "layer violation: $file includes $inc"
      bad=1
    fi
  done < <(grep -rHE '^#include "' "$dir" --include='*.h' --include='*.cpp' --include='*.cu' \
             --include='*.cuh' | sed -E 's/^([^:]+):[0-9]*:?/\1:/' || true)
}
base='core/(error|rng|threads|device)\.h|prefmix/version\.h'
# core's base files sit directly in core/ (not in a room).
for f in core/*.h core/*.cpp; do
  { grep -HE '^#include "' "$f" || true; } | while IFS= read -r line; do
    inc=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$line")
    grep -Eq "^($base)$" <<<"$inc" || echo "layer violation: $f includes $inc"
  done
done >"${TMPDIR:-/tmp}/prefmix_layers.$$"
if [ -s "${TMPDIR:-/tmp}/prefmix_layers.$$" ]; then
  cat "${TMPDIR:-/tmp}/prefmix_layers.$$"
  bad=1
fi
rm -f "${TMPDIR:-/tmp}/prefmix_layers.$$"
check core/io "$base|core/io/"
check core/userstep "$base|core/io/|core/userstep/"
check core/torch "$base|core/io/|core/torch/"
check core/model "$base|core/io/|core/userstep/|core/model/"
check core/eval "$base|core/io/|core/userstep/|core/model/|core/eval/"
check mixture "core/|mixture/"
check routing "core/|routing/"
check personalization "core/|personalization/"
check cuda "core/|cuda/"
check apps "core/|data/|apps/|prefmix/version\.h"
check data "core/|data/"
if [ "$bad" -ne 0 ]; then exit 1; fi
echo "layers ok: no upward include in core, no include between families, apps on core only"
