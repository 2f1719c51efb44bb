#include "core/eval/grid.h"

#include <algorithm>
#include <boost/property_tree/ini_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/eval/fairness.h"
#include "core/eval/metrics.h"
#include "core/eval/stats.h"
#include "core/io/h5io.h"

namespace prefmix {
namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double Mean(const std::vector<double>& v) {
  return v.empty() ? std::nan("") : std::accumulate(v.begin(), v.end(), 0.0) / v.size();
}
double Std(const std::vector<double>& v) {  // ddof 0, as the metrics JSON's accuracy_std
  const double m = Mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return v.empty() ? std::nan("") : std::sqrt(s / v.size());
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

int ToInt(const std::string& file, const std::string& where, const std::string& key,
          const std::string& v) {
  size_t pos = 0;
  int x = 0;
  try {
    x = std::stoi(v, &pos);
  } catch (...) {
    pos = 0;
  }
  PREFMIX_CHECK_INPUT(pos == v.size() && !v.empty(), file, ": ", where, " key '", key, "': '", v,
                      "' is not an integer");
  return x;
}

double ToDouble(const std::string& file, const std::string& where, const std::string& key,
                const std::string& v) {
  size_t pos = 0;
  double x = 0;
  try {
    x = std::stod(v, &pos);
  } catch (...) {
    pos = 0;
  }
  PREFMIX_CHECK_INPUT(pos == v.size() && !v.empty() && std::isfinite(x), file, ": ", where,
                      " key '", key, "': '", v, "' is not a number");
  return x;
}

std::vector<std::string> SplitComma(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!Trim(item).empty()) out.push_back(Trim(item));
  return out;
}

/// Applies one protocol key; false when the key is not a protocol key.
bool ApplyProtocolKey(const std::string& file, const std::string& where, const std::string& key,
                      const std::string& v, ProtocolOptions* p) {
  if (key == "protocol") {
    PREFMIX_CHECK_INPUT(v == "seen" || v == "unseen" || v == "subsample", file, ": ", where,
                        " key 'protocol': '", v, "' is not one of seen, unseen, subsample");
    p->name = v;
  } else if (key == "test-fraction") {
    p->test_fraction = ToDouble(file, where, key, v);
  } else if (key == "unseen-fraction") {
    p->unseen_fraction = ToDouble(file, where, key, v);
  } else if (key == "shots") {
    p->shots.clear();
    for (const auto& s : SplitComma(v)) p->shots.push_back(ToInt(file, where, key, s));
    PREFMIX_CHECK_INPUT(!p->shots.empty(), file, ": ", where, " key 'shots': empty list");
  } else if (key == "users") {
    p->users = ToInt(file, where, key, v);
  } else if (key == "train-pairs") {
    p->train_pairs = ToInt(file, where, key, v);
  } else if (key == "test-pairs") {
    p->test_pairs = ToInt(file, where, key, v);
  } else if (key == "repeats") {
    p->repeats = ToInt(file, where, key, v);
  } else if (key == "first-repeat") {
    p->first_repeat = ToInt(file, where, key, v);
    PREFMIX_CHECK_INPUT(p->first_repeat >= 0, file, ": ", where,
                        " key 'first-repeat': ", p->first_repeat, " is negative");
  } else if (key == "valid-fraction") {
    p->valid_fraction = ToDouble(file, where, key, v);
  } else if (key == "min-group-users") {
    p->min_group_users = ToInt(file, where, key, v);
  } else if (key == "seed") {
    const int s = ToInt(file, where, key, v);
    PREFMIX_CHECK_INPUT(s >= 0, file, ": ", where, " key 'seed': ", s, " is negative");
    p->seed = static_cast<uint64_t>(s);
  } else {
    return false;
  }
  return true;
}

const char* kKnownKeys =
    "data, protocol, test-fraction, unseen-fraction, shots, users, train-pairs, test-pairs, "
    "repeats, first-repeat, valid-fraction, min-group-users, seed (top level also: models, "
    "closure)";

/// Per repeat figures of one model on one block. tau / pooled are empty or one per repeat.
struct Cell {
  std::string model;
  bool baseline = false;  ///< the transitive-closure row: never the best, no test against it
  std::vector<int64_t> repeat;
  std::vector<double> acc, ll, tau, pooled, seconds;
};

/// The block's rows: summaries, the Wilcoxon test against the best family (highest mean
/// accuracy among the non-baseline rows), per-repeat figures. Returns the best family's name.
std::string BlockRows(const std::vector<Cell>& cells, Json* rows_out) {
  size_t best = cells.size();
  for (size_t i = 0; i < cells.size(); ++i)
    if (!cells[i].baseline && (best == cells.size() || Mean(cells[i].acc) > Mean(cells[best].acc)))
      best = i;
  PREFMIX_CHECK_INPUT(best < cells.size(), "grid: a block has no model row");
  Json rows = Json::Array();
  for (size_t i = 0; i < cells.size(); ++i) {
    const Cell& c = cells[i];
    Json row = Json::Object();
    row["model"] = c.model;
    if (c.baseline) row["baseline"] = true;
    row["accuracy"] = Mean(c.acc);
    row["accuracy_std"] = Std(c.acc);
    row["log_loss"] = Mean(c.ll);
    row["log_loss_std"] = Std(c.ll);
    if (!c.tau.empty()) {
      row["tau"] = Mean(c.tau);
      row["tau_std"] = Std(c.tau);
      row["pooled_tau"] = Mean(c.pooled);
    }
    row["seconds_per_run"] = Mean(c.seconds);
    if (i == best) {
      row["best"] = true;
    } else {
      PairedTest t = WilcoxonSignedRank(cells[best].acc, c.acc);
      Json v = Json::Object();
      v["model"] = cells[best].model;
      v["test"] = "wilcoxon-signed-rank";
      v["mean_accuracy_diff"] = t.mean_diff;
      v["p_value"] = t.p_value;
      v["n_nonzero"] = t.n;
      row["vs_best"] = v;
    }
    Json reps = Json::Array();
    for (size_t r = 0; r < c.acc.size(); ++r) {
      Json e = Json::Object();
      e["repeat"] = c.repeat[r];
      e["accuracy"] = c.acc[r];
      e["log_loss"] = c.ll[r];
      if (r < c.tau.size()) {
        e["tau"] = c.tau[r];
        e["pooled_tau"] = c.pooled[r];
      }
      e["seconds"] = c.seconds[r];
      reps.push_back(e);
    }
    row["repeats"] = reps;
    rows.push_back(row);
  }
  *rows_out = rows;
  return cells[best].model;
}

Json ProtocolJson(const ProtocolOptions& p) {
  Json j = Json::Object();
  j["name"] = p.name;
  j["seed"] = static_cast<uint64_t>(p.seed);
  j["repeats"] = p.repeats;
  if (p.first_repeat != 0) j["first_repeat"] = p.first_repeat;
  if (p.name == "subsample") {
    j["users"] = p.users;
    j["train_pairs"] = p.train_pairs;
    j["test_pairs"] = p.test_pairs;
  } else if (p.name == "unseen") {
    j["unseen_fraction"] = p.unseen_fraction;
    Json k = Json::Array();
    for (int x : p.shots) k.push_back(x);
    j["shots"] = k;
  } else {
    j["test_fraction"] = p.test_fraction;
  }
  return j;
}

std::string Fmt(double v, int prec) {
  if (!std::isfinite(v)) return "–";
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(prec);
  os << v;
  std::string s = os.str();
  if (prec > 0 && s.rfind("0.", 0) == 0) s = s.substr(1);  // .71 as in the paper's table
  if (prec > 0 && s.rfind("-0.", 0) == 0) s = "-" + s.substr(2);
  return s;
}

std::string FmtP(double p) {
  if (p < 0.001) return "<.001";
  return Fmt(p, 3);
}

}  // namespace

namespace {

// Boost's INI reader knows only comment lines. A ';' or '#' that starts a line's text, or follows
// a space or tab, begins a comment to the end of the line (as in the example at the top of
// grid.h); one inside a word (`data = run#2.h5`) is part of the value. Line numbers are kept.
std::string StripIniComments(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool at_start = true, after_blank = false, in_comment = false;
  for (char c : text) {
    if (c == '\n') {
      out += c;
      at_start = true;
      after_blank = false;
      in_comment = false;
      continue;
    }
    if (in_comment) continue;
    if ((c == ';' || c == '#') && (at_start || after_blank)) {
      in_comment = true;
      continue;
    }
    out += c;
    after_blank = c == ' ' || c == '\t';
    if (!after_blank && c != '\r') at_start = false;
  }
  return out;
}

}  // namespace

GridSpec ReadGridFile(const std::string& path, const ProtocolOptions& defaults) {
  std::ifstream in(path, std::ios::binary);
  PREFMIX_CHECK_INPUT(in, "--grid: ", path, ": cannot open for reading");
  std::ostringstream text;
  text << in.rdbuf();
  PREFMIX_CHECK_INPUT(!in.bad(), "--grid: ", path, ": read error");
  std::istringstream stripped(StripIniComments(text.str()));
  boost::property_tree::ptree tree;
  try {
    boost::property_tree::read_ini(stripped, tree);
  } catch (const boost::property_tree::ini_parser_error& e) {
    throw Error(Cat("--grid: ", path, "(", e.line(), "): ", e.message()));
  }
  GridSpec spec;
  ProtocolOptions top = defaults;
  std::vector<std::pair<std::string, const boost::property_tree::ptree*>> sections;
  for (const auto& kv : tree) {
    if (kv.second.empty()) {  // a top-level key
      const std::string key = kv.first, v = Trim(kv.second.data());
      if (key == "models") {
        spec.models = SplitComma(v);
      } else if (key == "closure") {
        PREFMIX_CHECK_INPUT(v == "on" || v == "off", path, ": key 'closure': '", v,
                            "' is not one of on, off");
        spec.closure = v == "on";
      } else if (!ApplyProtocolKey(path, "top-level", key, v, &top)) {
        throw Error(Cat(path, ": unknown top-level key '", key, "' (known: ", kKnownKeys, ")"));
      }
    } else {
      sections.emplace_back(kv.first, &kv.second);
    }
  }
  for (const auto& sec : sections) {
    GridBlock b;
    b.name = sec.first;
    b.protocol = top;
    const std::string where = "section [" + b.name + "]";
    for (const auto& kv : *sec.second) {
      const std::string key = kv.first, v = Trim(kv.second.data());
      if (key == "data") {
        b.data = v;
      } else if (!ApplyProtocolKey(path, where, key, v, &b.protocol)) {
        throw Error(Cat(path, ": ", where, ": unknown key '", key, "' (known: ", kKnownKeys, ")"));
      }
    }
    PREFMIX_CHECK_INPUT(!b.data.empty(), path, ": ", where, ": missing key 'data' (a dataset .h5)");
    try {
      ValidateProtocolOptions(b.protocol);
    } catch (const Error& e) {
      throw Error(Cat(path, ": ", where, ": ", e.what()));
    }
    PREFMIX_CHECK_INPUT(b.protocol.repeats >= 1, path, ": ", where, ": repeats ",
                        b.protocol.repeats, " must be >= 1");
    // RunGrid counts r from first-repeat to first-repeat + repeats - 1 in an int.
    PREFMIX_CHECK_INPUT(
        b.protocol.repeats <= std::numeric_limits<int>::max() - b.protocol.first_repeat, path, ": ",
        where, ": first-repeat ", b.protocol.first_repeat, " + repeats ", b.protocol.repeats,
        " is beyond ", std::numeric_limits<int>::max());
    spec.blocks.push_back(b);
  }
  PREFMIX_CHECK_INPUT(!spec.blocks.empty(), path,
                      ": no [block] section (each names a dataset with data = D.h5)");
  return spec;
}

Json RunGrid(const GridSpec& spec, const std::vector<ModelOptions>& models,
             const ProgressFn& progress) {
  PREFMIX_CHECK_INPUT(!models.empty(), "grid: no model family given (--models or models = ...)");
  Json out = Json::Object();
  out["format"] = "prefmix.grid";
  out["format_version"] = 1;
  Json names = Json::Array();
  for (const auto& m : models) names.push_back(m.family);
  out["models"] = names;
  Json blocks = Json::Array();
  for (const GridBlock& b : spec.blocks) {
    Dataset ds = ReadDataset(b.data);
    const PairSet all = ds.AllPairs();
    const ProtocolOptions& po = b.protocol;
    const bool unseen = po.name == "unseen", subsample = po.name == "subsample";
    const bool closure = spec.closure && ds.has_rankings();
    std::vector<Cell> cells(models.size() + (closure ? 1 : 0));
    for (size_t i = 0; i < models.size(); ++i) cells[i].model = models[i].family;
    if (closure) {
      cells.back().model = "closure";
      cells.back().baseline = true;
    }
    std::vector<int> shots = po.shots;
    std::sort(shots.begin(), shots.end());
    shots.erase(std::unique(shots.begin(), shots.end()), shots.end());
    for (int r = po.first_repeat; r < po.first_repeat + po.repeats; ++r) {
      ProtocolOptions pr = po;
      if (!subsample) pr.seed = po.seed + static_cast<uint64_t>(r);
      Split s = unseen      ? MakeUnseenSplit(ds, all, pr)
                : subsample ? MakeSubsampleSplit(ds, all, pr, r)
                            : MakeSeenSplit(ds, all, pr);
      PairSet test = unseen ? UnseenQueries(all, s, shots.back()) : s.test;
      PREFMIX_CHECK_INPUT(!test.empty(), b.data, ": block [", b.name, "] repeat ", r,
                          ": the split left no test pairs");
      std::vector<int32_t> ranked;
      if (ds.has_rankings()) {
        std::vector<char> has(ds.n_users(), 0), taken(ds.n_users(), 0);
        for (int64_t u : ds.rank_user) has[u] = 1;
        for (int32_t u : test.user)
          if (has[u] && !taken[u]) {
            taken[u] = 1;
            ranked.push_back(u);
          }
        std::sort(ranked.begin(), ranked.end());
      }
      for (size_t i = 0; i < models.size(); ++i) {
        ModelOptions mo = models[i];
        mo.seed = models[i].seed + static_cast<uint64_t>(r);
        auto t0 = std::chrono::steady_clock::now();
        auto model = MakeModel(mo);
        model->Fit(ds, s.train, s.valid);
        RowMatrixF lat =
            unseen ? model->Adapt(ds, UnseenSupport(all, s, shots.back()), ds.n_users(), mo.device)
                   : model->TrainLatents();
        auto prob = model->PredictProb(ds, test, lat);
        const double secs = Since(t0);
        UserStats check;
        check.Add(test, prob, ds.n_users());  // refuses NaN / out-of-range probabilities
        Cell& c = cells[i];
        c.repeat.push_back(r);
        c.acc.push_back(Accuracy(prob, test.label));
        c.ll.push_back(LogLoss(prob, test.label));
        c.seconds.push_back(secs);
        if (!ranked.empty()) {
          TauAccumulator tau;
          tau.Add(ds, ranked, ScoreUsers(*model, ds, lat, ranked));
          Json t = tau.Result();
          if (!t.is_null()) {
            c.tau.push_back(t.at("mean_user").number());
            c.pooled.push_back(t.at("pooled").number());
          }
        }
        if (progress)
          progress(Cat("[", b.name, "] ", mo.family, ": repeat ", r + 1, "/",
                       po.first_repeat + po.repeats, " accuracy ", c.acc.back(), " (", secs,
                       " s)"));
      }
      if (closure) {
        auto t0 = std::chrono::steady_clock::now();
        PairSet known = unseen ? UnseenSupport(all, s, shots.back()) : s.train;
        for (size_t j = 0; j < s.valid.size() && !unseen; ++j) known.PushFrom(s.valid, j);
        auto prob = TransitiveClosurePredict(known, test, ds.n_users());
        Cell& c = cells.back();
        c.repeat.push_back(r);
        c.acc.push_back(Accuracy(prob, test.label));
        c.ll.push_back(LogLoss(prob, test.label));
        c.seconds.push_back(Since(t0));
      }
    }
    Json rows;
    const std::string best = BlockRows(cells, &rows);
    Json bj = Json::Object();
    bj["name"] = b.name;
    bj["data"] = b.data;
    bj["dataset_sha256"] = FileSha256(b.data);
    bj["n_users"] = ds.n_users();
    bj["protocol"] = ProtocolJson(po);
    bj["best"] = best;
    bj["rows"] = rows;
    blocks.push_back(bj);
  }
  out["blocks"] = blocks;
  return out;
}

Json MergeGridTables(const std::vector<Json>& tables, const std::vector<std::string>& sources) {
  PREFMIX_CHECK_INPUT(!tables.empty() && tables.size() == sources.size(),
                      "grid merge: no table to merge");
  struct Block {
    Json head;           // name, data, dataset_sha256, n_users, protocol of the first table
    std::string origin;  // the file the block was first seen in
    std::vector<Cell> cells;
  };
  std::vector<Block> blocks;
  std::vector<std::string> model_order;
  // The protocol without the keys a split grid may vary.
  auto protocol_key = [](const Json& p) {
    Json k = Json::Object();
    for (const auto& [name, v] : p.members())
      if (name != "repeats" && name != "first_repeat") k[name] = v;
    return k.Dump(-1);
  };
  auto need = [](const Json& j, const char* key, const std::string& file, const std::string& at) {
    PREFMIX_CHECK_INPUT(j.is_object() && j.contains(key), file, ": ", at, ": missing field '", key,
                        "'");
    return &j.at(key);
  };
  for (size_t f = 0; f < tables.size(); ++f) {
    const Json& t = tables[f];
    const std::string& file = sources[f];
    PREFMIX_CHECK_INPUT(t.is_object() && t.contains("format") && t.at("format").is_string() &&
                            t.at("format").str() == "prefmix.grid",
                        file, ": field 'format' is not \"prefmix.grid\" (not a grid table.json)");
    for (const auto& b : need(t, "blocks", file, "table")->items()) {
      const std::string name = need(b, "name", file, "block")->str();
      const std::string at = Cat("block [", name, "]");
      Block* dst = nullptr;
      for (auto& x : blocks)
        if (x.head.at("name").str() == name) dst = &x;
      if (!dst) {
        blocks.push_back(Block{});
        dst = &blocks.back();
        dst->origin = file;
        dst->head = Json::Object();
        for (const char* key : {"name", "data", "dataset_sha256", "n_users", "protocol"})
          dst->head[key] = *need(b, key, file, at);
      } else {
        const std::string sha = need(b, "dataset_sha256", file, at)->str();
        PREFMIX_CHECK_INPUT(sha == dst->head.at("dataset_sha256").str(), file, ": ", at,
                            ": field 'dataset_sha256' ", sha.substr(0, 12), "... differs from ",
                            dst->origin, "'s ", dst->head.at("dataset_sha256").str().substr(0, 12),
                            "... (not the same dataset)");
        const std::string p = protocol_key(*need(b, "protocol", file, at));
        PREFMIX_CHECK_INPUT(p == protocol_key(dst->head.at("protocol")), file, ": ", at,
                            ": field 'protocol' ", p, " differs from ", dst->origin, "'s ",
                            protocol_key(dst->head.at("protocol")),
                            " (only repeats and first_repeat may differ)");
      }
      for (const auto& row : need(b, "rows", file, at)->items()) {
        const std::string model = need(row, "model", file, at)->str();
        const bool baseline = row.contains("baseline") && row.at("baseline").boolean();
        const std::string rat = Cat(at, " model ", model);
        Cell* c = nullptr;
        for (auto& x : dst->cells)
          if (x.model == model) c = &x;
        if (!c) {
          dst->cells.push_back(Cell{});
          c = &dst->cells.back();
          c->model = model;
          c->baseline = baseline;
          if (!baseline &&
              std::find(model_order.begin(), model_order.end(), model) == model_order.end())
            model_order.push_back(model);
        }
        for (const auto& e : need(row, "repeats", file, rat)->items()) {
          const double rr = need(e, "repeat", file, rat)->number();
          const double acc = need(e, "accuracy", file, rat)->number();
          const double ll = need(e, "log_loss", file, rat)->number();
          PREFMIX_CHECK_INPUT(
              rr >= 0 && rr == std::floor(rr) && std::isfinite(acc) && std::isfinite(ll), file,
              ": ", rat, ": repeat ", rr, " has accuracy ", acc, " and log loss ", ll,
              " (a repeat index >= 0 and finite figures)");
          const int64_t r = static_cast<int64_t>(rr);
          auto it = std::find(c->repeat.begin(), c->repeat.end(), r);
          if (it != c->repeat.end()) {
            // The same repeat twice: the same split and seed give the same figures, so an
            // identical copy is dropped; different figures cannot both be right.
            const size_t i = it - c->repeat.begin();
            PREFMIX_CHECK_INPUT(c->acc[i] == acc && c->ll[i] == ll, file, ": ", rat, ": repeat ", r,
                                " has accuracy ", acc, " and log loss ", ll,
                                ", but an earlier table has ", c->acc[i], " and ", c->ll[i],
                                " for the same repeat");
            continue;
          }
          const bool has_tau = e.contains("tau");
          PREFMIX_CHECK_INPUT(c->repeat.empty() || has_tau == !c->tau.empty(), file, ": ", rat,
                              ": repeat ", r, (has_tau ? " has" : " lacks"),
                              " Kendall tau, unlike the model's other repeats");
          c->repeat.push_back(r);
          c->acc.push_back(acc);
          c->ll.push_back(ll);
          c->seconds.push_back(need(e, "seconds", file, rat)->number());
          if (has_tau) {
            c->tau.push_back(e.at("tau").number());
            c->pooled.push_back(need(e, "pooled_tau", file, rat)->number());
          }
        }
      }
    }
  }
  Json out = Json::Object();
  out["format"] = "prefmix.grid";
  out["format_version"] = 1;
  Json names = Json::Array();
  for (const auto& m : model_order) names.push_back(m);
  out["models"] = names;
  Json jblocks = Json::Array();
  for (Block& b : blocks) {
    // Repeats in index order, and every row over the same repeats: the test pairs them.
    for (Cell& c : b.cells) {
      std::vector<size_t> order(c.repeat.size());
      std::iota(order.begin(), order.end(), size_t{0});
      std::sort(order.begin(), order.end(),
                [&](size_t x, size_t y) { return c.repeat[x] < c.repeat[y]; });
      Cell s = c;
      for (size_t i = 0; i < order.size(); ++i) {
        s.repeat[i] = c.repeat[order[i]];
        s.acc[i] = c.acc[order[i]];
        s.ll[i] = c.ll[order[i]];
        s.seconds[i] = c.seconds[order[i]];
        if (!c.tau.empty()) {
          s.tau[i] = c.tau[order[i]];
          s.pooled[i] = c.pooled[order[i]];
        }
      }
      c = s;
    }
    // Families in first-seen order, baselines last.
    std::stable_sort(b.cells.begin(), b.cells.end(),
                     [](const Cell& x, const Cell& y) { return !x.baseline && y.baseline; });
    const std::string name = b.head.at("name").str();
    const Cell& first = b.cells[0];
    for (const Cell& c : b.cells) {
      auto has = [](const Cell& x, int64_t r) {
        return std::find(x.repeat.begin(), x.repeat.end(), r) != x.repeat.end();
      };
      for (int64_t r : first.repeat)
        PREFMIX_CHECK_INPUT(has(c, r), "grid merge: block [", name, "]: model ", c.model,
                            " lacks repeat ", r, ", which ", first.model,
                            " has (every row needs the same repeats for the paired test)");
      for (int64_t r : c.repeat)
        PREFMIX_CHECK_INPUT(has(first, r), "grid merge: block [", name, "]: model ", c.model,
                            " has repeat ", r, ", which ", first.model,
                            " lacks (every row needs the same repeats for the paired test)");
    }
    Json rows;
    const std::string best = BlockRows(b.cells, &rows);
    Json bj = b.head;
    Json p = Json::Object();
    for (const auto& [key, v] : b.head.at("protocol").members())
      if (key != "first_repeat") p[key] = v;
    p["repeats"] = static_cast<int64_t>(b.cells[0].repeat.size());
    if (b.cells[0].repeat.front() != 0) p["first_repeat"] = b.cells[0].repeat.front();
    bj["protocol"] = p;
    bj["best"] = best;
    bj["rows"] = rows;
    jblocks.push_back(bj);
  }
  out["blocks"] = jblocks;
  Json from = Json::Array();
  for (size_t f = 0; f < tables.size(); ++f) {
    Json m = Json::Object();
    m["file"] = sources[f];
    const Json& t = tables[f];
    if (t.contains("provenance") && t.at("provenance").contains("commit"))
      m["commit"] = t.at("provenance").at("commit");
    from.push_back(m);
    // A merged input names its own inputs: they are listed too (with `via`), so the runs behind
    // every figure stay traceable.
    if (t.contains("merged_from") && t.at("merged_from").is_array())
      for (const auto& inner : t.at("merged_from").items()) {
        if (!inner.is_object() || !inner.contains("file")) continue;
        Json e = inner;
        if (!e.contains("via")) e["via"] = sources[f];
        from.push_back(e);
      }
  }
  out["merged_from"] = from;
  return out;
}

std::string GridMarkdown(const Json& table) {
  std::ostringstream h;
  const auto& blocks = table.at("blocks").items();
  h << "| model |";
  for (const auto& b : blocks)
    h << " " << b.at("name").str() << ": acc / log loss / τ | p vs best | s/run |";
  h << "\n|---|";
  for (size_t i = 0; i < blocks.size(); ++i) h << "---|---|---|";
  h << "\n";
  // Row order: the union of the blocks' rows in first-seen order.
  std::vector<std::string> order;
  for (const auto& b : blocks)
    for (const auto& r : b.at("rows").items())
      if (std::find(order.begin(), order.end(), r.at("model").str()) == order.end())
        order.push_back(r.at("model").str());
  for (const auto& name : order) {
    h << "| " << name << " |";
    for (const auto& b : blocks) {
      const Json* row = nullptr;
      for (const auto& r : b.at("rows").items())
        if (r.at("model").str() == name) row = &r;
      if (!row) {
        h << " – | – | – |";
        continue;
      }
      const bool best = row->contains("best");
      h << " " << (best ? "**" : "") << Fmt(row->at("accuracy").number(), 3) << " / "
        << Fmt(row->at("log_loss").number(), 3) << " / "
        << (row->contains("tau") ? Fmt(row->at("tau").number(), 3) : "–") << (best ? "**" : "")
        << " | " << (best ? "best" : FmtP(row->at("vs_best").at("p_value").number())) << " | "
        << Fmt(row->at("seconds_per_run").number(), 2) << " |";
    }
    h << "\n";
  }
  return h.str();
}

std::string GridCsv(const Json& table) {
  std::ostringstream h;
  h.precision(6);
  h << "block,protocol,model,repeats,accuracy,accuracy_std,log_loss,log_loss_std,tau,tau_std,"
       "pooled_tau,p_vs_best,best_model,seconds_per_run\n";
  for (const auto& b : table.at("blocks").items())
    for (const auto& r : b.at("rows").items()) {
      auto opt = [&](const char* k) {
        return r.contains(k) ? Cat(r.at(k).number()) : std::string();
      };
      std::string name = b.at("name").str(), quoted;
      for (char ch : name) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
      h << '"' << quoted << "\"," << b.at("protocol").at("name").str() << "," << r.at("model").str()
        << "," << r.at("repeats").size() << "," << r.at("accuracy").number() << ","
        << r.at("accuracy_std").number() << "," << r.at("log_loss").number() << ","
        << r.at("log_loss_std").number() << "," << opt("tau") << "," << opt("tau_std") << ","
        << opt("pooled_tau") << ","
        << (r.contains("vs_best") ? Cat(r.at("vs_best").at("p_value").number()) : "") << ","
        << b.at("best").str() << "," << r.at("seconds_per_run").number() << "\n";
    }
  return h.str();
}

}  // namespace prefmix
