#include "core/eval/report.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace prefmix {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Single-quoted shell word.
std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

/// A gnuplot string literal (double quotes; quotes and backslashes dropped from labels).
std::string GpStr(const std::string& s) {
  std::string out = "\"";
  for (char c : s)
    if (c != '"' && c != '\\' && c != '\n') out += c;
  return out + "\"";
}

std::string Num(double v, int prec = 3) {
  if (!std::isfinite(v)) return "n/a";
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(prec);
  os << v;
  return os.str();
}

std::string Gp(double v) {
  std::ostringstream os;
  os.precision(8);
  os << v;
  return os.str();
}

/// "0.712 [0.701, 0.723]" from an entry with key and key_ci.
std::string WithCi(const Json& e, const std::string& key) {
  std::string s = Num(e.at(key).number());
  if (e.contains(key + "_ci")) {
    const auto& ci = e.at(key + "_ci").items();
    s += " <span class=\"ci\">[" + Num(ci[0].number()) + ", " + Num(ci[1].number()) + "]</span>";
  }
  return s;
}

/// The plot element (inlined svg) or, when it could not be drawn, a note.
class Plotter {
 public:
  Plotter(std::string gnuplot, std::vector<std::string>* warnings)
      : gnuplot_(std::move(gnuplot)), warnings_(warnings) {}
  bool enabled() const { return !gnuplot_.empty(); }
  std::string Figure(const std::string& id, const std::string& caption, const std::string& script,
                     int width = 760, int height = 380) {
    if (!enabled()) return "";
    std::string err;
    std::string svg = GnuplotSvg(gnuplot_, script, width, height, &err);
    if (svg.empty()) {
      if (warnings_) warnings_->push_back(Cat("plot '", id, "' not drawn: ", err));
      return "<p class=\"note\">Plot '" + HtmlEscape(id) +
             "' could not be drawn: " + HtmlEscape(err) + "</p>\n";
    }
    return "<figure class=\"plot\" id=\"plot-" + HtmlEscape(id) + "\">\n" + svg + "\n<figcaption>" +
           HtmlEscape(caption) + "</figcaption></figure>\n";
  }

 private:
  std::string gnuplot_;
  std::vector<std::string>* warnings_;
};

const char* kStyle = R"(<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.ci{color:#777;font-size:.85em}.note{background:#fff6d6;border:1px solid #e0c060;padding:.5em .8em}
.worst{background:#fde2e2}figure.plot{margin:1em 0}figure.plot svg{max-width:100%;height:auto}
figcaption{color:#555;font-size:.9em}code{background:#f3f3f3;padding:0 .2em}
</style>)";

std::string BarsScript(const Json& models, const std::string& grouping,
                       const std::vector<std::string>& labels) {
  // Rows = groups, per model three columns: accuracy, CI low, CI high.
  std::ostringstream d;
  double lo_all = 1, hi_all = 0;
  std::vector<std::string> used_labels;
  for (const auto& label : labels) {
    std::ostringstream row;
    row << GpStr(label);
    bool any = false;
    for (const auto& m : models.items()) {
      double a = NAN, lo = NAN, hi = NAN;
      if (m.contains("per_group") && m.at("per_group").contains(grouping)) {
        const Json& gs = m.at("per_group").at(grouping).at("groups");
        if (gs.contains(label)) {
          const Json& e = gs.at(label);
          a = e.at("accuracy").number();
          lo = hi = a;
          if (e.contains("accuracy_ci")) {
            lo = e.at("accuracy_ci").items()[0].number();
            hi = e.at("accuracy_ci").items()[1].number();
          }
          any = true;
          lo_all = std::min(lo_all, lo);
          hi_all = std::max(hi_all, hi);
        }
      }
      if (std::isnan(a))
        row << " NaN NaN NaN";
      else
        row << " " << Gp(a) << " " << Gp(lo) << " " << Gp(hi);
    }
    if (any) {
      d << row.str() << "\n";
      used_labels.push_back(label);
    }
  }
  const double ymin = std::max(0.0, std::floor((lo_all - 0.05) * 20) / 20);
  const double ymax = std::min(1.0, std::ceil((hi_all + 0.03) * 20) / 20);
  std::ostringstream s;
  s << "$d << EOD\n" << d.str() << "EOD\n";
  s << "set style data histogram\nset style histogram errorbars gap 2 lw 1\n"
    << "set style fill solid 0.75 border -1\nset boxwidth 0.9\n"
    << "set yrange [" << Gp(ymin) << ":" << Gp(ymax) << "]\n"
    << "set ylabel \"accuracy\"\nset xlabel " << GpStr(grouping) << "\n"
    << "set key outside right top\nset grid ytics\n";
  s << "plot ";
  size_t i = 0;
  for (const auto& m : models.items()) {
    const int c = 2 + 3 * static_cast<int>(i);
    if (i) s << ", ";
    s << "$d using " << c << ":" << c + 1 << ":" << c + 2;
    if (i == 0) s << ":xtic(1)";
    s << " title " << GpStr(m.at("model").str());
    ++i;
  }
  s << "\n";
  return s.str();
}

std::string ScatterScript(const Json& models) {
  std::ostringstream d;
  double lo = 1, hi = 0;
  for (const auto& m : models.items()) {
    if (!m.contains("worst_group")) continue;
    const double a = m.at("accuracy").number(), w = m.at("worst_group").at("accuracy").number();
    d << GpStr(m.at("model").str()) << " " << Gp(a) << " " << Gp(w) << "\n";
    lo = std::min({lo, a, w});
    hi = std::max({hi, a, w});
  }
  const double ymin = std::max(0.0, std::floor((lo - 0.03) * 20) / 20);
  const double ymax = std::min(1.0, std::ceil((hi + 0.03) * 20) / 20);
  std::ostringstream s;
  s << "$d << EOD\n" << d.str() << "EOD\n";
  s << "set xrange [" << Gp(ymin) << ":" << Gp(ymax) << "]\nset yrange [" << Gp(ymin) << ":"
    << Gp(ymax) << "]\n"
    << "set xlabel \"mean accuracy (all test pairs)\"\nset ylabel \"worst-group accuracy\"\n"
    << "set grid\nset key bottom right\nset size square\n"
    << "plot x with lines dt 2 lc rgb \"#999999\" title \"worst = mean\", "
    << "$d using 2:3 with points pt 7 ps 1.5 lc rgb \"#1f77b4\" notitle, "
    << "$d using 2:3:1 with labels offset 1,1 left notitle\n";
  return s.str();
}

std::string ShotsScript(const Json& models, const std::string& grouping) {
  std::ostringstream s;
  std::vector<std::string> series;
  int n = 0;
  for (const auto& m : models.items()) {
    if (!m.contains("shots")) continue;
    if (grouping.empty()) {
      s << "$s" << n << " << EOD\n";
      for (const auto& e : m.at("shots").items())
        s << e.at("k").number() << " " << Gp(e.at("accuracy").number()) << "\n";
      s << "EOD\n";
      series.push_back("$s" + std::to_string(n) + " using 1:2 with linespoints lw 2 title " +
                       GpStr(m.at("model").str()));
      ++n;
      continue;
    }
    // One line per (model, group) of this grouping.
    std::vector<std::string> groups;
    for (const auto& e : m.at("shots").items())
      if (e.contains("per_group") && e.at("per_group").contains(grouping))
        for (const auto& kv : e.at("per_group").at(grouping).members())
          if (std::find(groups.begin(), groups.end(), kv.first) == groups.end())
            groups.push_back(kv.first);
    for (const auto& g : groups) {
      s << "$s" << n << " << EOD\n";
      for (const auto& e : m.at("shots").items())
        if (e.contains("per_group") && e.at("per_group").contains(grouping) &&
            e.at("per_group").at(grouping).contains(g))
          s << e.at("k").number() << " " << Gp(e.at("per_group").at(grouping).at(g).number())
            << "\n";
      s << "EOD\n";
      series.push_back("$s" + std::to_string(n) + " using 1:2 with linespoints title " +
                       GpStr(m.at("model").str() + ": " + g));
      ++n;
    }
  }
  if (series.empty()) return "";
  s << "set xlabel \"shots (support pairs per new user)\"\nset ylabel \"accuracy on the queries\"\n"
    << "set grid\nset key outside right top\nplot ";
  for (size_t i = 0; i < series.size(); ++i) s << (i ? ", " : "") << series[i];
  s << "\n";
  return s.str();
}

std::string HistScript(const Json& models) {
  std::ostringstream d;
  const Json* first = nullptr;
  for (const auto& m : models.items())
    if (m.contains("per_user") && m.at("per_user").contains("histogram")) {
      first = &m;
      break;
    }
  if (!first) return "";
  const auto& edges = first->at("per_user").at("histogram").at("edges").items();
  const size_t bins = edges.size() - 1;
  std::vector<const Json*> used;
  for (const auto& m : models.items())
    if (m.contains("per_user") && m.at("per_user").contains("histogram") &&
        m.at("per_user").at("histogram").at("counts").size() == bins)
      used.push_back(&m);
  for (size_t b = 0; b < bins; ++b) {
    d << Gp(0.5 * (edges[b].number() + edges[b + 1].number()));
    for (const Json* m : used) {
      const double n = m->at("per_user").at("n_users").number();
      d << " " << Gp(m->at("per_user").at("histogram").at("counts").items()[b].number() / n);
    }
    d << "\n";
  }
  std::ostringstream s;
  s << "$d << EOD\n" << d.str() << "EOD\n";
  s << "set xrange [0:1]\nset yrange [0:*]\nset xlabel \"per-user accuracy\"\n"
    << "set ylabel \"share of users\"\nset grid\nset key outside right top\nplot ";
  for (size_t i = 0; i < used.size(); ++i)
    s << (i ? ", " : "") << "$d using 1:" << i + 2 << " with histeps lw 2 title "
      << GpStr(used[i]->at("model").str());
  s << "\n";
  return s.str();
}

/// Table of one grouping: a row per (group), a column block per model.
std::string GroupTable(const Json& models, const std::string& grouping,
                       const std::vector<std::string>& labels) {
  std::ostringstream h;
  h << "<table><tr><th>group</th>";
  for (const auto& m : models.items())
    h << "<th>" << HtmlEscape(m.at("model").str()) << " accuracy</th><th>log loss</th>";
  h << "<th>users</th><th>pairs</th></tr>\n";
  std::vector<std::string> all = labels;
  all.push_back("unknown");
  for (const auto& label : all) {
    std::ostringstream row;
    bool any = false;
    int64_t users = -1, pairs = -1;
    row << "<tr><td>" << HtmlEscape(label) << "</td>";
    for (const auto& m : models.items()) {
      const Json* e = nullptr;
      if (m.contains("per_group") && m.at("per_group").contains(grouping) &&
          m.at("per_group").at(grouping).at("groups").contains(label))
        e = &m.at("per_group").at(grouping).at("groups").at(label);
      if (!e) {
        row << "<td>–</td><td>–</td>";
        continue;
      }
      any = true;
      const bool worst = m.at("per_group").at(grouping).at("worst").at("group").str() == label;
      row << "<td" << (worst ? " class=\"worst\"" : "") << ">" << WithCi(*e, "accuracy")
          << "</td><td>" << WithCi(*e, "log_loss") << "</td>";
      users = static_cast<int64_t>(e->at("n_users").number());
      pairs = static_cast<int64_t>(e->at("n_pairs").number());
    }
    row << "<td>" << users << "</td><td>" << pairs << "</td></tr>\n";
    if (any) h << row.str();
  }
  h << "<tr><td><em>best − worst gap</em></td>";
  for (const auto& m : models.items()) {
    if (m.contains("per_group") && m.at("per_group").contains(grouping))
      h << "<td>" << Num(m.at("per_group").at(grouping).at("gap").number()) << "</td><td></td>";
    else
      h << "<td>–</td><td></td>";
  }
  h << "<td></td><td></td></tr></table>\n";
  return h.str();
}

}  // namespace

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string FindGnuplot() {
  if (const char* env = std::getenv("PREFMIX_GNUPLOT")) {
    std::string p = env;
    if (p.empty() || p == "none") return "";
    return access(p.c_str(), X_OK) == 0 ? p : "";
  }
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string p = dir + "/gnuplot";
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

std::string GnuplotSvg(const std::string& gnuplot, const std::string& script, int width, int height,
                       std::string* error) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "prefmix-plot-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    if (error) *error = "cannot create a temporary directory";
    return "";
  }
  const std::string dir = buf.data();
  const std::string gp = dir + "/plot.gp", svg = dir + "/plot.svg", err = dir + "/err.txt";
  {
    std::ofstream f(gp);
    f << "set terminal svg size " << width << "," << height
      << " fixed noenhanced font 'Helvetica,12' background rgb 'white'\n"
      << "set output " << GpStr(svg) << "\n"
      << script << "unset output\n";
  }
  const std::string cmd = ShellQuote(gnuplot) + " " + ShellQuote(gp) + " >/dev/null 2>" +
                          ShellQuote(err) + " </dev/null";
  const int status = std::system(cmd.c_str());
  std::string out = ReadAll(svg);
  const std::string err_text = ReadAll(err);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  const bool ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  const size_t start = out.find("<svg");
  const size_t end = out.rfind("</svg>");
  if (!ok || start == std::string::npos || end == std::string::npos) {
    if (error) {
      std::string e = err_text.substr(0, 300);
      *error = Cat(gnuplot, " failed (exit ", WIFEXITED(status) ? WEXITSTATUS(status) : -1, ")",
                   e.empty() ? "" : ": ", e);
    }
    return "";
  }
  return out.substr(start, end + 6 - start);
}

std::string FairnessReportHtml(const Json& f, const std::string& gnuplot,
                               std::vector<std::string>* warnings) {
  Plotter plot(gnuplot, warnings);
  const Json& models = f.at("models");
  const Json& ds = f.at("dataset");
  const Json& proto = f.at("protocol");
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    << "<title>prefmix fairness report</title>\n"
    << kStyle << "</head><body>\n<h1>prefmix fairness report</h1>\n";
  h << "<p>Dataset <code>" << HtmlEscape(ds.at("source").str())
    << "</code>: " << static_cast<int64_t>(ds.at("n_users").number()) << " users, "
    << static_cast<int64_t>(ds.at("n_items").number()) << " items, "
    << static_cast<int64_t>(ds.at("n_pairs").number()) << " pairs. Protocol <b>"
    << HtmlEscape(proto.at("name").str()) << "</b> (seed "
    << static_cast<int64_t>(proto.at("seed").number()) << ")";
  if (proto.contains("repeats"))
    h << ", " << static_cast<int64_t>(proto.at("repeats").number())
      << " repeats pooled (a user drawn in several repeats pools their pairs)";
  h << ". Groups need at least " << static_cast<int64_t>(proto.at("min_group_users").number())
    << " users with test pairs.";
  const Json& bs = f.at("bootstrap");
  if (bs.at("resamples").number() > 0)
    h << " Intervals: " << Num(100 * bs.at("level").number(), 0) << "% percentile bootstrap over "
      << "users (" << static_cast<int64_t>(bs.at("resamples").number()) << " resamples).";
  if (f.contains("provenance") && f.at("provenance").contains("commit"))
    h << " prefmix " << HtmlEscape(f.at("provenance").at("version").str()) << " ("
      << HtmlEscape(f.at("provenance").at("commit").str()) << ").";
  h << "</p>\n";
  if (!plot.enabled())
    h << "<p class=\"note\" id=\"no-plots\">Plots are not shown: gnuplot was not found "
      << "(install Debian's <code>gnuplot-nox</code>, or set <code>PREFMIX_GNUPLOT</code> to "
      << "its path). The tables carry every number the plots would show.</p>\n";

  // Summary.
  h << "<h2>Summary</h2>\n<table><tr><th>model</th><th>accuracy</th><th>log loss</th>"
    << "<th>worst group</th><th>worst-group accuracy</th><th>largest best − worst gap</th>"
    << "<th>per-user accuracy p10 / p50 / p90</th><th>Kendall τ (mean user / pooled)</th>"
    << "<th>train s</th></tr>\n";
  for (const auto& m : models.items()) {
    h << "<tr><td>" << HtmlEscape(m.at("model").str())
      << (m.contains("baseline") ? " <em>(baseline)</em>" : "") << "</td><td>"
      << WithCi(m, "accuracy") << "</td><td>" << WithCi(m, "log_loss") << "</td>";
    if (m.contains("worst_group")) {
      const Json& w = m.at("worst_group");
      h << "<td>" << HtmlEscape(w.at("attribute").str() + " = " + w.at("group").str())
        << "</td><td>" << Num(w.at("accuracy").number()) << "</td>";
    } else {
      h << "<td>–</td><td>–</td>";
    }
    if (m.contains("max_gap"))
      h << "<td>" << Num(m.at("max_gap").at("gap").number()) << " ("
        << HtmlEscape(m.at("max_gap").at("attribute").str()) << ")</td>";
    else
      h << "<td>–</td>";
    const Json& pu = m.at("per_user");
    h << "<td>" << Num(pu.at("p10").number()) << " / " << Num(pu.at("p50").number()) << " / "
      << Num(pu.at("p90").number()) << "</td>";
    if (m.contains("kendall_tau"))
      h << "<td>" << Num(m.at("kendall_tau").at("mean_user").number()) << " / "
        << Num(m.at("kendall_tau").at("pooled").number()) << "</td>";
    else
      h << "<td>–</td>";
    h << "<td>"
      << (m.contains("timing") ? Num(m.at("timing").at("train_seconds").number(), 2) : "–")
      << "</td></tr>\n";
  }
  h << "</table>\n";
  for (const auto& m : models.items())
    if (m.contains("baseline") && m.contains("implied_fraction"))
      h << "<p>The <b>" << HtmlEscape(m.at("model").str())
        << "</b> baseline predicts a test pair from the user's own training pairs through "
        << "transitivity (others at 0.5): " << Num(100 * m.at("implied_fraction").number(), 1)
        << "% of the test pairs are implied by the training pairs, so that share of any "
        << "accuracy figure needs no model.</p>\n";
  h << plot.Figure("scatter", "Worst-group accuracy against mean accuracy, one point per model.",
                   ScatterScript(models), 560, 480);

  // Per grouping.
  for (const auto& g : f.at("groupings").items()) {
    const std::string name = g.at("name").str();
    std::vector<std::string> labels;
    for (const auto& l : g.at("labels").items()) labels.push_back(l.str());
    bool any = false;
    for (const auto& m : models.items())
      any |= m.contains("per_group") && m.at("per_group").contains(name);
    h << "<h2>By " << HtmlEscape(name) << "</h2>\n";
    if (!any) {
      h << "<p>No group of " << HtmlEscape(name) << " has enough users with test pairs.</p>\n";
      continue;
    }
    std::vector<std::string> with_unknown = labels;
    with_unknown.push_back("unknown");
    h << plot.Figure("bars-" + name,
                     "Accuracy per " + name + " group and model, with bootstrap intervals.",
                     BarsScript(models, name, with_unknown));
    h << GroupTable(models, name, labels);
  }

  // Latent groups.
  bool latent = false;
  for (const auto& m : models.items()) latent |= m.contains("latent_groups");
  if (latent) {
    h << "<h2>Latent groups</h2>\n<p>Users grouped by the model's own latent (the argmax "
      << "component of a latent on the simplex: mixture weights or responsibilities).</p>\n";
    for (const auto& m : models.items()) {
      if (!m.contains("latent_groups")) continue;
      h << "<h3>" << HtmlEscape(m.at("model").str()) << "</h3>\n<table><tr><th>component</th>"
        << "<th>accuracy</th><th>log loss</th><th>users</th><th>pairs</th></tr>\n";
      for (const auto& kv : m.at("latent_groups").at("groups").members())
        h << "<tr><td>" << HtmlEscape(kv.first) << "</td><td>" << WithCi(kv.second, "accuracy")
          << "</td><td>" << WithCi(kv.second, "log_loss") << "</td><td>"
          << static_cast<int64_t>(kv.second.at("n_users").number()) << "</td><td>"
          << static_cast<int64_t>(kv.second.at("n_pairs").number()) << "</td></tr>\n";
      h << "</table>\n";
    }
  }

  // Shots.
  bool shots = false;
  for (const auto& m : models.items()) shots |= m.contains("shots");
  if (shots) {
    h << "<h2>New users: accuracy against shots</h2>\n";
    h << plot.Figure("shots", "Accuracy on the held-out users' queries after k support pairs.",
                     ShotsScript(models, ""));
    h << "<table><tr><th>model</th>";
    const Json* ref = nullptr;
    for (const auto& m : models.items())
      if (m.contains("shots")) {
        ref = &m;
        break;
      }
    for (const auto& e : ref->at("shots").items())
      h << "<th>k = " << static_cast<int64_t>(e.at("k").number()) << "</th>";
    h << "</tr>\n";
    for (const auto& m : models.items()) {
      if (!m.contains("shots")) continue;
      h << "<tr><td>" << HtmlEscape(m.at("model").str()) << "</td>";
      for (const auto& e : m.at("shots").items())
        h << "<td>" << Num(e.at("accuracy").number()) << "</td>";
      h << "</tr>\n";
    }
    h << "</table>\n";
    for (const auto& g : f.at("groupings").items()) {
      const std::string name = g.at("name").str();
      std::string script = ShotsScript(models, name);
      if (script.empty()) continue;
      h << plot.Figure("shots-" + name, "Shots curve per " + name + " group.", script);
    }
  }

  // Per-user distributions.
  h << "<h2>Per-user accuracy</h2>\n";
  h << plot.Figure("hist", "Distribution of per-user accuracy on the test pairs.",
                   HistScript(models));
  h << "<table><tr><th>model</th><th>users</th><th>mean</th><th>p10</th><th>p50</th>"
    << "<th>p90</th></tr>\n";
  for (const auto& m : models.items()) {
    const Json& pu = m.at("per_user");
    h << "<tr><td>" << HtmlEscape(m.at("model").str()) << "</td><td>"
      << static_cast<int64_t>(pu.at("n_users").number()) << "</td><td>"
      << Num(pu.at("mean").number()) << "</td><td>" << Num(pu.at("p10").number()) << "</td><td>"
      << Num(pu.at("p50").number()) << "</td><td>" << Num(pu.at("p90").number()) << "</td></tr>\n";
  }
  h << "</table>\n";

  // MaxMin vs utilitarian selection.
  bool sel = false;
  for (const auto& m : models.items()) sel |= m.contains("selection");
  if (sel) {
    h << "<h2>MaxMin vs utilitarian selection</h2>\n<p>The egalitarian (MaxMin) pick "
      << "argmax<sub>y</sub> min<sub>k</sub> q<sub>k</sub>(y) and the utilitarian pick "
      << "argmax<sub>y</sub> Σ<sub>k</sub> π<sub>k</sub> q<sub>k</sub>(y) over the calibrated "
      << "head scores, and each group's win rate of the pick where it can be judged.</p>\n";
    for (const auto& m : models.items()) {
      if (!m.contains("selection")) continue;
      const Json& sj = m.at("selection");
      h << "<h3>" << HtmlEscape(m.at("model").str()) << " ("
        << static_cast<int64_t>(sj.at("n_heads").number()) << " heads)</h3>\n";
      if (sj.contains("picks")) {
        const Json& eg = sj.at("picks").at("egalitarian");
        const Json& ut = sj.at("picks").at("utilitarian");
        auto name = [](const Json& p) {
          return p.contains("pick_id") ? p.at("pick_id").str()
                                       : Cat("item ", static_cast<int64_t>(p.at("pick").number()));
        };
        h << "<p>Egalitarian pick: <b>" << HtmlEscape(name(eg)) << "</b>; utilitarian pick: <b>"
          << HtmlEscape(name(ut)) << "</b>. Win rate judged by "
          << HtmlEscape(sj.at("judged_by").str())
          << ", averaged over the users who ranked the "
             "pick.</p>\n<table><tr><th>group</th><th>egalitarian win rate</th>"
          << "<th>utilitarian win rate</th><th>users</th></tr>\n";
        if (eg.contains("win_rate") && ut.contains("win_rate"))
          h << "<tr><td><em>all</em></td><td>" << Num(eg.at("win_rate").number()) << "</td><td>"
            << Num(ut.at("win_rate").number()) << "</td><td>"
            << static_cast<int64_t>(eg.at("n_users").number()) << "</td></tr>\n";
        if (eg.contains("per_group") && ut.contains("per_group"))
          for (const auto& g : eg.at("per_group").members())
            for (const auto& kv : g.second.members()) {
              const bool both = ut.at("per_group").contains(g.first) &&
                                ut.at("per_group").at(g.first).contains(kv.first);
              h << "<tr><td>" << HtmlEscape(g.first + " = " + kv.first) << "</td><td>"
                << Num(kv.second.at("mean").number()) << "</td><td>"
                << (both ? Num(ut.at("per_group").at(g.first).at(kv.first).at("mean").number())
                         : std::string("–"))
                << "</td><td>" << static_cast<int64_t>(kv.second.at("n_users").number())
                << "</td></tr>\n";
            }
        h << "</table>\n";
      }
      if (sj.contains("truth"))
        h << "<details><summary>Judged by the planted truth (the output of "
          << "<code>prefmix select</code>)</summary><pre>" << HtmlEscape(sj.at("truth").Dump(1))
          << "</pre></details>\n";
    }
  }
  h << "</body></html>\n";
  return h.str();
}

}  // namespace prefmix
