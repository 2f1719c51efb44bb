#include "data/generate.h"

#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"

// Default scales (oracle accuracy = mean over pairs of 1[pair_prob > 0.5], measured on the
// default presets for seeds 1, 2, 3; target 0.85-0.90):
//   groups      scale 3.0: 0.8762, 0.8713, 0.8817
//   lowrank     scale 4.0: 0.8758, 0.8751, 0.8801
//   ideal-point scale 6.5: 0.8758, 0.8692, 0.8751
// (ideal-point needs the largest scale: in d = 8 distances concentrate, so the difference of
// two items' distances to a_u is small compared with the distances themselves.)

namespace prefmix::data {
namespace {

// Independent random streams, one per purpose: changing one part of the generator (or e.g.
// the number of pairs per user) leaves the draws of the other parts unchanged.
enum Stream : uint64_t {
  kItemStream = 1,
  kDirectionStream = 2,
  kGroupStream = 3,
  kWeightStream = 4,
  kMapStream = 5,
  kPrototypeStream = 6,
  kSegmentStream = 7,
  kCohortStream = 8,
  kPairStream = 9,
};

constexpr int kNumCohorts = 3;

// Shortest decimal that reads back as the same double (descriptions stay exact and readable).
std::string Num(double x) {
  // Whole numbers as integers ("70", not "7e+01").
  if (std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 1e15)
    return std::to_string(static_cast<int64_t>(x));
  for (int prec = 1; prec <= 17; ++prec) {
    std::ostringstream os;
    os.precision(prec);
    os << x;
    if (std::strtod(os.str().c_str(), nullptr) == x) return os.str();
  }
  std::ostringstream os;
  os.precision(17);
  os << x;
  return os.str();
}

std::string JoinNums(const std::vector<double>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + Num(v[i]);
  return s;
}

// "<prefix>0042" with at least four digits, wide enough for n ids (so ids sort in row order).
std::vector<std::string> MakeIds(const char* prefix, int64_t n) {
  int width = 4;
  for (int64_t x = n - 1; x >= 10000; x /= 10) ++width;
  std::vector<std::string> ids(n);
  for (int64_t i = 0; i < n; ++i) {
    std::string digits = std::to_string(i);
    ids[i] = prefix + std::string(width - std::min<size_t>(width, digits.size()), '0') + digits;
  }
  return ids;
}

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// n columns of a random D x n matrix with orthonormal columns (Householder QR of a Gaussian
// matrix, column signs fixed by R's diagonal so the result is Haar-distributed).
Eigen::MatrixXd OrthonormalColumns(int64_t d, int64_t n, Rng& rng) {
  Eigen::MatrixXd g(d, n);
  for (int64_t c = 0; c < n; ++c)
    for (int64_t r = 0; r < d; ++r) g(r, c) = rng.Normal();
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
  Eigen::MatrixXd q = qr.householderQ() * Eigen::MatrixXd::Identity(d, n);
  const Eigen::MatrixXd& r = qr.matrixQR();
  for (int64_t c = 0; c < n; ++c)
    if (r(c, c) < 0) q.col(c) *= -1.0;
  return q;
}

// Group directions theta_k (columns, D x K) with ||theta_k|| = scale and cos(theta_k, theta_l)
// = s exactly. s >= 0: theta_k = scale (sqrt(s) c + sqrt(1-s) u_k) with c, u_1..u_K orthonormal.
// s < 0 (down to the simplex bound -1/(K-1)): theta_k = scale (x u_k + y sum_l u_l) with
// x = sqrt(1-s), y = (-x + sqrt(1 + (K-1) s)) / K, which gives unit norms and inner products s.
Eigen::MatrixXd GroupDirections(const GenerateOptions& o, Rng& rng) {
  const int64_t k = o.k;
  const double s = o.group_similarity;
  Eigen::MatrixXd q = OrthonormalColumns(o.dim, k + 1, rng);
  Eigen::MatrixXd theta(o.dim, k);
  if (s >= 0) {
    for (int64_t g = 0; g < k; ++g)
      theta.col(g) = std::sqrt(s) * q.col(k) + std::sqrt(1.0 - s) * q.col(g);
  } else {
    const double x = std::sqrt(1.0 - s);
    const double y = (-x + std::sqrt(std::max(0.0, 1.0 + (k - 1) * s))) / k;
    Eigen::VectorXd sum = q.leftCols(k).rowwise().sum();
    for (int64_t g = 0; g < k; ++g) theta.col(g) = x * q.col(g) + y * sum;
  }
  return o.scale * theta;
}

// Exact group sizes from percentages (largest remainder; ties to the lower group).
std::vector<int64_t> GroupCounts(const GenerateOptions& o) {
  const int64_t k = o.k;
  std::vector<double> pct = o.group_sizes;
  if (pct.empty()) pct.assign(k, 100.0 / k);
  const double total = std::accumulate(pct.begin(), pct.end(), 0.0);
  std::vector<int64_t> count(k);
  std::vector<double> rem(k);
  int64_t assigned = 0;
  for (int64_t g = 0; g < k; ++g) {
    const double exact = o.n_users * pct[g] / total;
    count[g] = static_cast<int64_t>(std::floor(exact));
    rem[g] = exact - count[g];
    assigned += count[g];
  }
  std::vector<int64_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return rem[a] > rem[b]; });
  for (int64_t i = 0; assigned < o.n_users; ++i, ++assigned) ++count[order[i % k]];
  return count;
}

// Dirichlet(alpha, ..., alpha) via normalised Gamma draws. For tiny alpha every Gamma draw can
// underflow to 0; the limit of Dirichlet(alpha) as alpha -> 0 is a uniformly random vertex.
Eigen::VectorXd Dirichlet(int64_t k, double alpha, Rng& rng) {
  Eigen::VectorXd w(k);
  for (int64_t i = 0; i < k; ++i) w(i) = rng.Gamma(alpha);
  const double sum = w.sum();
  if (!(sum > 0) || !std::isfinite(sum)) {
    w.setZero();
    w(static_cast<int64_t>(rng.Below(k))) = 1.0;
    return w;
  }
  return w / sum;
}

// The planted reward of every user for every item, in BT units.
struct Planted {
  Eigen::MatrixXd group_reward;  // [K, n_items]: R(k, i)
  Eigen::MatrixXd weights;       // [n_users, K]: w_u (one-hot for groups)
  std::vector<int32_t> group;    // [n_users]: (argmax) group
  Eigen::MatrixXd projected;     // ideal-point: [n_items, d] rows f(e_i)
  Eigen::MatrixXd ideal;         // ideal-point: [n_users, d] rows a_u
  Eigen::MatrixXd protos;        // ideal-point: [K, d] prototypes p_k
  bool ideal_point = false;

  // r_u(a) - r_u(b).
  double RewardGap(int64_t u, int64_t a, int64_t b) const {
    if (ideal_point)
      return (projected.row(b) - ideal.row(u)).norm() - (projected.row(a) - ideal.row(u)).norm();
    return weights.row(u).dot(group_reward.col(a) - group_reward.col(b));
  }
};

int32_t ArgMax(const Eigen::VectorXd& w) {
  Eigen::Index best = 0;
  w.maxCoeff(&best);  // the first maximum: lowest index on ties
  return static_cast<int32_t>(best);
}

Planted PlantGroups(const GenerateOptions& o, const Eigen::MatrixXd& e) {
  Planted p;
  Rng dir_rng(DeriveSeed(o.seed, kDirectionStream));
  const Eigen::MatrixXd theta = GroupDirections(o, dir_rng);  // D x K
  p.group_reward = theta.transpose() * e.transpose();         // K x n_items
  std::vector<int64_t> counts = GroupCounts(o);
  p.group.reserve(o.n_users);
  for (int64_t g = 0; g < o.k; ++g)
    p.group.insert(p.group.end(), counts[g], static_cast<int32_t>(g));
  Rng group_rng(DeriveSeed(o.seed, kGroupStream));
  group_rng.Shuffle(p.group);
  p.weights = Eigen::MatrixXd::Zero(o.n_users, o.k);
  for (int64_t u = 0; u < o.n_users; ++u) p.weights(u, p.group[u]) = 1.0;
  return p;
}

void DrawWeights(const GenerateOptions& o, Planted& p) {
  Rng w_rng(DeriveSeed(o.seed, kWeightStream));
  p.weights.resize(o.n_users, o.k);
  p.group.resize(o.n_users);
  for (int64_t u = 0; u < o.n_users; ++u) {
    Eigen::VectorXd w = Dirichlet(o.k, o.alpha, w_rng);
    p.weights.row(u) = w.transpose();
    p.group[u] = ArgMax(w);
  }
}

Planted PlantLowrank(const GenerateOptions& o, const Eigen::MatrixXd& e) {
  Planted p;
  Rng dir_rng(DeriveSeed(o.seed, kDirectionStream));
  const Eigen::MatrixXd theta = o.scale * OrthonormalColumns(o.dim, o.k, dir_rng);
  p.group_reward = theta.transpose() * e.transpose();
  DrawWeights(o, p);
  return p;
}

Planted PlantIdealPoint(const GenerateOptions& o, const Eigen::MatrixXd& e) {
  Planted p;
  p.ideal_point = true;
  const int64_t d = o.latent_dim;
  Rng map_rng(DeriveSeed(o.seed, kMapStream));
  Eigen::MatrixXd a(d, o.dim);  // entries N(0, 1/D): A e has unit variance per coordinate
  const double sd = 1.0 / std::sqrt(static_cast<double>(o.dim));
  for (int64_t r = 0; r < d; ++r)
    for (int64_t c = 0; c < o.dim; ++c) a(r, c) = sd * map_rng.Normal();
  p.projected = o.scale * (e * a.transpose()).array().tanh().matrix();  // n_items x d
  // Prototypes are distributed like projected items, so each sits among the items.
  Rng proto_rng(DeriveSeed(o.seed, kPrototypeStream));
  Eigen::MatrixXd protos(o.k, d);
  for (int64_t g = 0; g < o.k; ++g)
    for (int64_t c = 0; c < d; ++c) protos(g, c) = o.scale * std::tanh(proto_rng.Normal());
  p.group_reward.resize(o.k, o.n_items);
  for (int64_t g = 0; g < o.k; ++g)
    p.group_reward.row(g) = -(p.projected.rowwise() - protos.row(g)).rowwise().norm().transpose();
  DrawWeights(o, p);
  p.ideal = p.weights * protos;
  p.protos = protos;
  return p;
}

void CheckCount(int64_t v, int64_t lo, int64_t hi, const char* flag, const char* what) {
  PREFMIX_CHECK_INPUT(v >= lo && v <= hi, flag, ": ", v, " is not a valid ", what, " (need ", lo,
                      " <= value <= ", hi, ")");
}

void CheckReal(double v, double lo, bool lo_open, double hi, bool hi_open, const char* flag,
               const char* what) {
  const bool ok = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  PREFMIX_CHECK_INPUT(ok, flag, ": ", Num(v), " is not a valid ", what, " (need a value in ",
                      lo_open ? "(" : "[", Num(lo), ", ", Num(hi), hi_open ? ")" : "]", ")");
}

}  // namespace

const char* KindName(GenerateKind kind) {
  switch (kind) {
    case GenerateKind::kGroups:
      return "groups";
    case GenerateKind::kLowrank:
      return "lowrank";
    case GenerateKind::kIdealPoint:
      return "ideal-point";
  }
  throw InternalError("KindName: unknown GenerateKind");
}

GenerateKind ParseKind(const std::string& name) {
  if (name == "groups") return GenerateKind::kGroups;
  if (name == "lowrank") return GenerateKind::kLowrank;
  if (name == "ideal-point") return GenerateKind::kIdealPoint;
  throw Error(Cat("--kind: '", name, "' is not a generator kind (groups | lowrank | ideal-point)"));
}

GenerateOptions GenerateOptions::Preset(GenerateKind kind, const std::string& regime) {
  PREFMIX_CHECK_INPUT(regime == "standard" || regime == "sparse", "--preset: '", regime,
                      "' is not a preset (standard | sparse)");
  GenerateOptions o = Preset(kind);
  if (regime == "sparse") {
    o.n_users = kSparseUsers;
    o.pairs_per_user = kSparsePairsPerUser;
  }
  return o;
}

GenerateOptions GenerateOptions::Preset(GenerateKind kind) {
  GenerateOptions o;
  o.kind = kind;
  switch (kind) {
    case GenerateKind::kGroups:
      break;  // the member defaults
    case GenerateKind::kLowrank:
      o.pairs_per_user = 60;
      o.k = 4;
      o.group_sizes.clear();
      o.scale = kLowrankDefaultScale;
      break;
    case GenerateKind::kIdealPoint:
      o.pairs_per_user = 60;
      o.k = 3;
      o.group_sizes.clear();
      o.scale = kIdealPointDefaultScale;
      break;
  }
  return o;
}

void GenerateOptions::Validate() const {
  constexpr int64_t kMaxIndex = std::numeric_limits<int32_t>::max();
  CheckCount(n_users, 1, kMaxIndex, "--users", "number of users");
  CheckCount(n_items, 2, kMaxIndex, "--items", "number of items (pairs need two distinct items)");
  CheckCount(pairs_per_user, 1, kMaxIndex, "--pairs-per-user", "number of pairs per user");
  PREFMIX_CHECK_INPUT(n_users * pairs_per_user <= kMaxIndex, "--users ", n_users,
                      " x --pairs-per-user ", pairs_per_user, " = ", n_users * pairs_per_user,
                      " comparisons; at most 2^31-1 supported");
  CheckCount(dim, 1, 1 << 20, "--dim", "embedding dimension");
  CheckCount(k, 1, 1 << 16, "--k", "number of groups/prototypes");
  CheckReal(scale, 0.0, true, 1e6, false, "--scale", "scale");
  CheckReal(attribute_correlation, 0.0, false, 1.0, false, "--attribute-correlation",
            "probability");
  switch (kind) {
    case GenerateKind::kGroups: {
      PREFMIX_CHECK_INPUT(dim >= k + 1, "--dim: ", dim, " is too small for --k ", k,
                          " with kind groups (need dim >= k + 1 orthonormal directions)");
      const double lo = k >= 2 ? -1.0 / (k - 1) : -1.0;
      CheckReal(group_similarity, lo, false, 1.0, true, "--group-similarity",
                "cosine similarity for this --k");
      if (!group_sizes.empty()) {
        PREFMIX_CHECK_INPUT(static_cast<int64_t>(group_sizes.size()) == k,
                            "--group-sizes: ", group_sizes.size(), " values (",
                            JoinNums(group_sizes), ") but --k is ", k,
                            "; give one percentage per group");
        double sum = 0;
        for (double s : group_sizes) {
          PREFMIX_CHECK_INPUT(std::isfinite(s) && s > 0, "--group-sizes: ", Num(s), " in ",
                              JoinNums(group_sizes), " is not a positive percentage");
          sum += s;
        }
        PREFMIX_CHECK_INPUT(std::fabs(sum - 100.0) <= 1e-6,
                            "--group-sizes: ", JoinNums(group_sizes), " sum to ", Num(sum),
                            ", not 100");
      }
      break;
    }
    case GenerateKind::kLowrank:
      PREFMIX_CHECK_INPUT(dim >= k, "--dim: ", dim, " is too small for --k ", k,
                          " with kind lowrank (need dim >= k orthonormal directions)");
      CheckReal(alpha, 0.0, true, 1e6, false, "--alpha", "Dirichlet concentration");
      break;
    case GenerateKind::kIdealPoint:
      CheckReal(alpha, 0.0, true, 1e6, false, "--alpha", "Dirichlet concentration");
      CheckCount(latent_dim, 1, 1 << 20, "--latent-dim", "latent dimension");
      break;
  }
}

std::string GenerateOptions::Describe() const {
  std::ostringstream os;
  os << "synthetic " << KindName(kind) << ": seed=" << seed << " users=" << n_users
     << " pairs_per_user=" << pairs_per_user << " items=" << n_items << " dim=" << dim
     << " k=" << k;
  if (kind == GenerateKind::kGroups)
    os << " group_sizes=" << (group_sizes.empty() ? std::string("equal") : JoinNums(group_sizes))
       << " group_similarity=" << Num(group_similarity);
  if (kind != GenerateKind::kGroups) os << " alpha=" << Num(alpha);
  if (kind == GenerateKind::kIdealPoint) os << " latent_dim=" << latent_dim << " map=tanh";
  os << " attribute_correlation=" << Num(attribute_correlation) << " scale=" << Num(scale);
  return os.str();
}

Dataset Generate(const GenerateOptions& o) {
  o.Validate();
  Dataset ds;
  ds.source = "<memory>";
  ds.embedding_model = std::string("synthetic-") + KindName(o.kind);
  ds.description = o.Describe();

  // Items. Rewards use the stored float32 values so the truth matches the file exactly.
  Rng item_rng(DeriveSeed(o.seed, kItemStream));
  ds.items.resize(o.n_items, o.dim);
  for (int64_t i = 0; i < o.n_items; ++i)
    for (int64_t c = 0; c < o.dim; ++c) ds.items(i, c) = static_cast<float>(item_rng.Normal());
  ds.item_ids = MakeIds("i", o.n_items);
  const Eigen::MatrixXd e = ds.items.cast<double>();

  Planted p;
  switch (o.kind) {
    case GenerateKind::kGroups:
      p = PlantGroups(o, e);
      break;
    case GenerateKind::kLowrank:
      p = PlantLowrank(o, e);
      break;
    case GenerateKind::kIdealPoint:
      p = PlantIdealPoint(o, e);
      break;
  }

  // Users and attributes.
  ds.user_ids = MakeIds("u", o.n_users);
  Attribute segment{"segment", std::vector<int32_t>(o.n_users), {}};
  for (int64_t g = 0; g < o.k; ++g) segment.labels.push_back("s" + std::to_string(g));
  Rng seg_rng(DeriveSeed(o.seed, kSegmentStream));
  for (int64_t u = 0; u < o.n_users; ++u) {
    int32_t code = p.group[u];
    // Draw the coin for every user (also when K == 1) so the stream does not depend on K.
    if (seg_rng.Uniform() >= o.attribute_correlation && o.k > 1) {
      int32_t other = static_cast<int32_t>(seg_rng.Below(o.k - 1));
      code = other >= code ? other + 1 : other;
    }
    segment.codes[u] = code;
  }
  Attribute cohort{"cohort", std::vector<int32_t>(o.n_users), {}};
  for (int c = 0; c < kNumCohorts; ++c) cohort.labels.push_back("c" + std::to_string(c));
  Rng cohort_rng(DeriveSeed(o.seed, kCohortStream));
  for (int64_t u = 0; u < o.n_users; ++u)
    cohort.codes[u] = static_cast<int32_t>(cohort_rng.Below(kNumCohorts));
  // In name order, the order an HDF5 reader lists /users/attributes in.
  ds.attributes.push_back(std::move(cohort));
  ds.attributes.push_back(std::move(segment));

  // Comparisons: one stream per user, so a user's pairs do not depend on the other users.
  const int64_t m = o.n_users * o.pairs_per_user;
  ds.cmp_user.resize(m);
  ds.cmp_chosen.resize(m);
  ds.cmp_rejected.resize(m);
  ds.truth_pair_prob.resize(m);
  for (int64_t u = 0; u < o.n_users; ++u) {
    Rng rng(DeriveSeed(o.seed, kPairStream, u));
    for (int64_t t = 0; t < o.pairs_per_user; ++t) {
      const int64_t j = u * o.pairs_per_user + t;
      const int64_t a = static_cast<int64_t>(rng.Below(o.n_items));
      int64_t b = static_cast<int64_t>(rng.Below(o.n_items - 1));
      if (b >= a) ++b;
      const double gap = p.RewardGap(u, a, b);
      const double p_ab = Sigmoid(gap);
      const bool a_wins = rng.Uniform() < p_ab;
      ds.cmp_user[j] = u;
      ds.cmp_chosen[j] = a_wins ? a : b;
      ds.cmp_rejected[j] = a_wins ? b : a;
      // sigmoid(-gap) rather than 1 - p_ab: no cancellation for confident pairs.
      ds.truth_pair_prob[j] = static_cast<float>(a_wins ? p_ab : Sigmoid(-gap));
    }
  }

  ds.truth_user_group = p.group;
  ds.truth_user_weights = p.weights.cast<float>();
  ds.truth_group_item_reward = p.group_reward.cast<float>();

  try {
    ds.Validate();
  } catch (const Error& err) {
    throw InternalError(Cat("Generate produced an invalid dataset: ", err.what()));
  }
  return ds;
}

double OracleAccuracy(const std::vector<float>& pair_prob) {
  if (pair_prob.empty()) return std::numeric_limits<double>::quiet_NaN();
  double hits = 0;
  for (float p : pair_prob) hits += p > 0.5f ? 1.0 : (p == 0.5f ? 0.5 : 0.0);
  return hits / static_cast<double>(pair_prob.size());
}

IdealPointTruth PlantedIdealPoint(const GenerateOptions& o, const Dataset& ds) {
  PREFMIX_CHECK_INPUT(o.kind == GenerateKind::kIdealPoint, "PlantedIdealPoint: kind is ",
                      KindName(o.kind), ", not ideal-point");
  o.Validate();
  PREFMIX_CHECK_INPUT(ds.n_items() == o.n_items && ds.dim() == o.dim,
                      "PlantedIdealPoint: the dataset does not come from these options");
  Planted p = PlantIdealPoint(o, ds.items.cast<double>());
  return {p.projected, p.protos};
}

}  // namespace prefmix::data
