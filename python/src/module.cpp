// prefmix._prefmix: the C++ library behind `import prefmix` (python/prefmix/__init__.py is the
// Python face). Options reach the library through the CLI's own parser (apps/options.cpp), so
// names, defaults and validation are the command line's. prefmix::Error becomes ValueError,
// everything else RuntimeError. Long calls release the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "apps/cli_common.h"
#include "core/error.h"
#include "core/eval/experiment.h"
#include "core/eval/fairness.h"
#include "core/eval/protocol.h"
#include "core/io/dataset.h"
#include "core/io/h5io.h"
#include "core/model/model.h"
#include "core/threads.h"
#include "prefmix/version.h"

namespace py = pybind11;

namespace prefmix::python {
namespace {

using apps::po::options_description;
using apps::po::variables_map;

/// Parses CLI-style arguments ("--k", "3", ...) with the given option groups.
variables_map Parse(const std::vector<std::string>& args, options_description& desc) {
  std::vector<std::string> words = {"prefmix"};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  variables_map vm;
  apps::ParseCommandLine(static_cast<int>(argv.size()), argv.data(), "", desc, vm);
  return vm;
}

/// Runs `work` on a worker thread while this (Python's main) thread, without the GIL between
/// checks, looks for signals every 50 ms: Ctrl-C asks the work to stop (the training loops check
/// once per epoch) and raises KeyboardInterrupt as soon as the worker has stopped. `threads` is
/// set on the worker (OpenMP's thread count is per thread).
template <typename Work>
void RunInterruptible(int threads, Work&& work) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
  ClearCancel();
  std::thread worker([&] {
    try {
      SetThreads(threads);
      work();
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    cv.notify_all();
  });
  bool interrupted = false;
  for (;;) {
    {
      py::gil_scoped_release release;
      std::unique_lock<std::mutex> lock(mu);
      if (cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return done; })) break;
    }
    if (PyErr_CheckSignals() != 0) {  // KeyboardInterrupt (or another handler's exception)
      RequestCancel();
      interrupted = true;
      break;
    }
  }
  {
    py::gil_scoped_release release;
    worker.join();
  }
  ClearCancel();
  if (interrupted) throw py::error_already_set();
  if (error) std::rethrow_exception(error);
}

/// Progress lines of experiment and fairness, to the `logging` logger "prefmix" at INFO level
/// (silent unless the application configures logging); callable from the worker thread.
ProgressFn LogProgress() {
  return [](const std::string& message) {
    py::gil_scoped_acquire gil;
    py::module_::import("logging").attr("getLogger")("prefmix").attr("info")(message);
  };
}

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// A numpy array that owns a moved Eigen matrix (no copy of the data).
py::array_t<float> ToNumpy(RowMatrixF&& m) {
  auto* owned = new RowMatrixF(std::move(m));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<RowMatrixF*>(p); });
  return py::array_t<float>({owned->rows(), owned->cols()},
                            {sizeof(float) * owned->cols(), sizeof(float)}, owned->data(),
                            free_when_done);
}

template <typename T>
py::array_t<T> VectorToNumpy(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

template <typename T, typename Out>
std::vector<Out> FromNumpy(const py::array_t<T, py::array::c_style | py::array::forcecast>& a,
                           const char* name) {
  PREFMIX_CHECK_INPUT(a.ndim() == 1, name, ": a 1-D array expected, got ", a.ndim(), " dimensions");
  std::vector<Out> out(a.size());
  const T* p = a.data();
  for (py::ssize_t i = 0; i < a.size(); ++i) out[i] = static_cast<Out>(p[i]);
  return out;
}

RowMatrixF MatrixFromNumpy(const py::array_t<float, py::array::c_style | py::array::forcecast>& a,
                           const char* name) {
  PREFMIX_CHECK_INPUT(a.ndim() == 2, name, ": a 2-D array [n, D] expected, got ", a.ndim(),
                      " dimensions");
  RowMatrixF m(a.shape(0), a.shape(1));
  std::copy(a.data(), a.data() + a.size(), m.data());
  return m;
}

Dataset FromArrays(
    py::array_t<float, py::array::c_style | py::array::forcecast> items,
    py::array_t<int64_t, py::array::c_style | py::array::forcecast> chosen,
    py::array_t<int64_t, py::array::c_style | py::array::forcecast> rejected,
    py::array_t<int64_t, py::array::c_style | py::array::forcecast> users,
    std::vector<std::string> user_ids, std::vector<std::string> item_ids,
    std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> contexts,
    std::optional<py::array_t<int64_t, py::array::c_style | py::array::forcecast>> context,
    std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> weights,
    std::vector<std::tuple<std::string, std::vector<int32_t>, std::vector<std::string>>> attributes,
    std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> user_features,
    std::string embedding_model) {
  Dataset ds;
  ds.source = "<arrays>";
  ds.embedding_model = std::move(embedding_model);
  ds.items = MatrixFromNumpy(items, "items");
  ds.item_ids = std::move(item_ids);
  ds.cmp_chosen = FromNumpy<int64_t, int64_t>(chosen, "chosen");
  ds.cmp_rejected = FromNumpy<int64_t, int64_t>(rejected, "rejected");
  ds.cmp_user = FromNumpy<int64_t, int64_t>(users, "users");
  PREFMIX_CHECK_INPUT(
      ds.cmp_chosen.size() == ds.cmp_rejected.size() && ds.cmp_chosen.size() == ds.cmp_user.size(),
      "chosen, rejected, users: lengths ", ds.cmp_chosen.size(), ", ", ds.cmp_rejected.size(), ", ",
      ds.cmp_user.size(), " differ");
  ds.user_ids = std::move(user_ids);
  if (contexts) {
    ds.contexts = MatrixFromNumpy(*contexts, "contexts");
    ds.has_contexts = true;
  }
  if (context) ds.cmp_context = FromNumpy<int64_t, int64_t>(*context, "context");
  if (weights) ds.cmp_weight = FromNumpy<float, float>(*weights, "weights");
  for (auto& [name, codes, labels] : attributes) {
    Attribute a;
    a.name = name;
    a.codes = codes;
    a.labels = labels;
    ds.attributes.push_back(std::move(a));
  }
  if (user_features) ds.user_features = MatrixFromNumpy(*user_features, "user_features");
  ds.Validate();
  return ds;
}

/// Latents of the users named by `ids`; an id the model never saw is an error unless
/// `unknown_users` is "population" (or the model has no per-user latent).
RowMatrixF LatentsOf(const Model& model, const std::vector<std::string>& ids,
                     const std::string& unknown_users) {
  PREFMIX_CHECK_INPUT(unknown_users == "error" || unknown_users == "population", "unknown_users: '",
                      unknown_users, "' is not one of error, population");
  const std::vector<int64_t> rows = model.TrainRows(ids);
  for (size_t i = 0; i < ids.size(); ++i)
    PREFMIX_CHECK_INPUT(rows[i] >= 0 || unknown_users == "population" || model.LatentDim() == 0,
                        "users: '", ids[i],
                        "' is not among the model's training users; adapt it first, or pass "
                        "unknown_users='population'");
  return model.LatentsForRows(rows);
}

class PyModel {
 public:
  PyModel(const std::string& family, const std::vector<std::string>& args) {
    options_description desc("model options");
    apps::AddModelOptions(desc);
    apps::AddCommonOptions(desc);
    variables_map vm = Parse(args, desc);
    apps::ApplyCommonOptions(vm);
    options_ = apps::ReadModelOptions(vm, family, &notes_);
    MakeModel(options_);  // a family's own checks of its options run now, not at fit
  }
  explicit PyModel(std::unique_ptr<Model> m) : model_(std::move(m)) {
    options_ = model_->options();
  }

  void Fit(const Dataset& ds, double valid_fraction) {
    PREFMIX_CHECK_INPUT(valid_fraction >= 0 && valid_fraction < 1,
                        "valid_fraction: ", valid_fraction, " is not in [0, 1)");
    std::unique_ptr<Model> m;
    std::string report;
    RunInterruptible(options_.threads, [&] {
      const auto t0 = std::chrono::steady_clock::now();
      PairSet train = ds.AllPairs(), valid;
      CarveValidation(&train, &valid, ds.n_users(), valid_fraction, options_.seed);
      m = MakeModel(options_);
      report = m->Fit(ds, train, valid).details.Dump(-1);
      seconds_ = Since(t0);
    });
    model_ = std::move(m);  // only a completed fit replaces the model
    report_ = std::move(report);
  }

  const Model& model() const {
    PREFMIX_CHECK_INPUT(model_ != nullptr, "the model is not fitted: call fit(dataset) first");
    return *model_;
  }

  std::vector<double> PredictProba(const Dataset& ds, const std::vector<std::string>& users,
                                   const std::vector<int64_t>& chosen,
                                   const std::vector<int64_t>& rejected,
                                   const std::string& unknown_users) const {
    const Model& m = model();
    CheckCompatible(m, ds);
    PREFMIX_CHECK_INPUT(users.size() == chosen.size() && users.size() == rejected.size(),
                        "users, chosen, rejected: lengths ", users.size(), ", ", chosen.size(),
                        ", ", rejected.size(), " differ");
    // Distinct users in first-appearance order, each pair pointing at its user's row.
    std::vector<std::string> ids;
    std::unordered_map<std::string, int32_t> index;
    PairSet p;
    for (size_t j = 0; j < users.size(); ++j) {
      PREFMIX_CHECK_INPUT(chosen[j] >= 0 && chosen[j] < ds.n_items(), "chosen[", j, "]: item ",
                          chosen[j], " is not in [0, ", ds.n_items(), ")");
      PREFMIX_CHECK_INPUT(rejected[j] >= 0 && rejected[j] < ds.n_items(), "rejected[", j,
                          "]: item ", rejected[j], " is not in [0, ", ds.n_items(), ")");
      auto it = index.find(users[j]);
      if (it == index.end()) {
        it = index.emplace(users[j], static_cast<int32_t>(ids.size())).first;
        ids.push_back(users[j]);
      }
      p.Push(it->second, static_cast<int32_t>(chosen[j]), static_cast<int32_t>(rejected[j]), -1,
             1.0f, 1.0f, std::nanf(""));
    }
    const RowMatrixF lat = LatentsOf(m, ids, unknown_users);
    py::gil_scoped_release release;
    return m.PredictProb(ds, p, lat);
  }

  py::array_t<float> Score(const Dataset& ds, const std::vector<std::string>& users,
                           const std::string& unknown_users) const {
    const Model& m = model();
    CheckCompatible(m, ds);
    const RowMatrixF lat = LatentsOf(m, users, unknown_users);
    RowMatrixF scores;
    {
      py::gil_scoped_release release;
      const auto t0 = std::chrono::steady_clock::now();
      scores = m.Score(ds, lat);
      seconds_ = Since(t0);
    }
    return ToNumpy(std::move(scores));
  }

  py::array_t<float> ScoreLatents(
      const Dataset& ds,
      const py::array_t<float, py::array::c_style | py::array::forcecast>& latents) const {
    const Model& m = model();
    CheckCompatible(m, ds);
    const RowMatrixF lat = MatrixFromNumpy(latents, "latents");
    PREFMIX_CHECK_INPUT(lat.cols() == m.LatentDim(), "latents: ", lat.cols(),
                        " columns, the model's latent size is ", m.LatentDim());
    RowMatrixF scores;
    {
      py::gil_scoped_release release;
      scores = m.Score(ds, lat);
    }
    return ToNumpy(std::move(scores));
  }

  /// The user step from each user's pairs, or from the first `shots` of them (shots >= 0).
  py::array_t<float> Adapt(const Dataset& ds, int64_t shots) const {
    const Model& m = model();
    CheckCompatible(m, ds);
    RowMatrixF lat;
    {
      py::gil_scoped_release release;
      const auto t0 = std::chrono::steady_clock::now();
      PairSet support = ds.AllPairs();
      if (shots >= 0) {
        PairSet first;
        std::vector<int64_t> taken(ds.n_users(), 0);
        for (size_t j = 0; j < support.size(); ++j)
          if (taken[support.user[j]]++ < shots) first.PushFrom(support, j);
        support = std::move(first);
      }
      lat = m.Adapt(ds, support, ds.n_users(), options_.device);
      seconds_ = Since(t0);
    }
    return ToNumpy(std::move(lat));
  }

  void Save(const std::string& path) const { SaveModel(model(), path); }

  std::string OptionsJson() const { return options_.ToJson().Dump(); }
  /// The family; after a fit with family auto, the family it chose.
  std::string Family() const { return model_ ? model_->Family() : options_.family; }
  /// The last fit's report as JSON ("{}" before a fit or for a loaded model).
  const std::string& FitReportJson() const { return report_; }
  const std::vector<std::string>& Notes() const { return notes_; }
  /// Seconds the last fit, score or adapt spent inside C++ (for the Python overhead figure).
  double LastSeconds() const { return seconds_; }

 private:
  ModelOptions options_;
  std::vector<std::string> notes_;  ///< options given that the family ignores
  mutable double seconds_ = 0;      ///< set by const calls too (score, adapt)
  std::string report_ = "{}";       ///< the last fit's FitReport details
  std::unique_ptr<Model> model_;
};

/// Model and protocol options for several families, parsed as `prefmix experiment` parses them.
struct Run {
  std::string device;
  ProtocolOptions proto;
  std::vector<ModelOptions> models;
  std::vector<std::string> notes;  ///< options a family ignores
};

Run ParseRun(const std::vector<std::string>& families, const std::vector<std::string>& args) {
  options_description desc("run options");
  apps::AddModelOptions(desc);
  apps::AddProtocolOptions(desc);
  apps::AddCommonOptions(desc);
  variables_map vm = Parse(args, desc);
  Run r;
  r.device = apps::ApplyCommonOptions(vm);
  r.proto = apps::ReadProtocolOptions(vm);
  for (const auto& f : families) r.models.push_back(apps::ReadModelOptions(vm, f, &r.notes));
  PREFMIX_CHECK_INPUT(!r.models.empty(), "families: empty list");
  return r;
}

/// {"<key>": result, "notes": [...]} as text for the Python layer.
std::string WithNotes(const char* key, Json result, const std::vector<std::string>& notes) {
  Json out = Json::Object();
  out[key] = std::move(result);
  Json n = Json::Array();
  for (const auto& x : notes) n.push_back(x);
  out["notes"] = n;
  return out.Dump();
}

std::string Experiment(const Dataset& ds, const std::vector<std::string>& families,
                       const std::vector<std::string>& args) {
  const Run run = ParseRun(families, args);
  Json out = Json::Array();
  RunInterruptible(run.models[0].threads, [&] {
    for (const auto& mo : run.models) {
      Json m = RunExperiment(ds, mo, run.proto, LogProgress());
      Json opts = mo.ToJson();
      opts["protocol"] = run.proto.name;
      Json prov = Json::Object();
      prov["version"] = PREFMIX_VERSION;
      prov["commit"] = PREFMIX_GIT_COMMIT;
      prov["device"] = run.device;
      prov["options"] = opts;
      m["provenance"] = prov;
      out.push_back(m);
    }
  });
  return WithNotes("results", out, run.notes);
}

std::string Fairness(const Dataset& ds, const std::vector<std::string>& families,
                     const std::vector<std::string>& args, const std::vector<std::string>& by,
                     int bootstrap, double ci_level, int hist_bins, bool closure) {
  const Run run = ParseRun(families, args);
  FairnessOptions fo;
  fo.by = by;
  fo.bootstrap = bootstrap;
  fo.ci_level = ci_level;
  fo.hist_bins = hist_bins;
  fo.closure = closure;
  const auto groupings = FairnessGroupings(ds, fo.by);  // checks `by` before any training
  Json out;
  RunInterruptible(run.models[0].threads, [&] {
    ModelHook hook = [&](const Model& m, const Dataset& d2) {
      return SelectionWinRates(m, d2, groupings, run.proto.min_group_users, run.proto.seed);
    };
    out = RunFairness(ds, run.models, run.proto, fo, LogProgress(), hook);
  });
  return WithNotes("result", out, run.notes);
}

}  // namespace
}  // namespace prefmix::python

PYBIND11_MODULE(_prefmix, m) {
  using namespace prefmix;
  using namespace prefmix::python;
  m.doc() = "prefmix: pluralistic preference (reward) models on cached embeddings (C++ core)";
  m.attr("__version__") = PREFMIX_VERSION;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const prefmix::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const prefmix::InternalError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const prefmix::Cancelled&) {
      PyErr_SetString(PyExc_KeyboardInterrupt, "cancelled");
    }
  });
  m.def(
      "families", [] { return FamilyNames(); },
      "registered model families, in presentation order (auto, which chooses among them, aside)");

  py::class_<Dataset>(m, "_Dataset")
      .def_static("from_arrays", &FromArrays, py::arg("items"), py::arg("chosen"),
                  py::arg("rejected"), py::arg("users"), py::arg("user_ids"), py::arg("item_ids"),
                  py::arg("contexts"), py::arg("context"), py::arg("weights"),
                  py::arg("attributes"), py::arg("user_features"), py::arg("embedding_model"))
      .def_static("load", &ReadDataset, py::arg("path"))
      .def("save", [](const Dataset& ds, const std::string& path) { WriteDataset(ds, path); })
      .def_property_readonly("n_items", &Dataset::n_items)
      .def_property_readonly("n_users", &Dataset::n_users)
      .def_property_readonly("dim", &Dataset::dim)
      .def_property_readonly("n_comparisons", &Dataset::n_comparisons)
      .def_property_readonly(
          "n_pairs", [](const Dataset& d) { return d.n_comparisons() + d.n_ranking_pairs(); })
      .def_property_readonly("user_ids", [](const Dataset& d) { return d.user_ids; })
      .def_property_readonly("item_ids", [](const Dataset& d) { return d.item_ids; })
      .def_property_readonly("embedding_model", [](const Dataset& d) { return d.embedding_model; })
      .def_property_readonly("items", [](const Dataset& d) { return ToNumpy(RowMatrixF(d.items)); })
      .def_property_readonly("attributes",
                             [](const Dataset& d) {
                               py::dict out;
                               for (const auto& a : d.attributes)
                                 out[py::str(a.name)] =
                                     py::make_tuple(VectorToNumpy(a.codes), a.labels);
                               return out;
                             })
      .def("pairs", [](const Dataset& d) {
        // Every comparison as prefmix uses it: stored ones, then ranking-derived ones.
        const PairSet p = d.AllPairs();
        std::vector<int32_t> chosen(p.size()), rejected(p.size());
        for (size_t j = 0; j < p.size(); ++j) {
          const bool first = p.label[j] > 0.5f;
          chosen[j] = first ? p.first[j] : p.second[j];
          rejected[j] = first ? p.second[j] : p.first[j];
        }
        py::dict out;
        out["user"] = VectorToNumpy(p.user);
        out["chosen"] = VectorToNumpy(chosen);
        out["rejected"] = VectorToNumpy(rejected);
        out["weight"] = VectorToNumpy(p.weight);
        out["context"] = VectorToNumpy(p.context);
        return out;
      });

  py::class_<PyModel>(m, "_Model")
      .def(py::init<const std::string&, const std::vector<std::string>&>(), py::arg("family"),
           py::arg("args"))
      .def_static(
          "load", [](const std::string& path) { return PyModel(LoadModel(path)); }, py::arg("path"))
      .def("fit", &PyModel::Fit, py::arg("dataset"), py::arg("valid_fraction"))
      .def("predict_proba", &PyModel::PredictProba, py::arg("dataset"), py::arg("users"),
           py::arg("chosen"), py::arg("rejected"), py::arg("unknown_users"))
      .def("score", &PyModel::Score, py::arg("dataset"), py::arg("users"), py::arg("unknown_users"))
      .def("score_latents", &PyModel::ScoreLatents, py::arg("dataset"), py::arg("latents"))
      .def("adapt", &PyModel::Adapt, py::arg("dataset"), py::arg("shots"))
      .def("save", &PyModel::Save, py::arg("path"))
      .def("options_json", &PyModel::OptionsJson)
      .def("fit_report_json", &PyModel::FitReportJson)
      .def_property_readonly("notes", &PyModel::Notes)
      .def_property_readonly("last_seconds", &PyModel::LastSeconds)
      .def_property_readonly("fitted",
                             [](const PyModel& p) {
                               try {
                                 p.model();
                                 return true;
                               } catch (const Error&) {
                                 return false;
                               }
                             })
      .def_property_readonly("family", &PyModel::Family)
      .def_property_readonly("latent_dim", [](const PyModel& p) { return p.model().LatentDim(); })
      .def_property_readonly("train_user_ids",
                             [](const PyModel& p) { return p.model().TrainUserIds(); })
      .def_property_readonly("train_latents", [](const PyModel& p) {
        return ToNumpy(RowMatrixF(p.model().TrainLatents()));
      });

  m.def("_experiment", &Experiment, py::arg("dataset"), py::arg("families"), py::arg("args"));
  m.def("_fairness", &Fairness, py::arg("dataset"), py::arg("families"), py::arg("args"),
        py::arg("by"), py::arg("bootstrap"), py::arg("ci_level"), py::arg("hist_bins"),
        py::arg("closure"));
}
