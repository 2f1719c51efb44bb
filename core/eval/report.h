#pragma once
// The self-contained HTML report of a fairness run (`prefmix fairness` writes DIR/report.html).
//
// Plots are drawn by gnuplot (Debian's gnuplot-nox, svg terminal) from generated scripts and
// inlined as SVG, so the page needs no network, no files beside it and no JavaScript. Where
// gnuplot is missing the report keeps every table and says why the plots are absent.
#include <string>
#include <vector>

#include "core/io/json.h"

namespace prefmix {

/// The gnuplot executable: $PREFMIX_GNUPLOT when set ("" or "none": plots off), else
/// `gnuplot` found on PATH; "" when there is none.
std::string FindGnuplot();

/// Runs gnuplot on `script` (which must not set the terminal or output: they are prepended as
/// an svg terminal of the given size). Returns the <svg> element, or "" on failure with the
/// reason in *error.
std::string GnuplotSvg(const std::string& gnuplot, const std::string& script, int width, int height,
                       std::string* error);

/// HTML of the report for a fairness JSON (data/schema/fairness.schema.json). `gnuplot` = ""
/// renders tables only with a note. Plot failures are appended to *warnings (also noted in
/// the page).
std::string FairnessReportHtml(const Json& fairness, const std::string& gnuplot,
                               std::vector<std::string>* warnings);

/// Escapes &, <, >, " for HTML text and attribute values.
std::string HtmlEscape(const std::string& s);

}  // namespace prefmix
