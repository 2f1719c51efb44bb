#!/usr/bin/env python3
"""validate_json.py SCHEMA FILE: exit 0 if FILE validates against SCHEMA (jsonschema), else print
the first error and exit 1. Exit 77 when jsonschema is not installed (the tests skip then)."""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("python3-jsonschema is not installed", file=sys.stderr)
    sys.exit(77)

schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
try:
    jsonschema.validate(doc, schema)
except jsonschema.ValidationError as e:
    print(f"{sys.argv[2]}: {e.message} at {list(e.absolute_path)}", file=sys.stderr)
    sys.exit(1)
