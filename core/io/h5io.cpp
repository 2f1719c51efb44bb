// HDF5 schema v1 reader/writer with the HDF5 C API. Every read checks type, rank and shape and
// reports file + field + value; the HDF5 library's own error stack printing is silenced.
#include "core/io/h5io.h"

#include <hdf5.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/child_probe.h"
#include "core/io/sha256.h"

namespace prefmix {
namespace {

/// RAII for HDF5 identifiers.
class Hid {
 public:
  Hid() = default;
  Hid(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Hid() { Reset(); }
  Hid(Hid&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Hid& operator=(Hid&& o) noexcept {
    Reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
    return *this;
  }
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  /// The id, or `fallback` when it is not valid.
  hid_t get_or(hid_t fallback) const { return ok() ? id_ : fallback; }
  void Reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

void SilenceHdf5() {
  static bool done = false;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    done = true;
  }
}

bool LinkExists(hid_t file, const std::string& path) {
  // Check each component so that "/a/b" with missing "/a" is not an error.
  size_t pos = 0;
  while (true) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

/// Asks for transparent huge pages on the 2 MiB-aligned interior of a fresh, not yet touched
/// buffer. Faulting in 4 KiB pages costs 11-16 us each on our VMs (0.9-1.35 s for a 300 MB matrix);
/// with THP in "madvise" mode this cuts the faults 512-fold. A no-op where THP is off.
void AdviseHugePages(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

class Reader {
 public:
  Reader(std::string path, hid_t file) : path_(std::move(path)), file_(file) {}

  bool Has(const std::string& p) const { return LinkExists(file_, p); }

  Hid Open(const std::string& p) const {
    Hid d(H5Dopen2(file_, p.c_str(), H5P_DEFAULT), H5Dclose);
    PREFMIX_CHECK_INPUT(d.ok(), path_, ": ", p, " is not a readable dataset");
    return d;
  }

  std::vector<hsize_t> Shape(hid_t d, const std::string& p) const {
    Hid space(H5Dget_space(d), H5Sclose);
    PREFMIX_CHECK_INPUT(space.ok(), path_, ": ", p, ": cannot read dataspace");
    int rank = H5Sget_simple_extent_ndims(space.get());
    PREFMIX_CHECK_INPUT(rank >= 0, path_, ": ", p, ": bad dataspace");
    std::vector<hsize_t> dims(rank);
    if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    // A declared size beyond this machine's memory is a bad file, named as such, not an
    // "out of memory" without a file or field (h5py creates such datasets without writing them).
    Hid t(H5Dget_type(d), H5Tclose);
    const long double elem = t.ok() ? std::max<size_t>(1, H5Tget_size(t.get())) : 1;
    long double bytes = elem;
    for (hsize_t x : dims) bytes *= static_cast<long double>(x);
    const long double memory = static_cast<long double>(sysconf(_SC_PHYS_PAGES)) *
                               static_cast<long double>(sysconf(_SC_PAGE_SIZE));
    PREFMIX_CHECK_INPUT(memory <= 0 || bytes <= memory, path_, ": ", p, " declares shape ",
                        ShapeStr(dims), " (", static_cast<double>(bytes / (1L << 30)),
                        " GiB), more than this machine's memory (",
                        static_cast<double>(memory / (1L << 30)), " GiB)");
    return dims;
  }

  std::string ShapeStr(const std::vector<hsize_t>& dims) const {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
  }

  H5T_class_t TypeClass(hid_t d) const {
    Hid t(H5Dget_type(d), H5Tclose);
    return H5Tget_class(t.get());
  }

  std::string ClassName(H5T_class_t c) const {
    switch (c) {
      case H5T_INTEGER:
        return "integer";
      case H5T_FLOAT:
        return "float";
      case H5T_STRING:
        return "string";
      default:
        return "type class " + std::to_string(static_cast<int>(c));
    }
  }

  /// A transfer property list whose type-conversion buffer fits the read. HDF5's default buffer
  /// is 1 MiB, allocated zeroed on every read that converts (a string, a float64 or int64 column):
  /// about 5 ms per small dataset, most of a small file's read (issue 21's start-up figures).
  /// Larger reads convert in strips of at most that size, as before.
  static Hid Transfer(hid_t d, hid_t memtype) {
    Hid ft(H5Dget_type(d), H5Tclose);
    Hid sp(H5Dget_space(d), H5Sclose);
    const hssize_t n = sp.ok() ? H5Sget_simple_extent_npoints(sp.get()) : 0;
    const size_t elem = std::max<size_t>(ft.ok() ? H5Tget_size(ft.get()) : 0, H5Tget_size(memtype));
    const double want = static_cast<double>(std::max<hssize_t>(n, 1)) * std::max<size_t>(elem, 1);
    const size_t bytes = static_cast<size_t>(std::clamp(want, 4096.0, 1048576.0));
    Hid x(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
    if (x.ok()) H5Pset_buffer(x.get(), bytes, nullptr, nullptr);
    return x;
  }

  void ReadAll(hid_t d, hid_t memtype, void* buf, const std::string& p) const {
    Hid x = Transfer(d, memtype);
    PREFMIX_CHECK_INPUT(H5Dread(d, memtype, H5S_ALL, H5S_ALL, x.get_or(H5P_DEFAULT), buf) >= 0,
                        path_, ": ", p, ": read failed (truncated or corrupt file?)");
  }

  RowMatrixF FloatMatrix(const std::string& p) const {
    Hid d = Open(p);
    auto dims = Shape(d.get(), p);
    PREFMIX_CHECK_INPUT(dims.size() == 2, path_, ": ", p, " has shape ", ShapeStr(dims),
                        ", expected a 2-D array");
    H5T_class_t c = TypeClass(d.get());
    PREFMIX_CHECK_INPUT(c == H5T_FLOAT, path_, ": ", p, " has type ", ClassName(c),
                        ", expected float32");
    RowMatrixF m(dims[0], dims[1]);
    AdviseHugePages(m.data(), sizeof(float) * static_cast<size_t>(m.size()));
    if (m.size() > 0) ReadAll(d.get(), H5T_NATIVE_FLOAT, m.data(), p);
    return m;
  }

  template <typename T>
  std::vector<T> Vector(const std::string& p, H5T_class_t want, hid_t memtype) const {
    Hid d = Open(p);
    auto dims = Shape(d.get(), p);
    PREFMIX_CHECK_INPUT(dims.size() == 1, path_, ": ", p, " has shape ", ShapeStr(dims),
                        ", expected a 1-D array");
    H5T_class_t c = TypeClass(d.get());
    PREFMIX_CHECK_INPUT(c == want, path_, ": ", p, " has type ", ClassName(c), ", expected ",
                        ClassName(want));
    std::vector<T> v;
    v.reserve(dims[0]);
    AdviseHugePages(v.data(), sizeof(T) * dims[0]);
    v.resize(dims[0]);
    if (!v.empty()) ReadAll(d.get(), memtype, v.data(), p);
    return v;
  }

  std::vector<int64_t> Ints(const std::string& p) const {
    return Vector<int64_t>(p, H5T_INTEGER, H5T_NATIVE_INT64);
  }
  std::vector<int32_t> Int32s(const std::string& p) const {
    return Vector<int32_t>(p, H5T_INTEGER, H5T_NATIVE_INT32);
  }
  std::vector<float> Floats(const std::string& p) const {
    return Vector<float>(p, H5T_FLOAT, H5T_NATIVE_FLOAT);
  }

  std::vector<std::string> Strings(const std::string& p) const {
    Hid d = Open(p);
    auto dims = Shape(d.get(), p);
    PREFMIX_CHECK_INPUT(dims.size() == 1, path_, ": ", p, " has shape ", ShapeStr(dims),
                        ", expected a 1-D array of strings");
    Hid ftype(H5Dget_type(d.get()), H5Tclose);
    PREFMIX_CHECK_INPUT(H5Tget_class(ftype.get()) == H5T_STRING, path_, ": ", p, " has type ",
                        ClassName(H5Tget_class(ftype.get())), ", expected UTF-8 strings");
    return ReadStrings(d.get(), ftype.get(), dims[0], p, /*is_attr=*/false);
  }

  /// Reads n strings of file type ftype from a dataset (or attribute when is_attr).
  std::vector<std::string> ReadStrings(hid_t obj, hid_t ftype, hsize_t n, const std::string& p,
                                       bool is_attr) const {
    std::vector<std::string> out(n);
    if (n == 0) return out;
    if (H5Tis_variable_str(ftype) > 0) {
      Hid mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), H5T_VARIABLE);
      H5Tset_cset(mem.get(), H5Tget_cset(ftype));
      std::vector<char*> buf(n, nullptr);
      Hid x = is_attr ? Hid() : Transfer(obj, mem.get());
      herr_t rc =
          is_attr ? H5Aread(obj, mem.get(), buf.data())
                  : H5Dread(obj, mem.get(), H5S_ALL, H5S_ALL, x.get_or(H5P_DEFAULT), buf.data());
      PREFMIX_CHECK_INPUT(rc >= 0, path_, ": ", p, ": cannot read strings");
      for (hsize_t i = 0; i < n; ++i) out[i] = buf[i] ? buf[i] : "";
      Hid space(H5Screate_simple(1, &n, nullptr), H5Sclose);
      H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, buf.data());
    } else {
      // Fixed-length strings (numpy's 'S' dtype, as h5py writes them): read them NUL-padded,
      // not NUL-terminated, or HDF5 drops the last character of a full-length string to make
      // room for a terminator ('new0_g0' became 'new0_g').
      size_t len = H5Tget_size(ftype);
      Hid mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), len);
      H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);
      H5Tset_cset(mem.get(), H5Tget_cset(ftype));
      std::vector<char> buf(n * len);
      Hid x = is_attr ? Hid() : Transfer(obj, mem.get());
      herr_t rc =
          is_attr ? H5Aread(obj, mem.get(), buf.data())
                  : H5Dread(obj, mem.get(), H5S_ALL, H5S_ALL, x.get_or(H5P_DEFAULT), buf.data());
      PREFMIX_CHECK_INPUT(rc >= 0, path_, ": ", p, ": cannot read strings");
      for (hsize_t i = 0; i < n; ++i) {
        const char* s = buf.data() + i * len;
        out[i] = std::string(s, strnlen(s, len));
      }
    }
    return out;
  }

  bool HasAttr(hid_t obj, const char* name) const { return H5Aexists(obj, name) > 0; }

  std::vector<std::string> StringAttr(hid_t obj, const char* name, const std::string& where) const {
    Hid a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
    PREFMIX_CHECK_INPUT(a.ok(), path_, ": attribute ", where, "@", name, " is unreadable");
    Hid t(H5Aget_type(a.get()), H5Tclose);
    PREFMIX_CHECK_INPUT(H5Tget_class(t.get()) == H5T_STRING, path_, ": attribute ", where, "@",
                        name, " is not a string");
    Hid space(H5Aget_space(a.get()), H5Sclose);
    hssize_t n = H5Sget_simple_extent_npoints(space.get());
    return ReadStrings(a.get(), t.get(), static_cast<hsize_t>(n), where + "@" + name, true);
  }

  int64_t IntAttr(hid_t obj, const char* name, const std::string& where) const {
    Hid a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
    PREFMIX_CHECK_INPUT(a.ok(), path_, ": attribute ", where, "@", name, " is unreadable");
    Hid t(H5Aget_type(a.get()), H5Tclose);
    H5T_class_t c = H5Tget_class(t.get());
    if (c == H5T_STRING) {
      auto s = StringAttr(obj, name, where);
      throw Error(Cat(path_, ": attribute ", where, "@", name, " = '", s.empty() ? "" : s[0],
                      "' is a string, expected an integer"));
    }
    PREFMIX_CHECK_INPUT(c == H5T_INTEGER, path_, ": attribute ", where, "@", name, " has type ",
                        ClassName(c), ", expected an integer");
    Hid space(H5Aget_space(a.get()), H5Sclose);
    PREFMIX_CHECK_INPUT(H5Sget_simple_extent_npoints(space.get()) == 1, path_, ": attribute ",
                        where, "@", name, " must be a scalar");
    int64_t v = 0;
    PREFMIX_CHECK_INPUT(H5Aread(a.get(), H5T_NATIVE_INT64, &v) >= 0, path_, ": attribute ", where,
                        "@", name, " is unreadable");
    return v;
  }

  const std::string& path() const { return path_; }
  hid_t file() const { return file_; }

 private:
  std::string path_;
  hid_t file_;
};

herr_t CollectName(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}

}  // namespace

namespace {

/// Reads `path` with `probe` in a child first (ProbeInChild), with the time and memory limits
/// that its size gets.
void Probe(const std::string& path, const std::function<void()>& probe) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  const double bytes = ec ? 0.0 : static_cast<double>(size);
  ProbeInChild(path, probe, ReadTimeoutFor(bytes), ReadMemoryFor(bytes));
}

Dataset ReadDatasetInProcess(const std::string& path) {
  Hid file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  PREFMIX_CHECK_INPUT(file.ok(), path, ": cannot open as HDF5 (truncated or corrupt file?)");
  Reader r(path, file.get());
  Dataset ds;
  ds.source = path;

  Hid root(H5Gopen2(file.get(), "/", H5P_DEFAULT), H5Gclose);
  PREFMIX_CHECK_INPUT(root.ok(), path, ": cannot open the root group (corrupt file?)");
  PREFMIX_CHECK_INPUT(r.HasAttr(root.get(), "format"), path,
                      ": root attribute 'format' is missing (expected 'prefmix.dataset')");
  auto fmt = r.StringAttr(root.get(), "format", "/");
  PREFMIX_CHECK_INPUT(fmt.size() == 1 && fmt[0] == "prefmix.dataset", path,
                      ": root attribute format = '", fmt.empty() ? "" : fmt[0],
                      "', expected 'prefmix.dataset'");
  PREFMIX_CHECK_INPUT(r.HasAttr(root.get(), "format_version"), path,
                      ": root attribute 'format_version' is missing (expected 1)");
  int64_t version = r.IntAttr(root.get(), "format_version", "/");
  PREFMIX_CHECK_INPUT(version == 1, path, ": root attribute format_version = ", version,
                      ", this prefmix reads version 1");
  if (r.HasAttr(root.get(), "embedding_model")) {
    auto v = r.StringAttr(root.get(), "embedding_model", "/");
    if (!v.empty()) ds.embedding_model = v[0];
  }
  if (r.HasAttr(root.get(), "description")) {
    auto v = r.StringAttr(root.get(), "description", "/");
    if (!v.empty()) ds.description = v[0];
  }

  PREFMIX_CHECK_INPUT(r.Has("/items/embeddings"), path,
                      ": required dataset /items/embeddings is missing");
  ds.items = r.FloatMatrix("/items/embeddings");
  if (r.Has("/items/ids")) ds.item_ids = r.Strings("/items/ids");
  if (r.Has("/contexts/embeddings")) {
    ds.contexts = r.FloatMatrix("/contexts/embeddings");
    ds.has_contexts = true;
  }
  PREFMIX_CHECK_INPUT(r.Has("/users/ids"), path, ": required dataset /users/ids is missing");
  ds.user_ids = r.Strings("/users/ids");

  const bool has_cmp = r.Has("/comparisons");
  if (has_cmp) {
    for (const char* f : {"/comparisons/user", "/comparisons/chosen", "/comparisons/rejected"})
      PREFMIX_CHECK_INPUT(r.Has(f), path, ": ", f,
                          " is missing (required when /comparisons exists)");
    ds.cmp_user = r.Ints("/comparisons/user");
    ds.cmp_chosen = r.Ints("/comparisons/chosen");
    ds.cmp_rejected = r.Ints("/comparisons/rejected");
    if (r.Has("/comparisons/context")) ds.cmp_context = r.Ints("/comparisons/context");
    if (r.Has("/comparisons/weight")) ds.cmp_weight = r.Floats("/comparisons/weight");
  }
  if (r.Has("/rankings")) {
    for (const char* f : {"/rankings/user", "/rankings/offsets", "/rankings/items"})
      PREFMIX_CHECK_INPUT(r.Has(f), path, ": ", f, " is missing (required when /rankings exists)");
    ds.rank_user = r.Ints("/rankings/user");
    ds.rank_offsets = r.Ints("/rankings/offsets");
    ds.rank_items = r.Ints("/rankings/items");
  }
  PREFMIX_CHECK_INPUT(has_cmp || r.Has("/rankings"), path,
                      ": neither /comparisons nor /rankings is present");

  if (r.Has("/users/attributes")) {
    Hid g(H5Gopen2(file.get(), "/users/attributes", H5P_DEFAULT), H5Gclose);
    PREFMIX_CHECK_INPUT(g.ok(), path, ": /users/attributes is not a group");
    std::vector<std::string> names;
    hsize_t idx = 0;
    H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, CollectName, &names);
    for (const auto& name : names) {
      Attribute a;
      a.name = name;
      std::string p = "/users/attributes/" + name;
      a.codes = r.Int32s(p);
      Hid d = r.Open(p);
      if (r.HasAttr(d.get(), "labels")) a.labels = r.StringAttr(d.get(), "labels", p);
      ds.attributes.push_back(std::move(a));
    }
  }
  if (r.Has("/users/features")) ds.user_features = r.FloatMatrix("/users/features");
  if (r.Has("/truth/pair_prob")) ds.truth_pair_prob = r.Floats("/truth/pair_prob");
  if (r.Has("/truth/user_group")) ds.truth_user_group = r.Int32s("/truth/user_group");
  if (r.Has("/truth/user_weights")) ds.truth_user_weights = r.FloatMatrix("/truth/user_weights");
  if (r.Has("/truth/group_item_reward"))
    ds.truth_group_item_reward = r.FloatMatrix("/truth/group_item_reward");
  ds.Validate();
  return ds;
}

}  // namespace

namespace {

/// The checks that need no HDF5 decoding: the path is a readable regular file with HDF5's
/// signature.
void CheckDatasetPath(const std::string& path) {
  SilenceHdf5();
  namespace fs = std::filesystem;
  std::error_code ec;
  PREFMIX_CHECK_INPUT(fs::exists(path, ec), path, ": no such file");
  PREFMIX_CHECK_INPUT(fs::is_regular_file(path, ec), path, ": not a regular file");
  NoteInput(path);
  {
    std::ifstream probe(path, std::ios::binary);
    PREFMIX_CHECK_INPUT(probe, path, ": cannot open for reading");
  }
  htri_t is = H5Fis_hdf5(path.c_str());
  PREFMIX_CHECK_INPUT(is > 0, path, ": not an HDF5 file (no HDF5 signature)");
}

}  // namespace

Dataset ReadDataset(const std::string& path) {
  CheckDatasetPath(path);
  // libhdf5 crashes, loops or allocates gigabytes on some corrupt files: a child reads first.
  Probe(path, [&] { ReadDatasetInProcess(path); });
  return ReadDatasetInProcess(path);
}

Dataset ReadDatasetUnguarded(const std::string& path) {
  CheckDatasetPath(path);
  return ReadDatasetInProcess(path);
}

namespace {

class Writer {
 public:
  Writer(std::string path, hid_t file) : path_(std::move(path)), file_(file) {}

  void Group(const char* p) {
    if (LinkExists(file_, p)) return;
    // No modification times in object headers: the same inputs give the same bytes.
    Hid gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
    H5Pset_obj_track_times(gcpl.get(), false);
    Hid g(H5Gcreate2(file_, p, H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
    Check(g.ok(), p);
  }

  void Check(bool ok, const std::string& what) {
    PREFMIX_CHECK_INPUT(ok, path_, ": cannot write ", what, " (disk full or permission denied?)");
  }

  /// Chunked (rows) for large arrays; contiguous for small ones.
  Hid Create(const std::string& p, hid_t ftype, const std::vector<hsize_t>& dims) {
    Hid space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_obj_track_times(dcpl.get(), false);  // reproducible bytes (no timestamps)
    hsize_t total = 1;
    for (auto d : dims) total *= d;
    if (total * H5Tget_size(ftype) > (1u << 22) && dims[0] > 0) {
      std::vector<hsize_t> chunk = dims;
      hsize_t row = total / dims[0];
      chunk[0] = std::max<hsize_t>(
          1,
          std::min<hsize_t>(dims[0], (1u << 22) / std::max<hsize_t>(1, row * H5Tget_size(ftype))));
      H5Pset_chunk(dcpl.get(), static_cast<int>(dims.size()), chunk.data());
    }
    Hid d(H5Dcreate2(file_, p.c_str(), ftype, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
          H5Dclose);
    Check(d.ok(), p);
    return d;
  }

  void FloatMatrix(const std::string& p, const RowMatrixF& m) {
    Hid d = Create(p, H5T_IEEE_F32LE, {(hsize_t)m.rows(), (hsize_t)m.cols()});
    if (m.size())
      Check(H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data()) >= 0, p);
  }
  void Ints(const std::string& p, const std::vector<int64_t>& v) {
    Hid d = Create(p, H5T_STD_I64LE, {(hsize_t)v.size()});
    if (!v.empty())
      Check(H5Dwrite(d.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0, p);
  }
  Hid Int32s(const std::string& p, const std::vector<int32_t>& v) {
    Hid d = Create(p, H5T_STD_I32LE, {(hsize_t)v.size()});
    if (!v.empty())
      Check(H5Dwrite(d.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0, p);
    return d;
  }
  void Floats(const std::string& p, const std::vector<float>& v) {
    Hid d = Create(p, H5T_IEEE_F32LE, {(hsize_t)v.size()});
    if (!v.empty())
      Check(H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0, p);
  }

  static Hid Utf8Type() {
    Hid t(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(t.get(), H5T_VARIABLE);
    H5Tset_cset(t.get(), H5T_CSET_UTF8);
    return t;
  }

  void Strings(const std::string& p, const std::vector<std::string>& v) {
    Hid t = Utf8Type();
    Hid d = Create(p, t.get(), {(hsize_t)v.size()});
    std::vector<const char*> ptrs(v.size());
    for (size_t i = 0; i < v.size(); ++i) ptrs[i] = v[i].c_str();
    if (!v.empty())
      Check(H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) >= 0, p);
  }

  void StringAttr(hid_t obj, const char* name, const std::string& value) {
    Hid t = Utf8Type();
    Hid space(H5Screate(H5S_SCALAR), H5Sclose);
    Hid a(H5Acreate2(obj, name, t.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    Check(a.ok(), name);
    const char* ptr = value.c_str();
    Check(H5Awrite(a.get(), t.get(), &ptr) >= 0, name);
  }
  void StringArrayAttr(hid_t obj, const char* name, const std::vector<std::string>& values) {
    Hid t = Utf8Type();
    hsize_t n = values.size();
    Hid space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    Hid a(H5Acreate2(obj, name, t.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    Check(a.ok(), name);
    std::vector<const char*> ptrs(n);
    for (size_t i = 0; i < n; ++i) ptrs[i] = values[i].c_str();
    Check(H5Awrite(a.get(), t.get(), ptrs.data()) >= 0, name);
  }
  void IntAttr(hid_t obj, const char* name, int64_t v) {
    Hid space(H5Screate(H5S_SCALAR), H5Sclose);
    Hid a(H5Acreate2(obj, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    Check(a.ok(), name);
    Check(H5Awrite(a.get(), H5T_NATIVE_INT64, &v) >= 0, name);
  }

 private:
  std::string path_;
  hid_t file_;
};

/// A new HDF5 file for `path`, built in memory (the core driver without a backing store) and
/// written out by WriteImage: HDF5 itself never writes to the disk, so a full disk or a failed
/// write is our clean error, never a half-closed HDF5 file that crashes the library's shutdown.
/// No modification times in its object headers, the root group's included: the same content
/// gives the same bytes.
Hid CreateFile(const std::string& path) {
  Hid fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  H5Pset_obj_track_times(fcpl.get(), false);
  Hid fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  PREFMIX_CHECK_INPUT(fapl.ok() && H5Pset_fapl_core(fapl.get(), 1 << 20, false) >= 0, path,
                      ": cannot set up the in-memory HDF5 file");
  Hid file(H5Fcreate((path + ".in-memory").c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()),
           H5Fclose);
  PREFMIX_CHECK_INPUT(file.ok(), path, ": cannot create the output file");
  return file;
}

/// Writes the image of the in-memory file `file` to `dest` (the atomic output's temporary file
/// for `path`).
void WriteImage(hid_t file, const std::string& dest, const std::string& path) {
  PREFMIX_CHECK_INPUT(H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0, path, ": flush failed");
  const ssize_t n = H5Fget_file_image(file, nullptr, 0);
  PREFMIX_CHECK_INPUT(n > 0, path, ": cannot build the file image");
  std::vector<char> image(static_cast<size_t>(n));
  PREFMIX_CHECK_INPUT(H5Fget_file_image(file, image.data(), image.size()) == n, path,
                      ": cannot build the file image");
  std::ofstream f(dest, std::ios::binary);
  PREFMIX_CHECK_INPUT(f, path, ": cannot open for writing");
  f.write(image.data(), static_cast<std::streamsize>(image.size()));
  f.flush();
  PREFMIX_CHECK_INPUT(f, path, ": write failed (disk full?)");
}

}  // namespace

void WriteDataset(const Dataset& ds, const std::string& path) {
  SilenceHdf5();
  ds.Validate();
  AtomicOutput out(path);
  {
    Hid file = CreateFile(path);
    Writer w(path, file.get());
    Hid root(H5Gopen2(file.get(), "/", H5P_DEFAULT), H5Gclose);
    w.StringAttr(root.get(), "format", "prefmix.dataset");
    w.IntAttr(root.get(), "format_version", 1);
    if (!ds.embedding_model.empty())
      w.StringAttr(root.get(), "embedding_model", ds.embedding_model);
    if (!ds.description.empty()) w.StringAttr(root.get(), "description", ds.description);
    w.Group("/items");
    w.FloatMatrix("/items/embeddings", ds.items);
    if (!ds.item_ids.empty()) w.Strings("/items/ids", ds.item_ids);
    if (ds.has_contexts) {
      w.Group("/contexts");
      w.FloatMatrix("/contexts/embeddings", ds.contexts);
    }
    if (!ds.cmp_user.empty() || !ds.has_rankings()) {
      w.Group("/comparisons");
      w.Ints("/comparisons/user", ds.cmp_user);
      w.Ints("/comparisons/chosen", ds.cmp_chosen);
      w.Ints("/comparisons/rejected", ds.cmp_rejected);
      if (!ds.cmp_context.empty()) w.Ints("/comparisons/context", ds.cmp_context);
      if (!ds.cmp_weight.empty()) w.Floats("/comparisons/weight", ds.cmp_weight);
    }
    if (ds.has_rankings()) {
      w.Group("/rankings");
      w.Ints("/rankings/user", ds.rank_user);
      w.Ints("/rankings/offsets", ds.rank_offsets);
      w.Ints("/rankings/items", ds.rank_items);
    }
    w.Group("/users");
    w.Strings("/users/ids", ds.user_ids);
    if (!ds.attributes.empty()) {
      w.Group("/users/attributes");
      for (const auto& a : ds.attributes) {
        Hid d = w.Int32s("/users/attributes/" + a.name, a.codes);
        if (!a.labels.empty()) w.StringArrayAttr(d.get(), "labels", a.labels);
      }
    }
    if (ds.user_features.size() > 0) w.FloatMatrix("/users/features", ds.user_features);
    const bool truth = !ds.truth_pair_prob.empty() || !ds.truth_user_group.empty() ||
                       ds.truth_user_weights.size() > 0 || ds.truth_group_item_reward.size() > 0;
    if (truth) {
      w.Group("/truth");
      if (!ds.truth_pair_prob.empty()) w.Floats("/truth/pair_prob", ds.truth_pair_prob);
      if (!ds.truth_user_group.empty()) w.Int32s("/truth/user_group", ds.truth_user_group);
      if (ds.truth_user_weights.size() > 0)
        w.FloatMatrix("/truth/user_weights", ds.truth_user_weights);
      if (ds.truth_group_item_reward.size() > 0)
        w.FloatMatrix("/truth/group_item_reward", ds.truth_group_item_reward);
    }
    root.Reset();
    WriteImage(file.get(), out.temp_path(), path);
  }
  out.Commit();
}

std::string FileSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  PREFMIX_CHECK_INPUT(in, path, ": cannot open for reading");
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), buf.size());
    h.Update(reinterpret_cast<const uint8_t*>(buf.data()), static_cast<size_t>(in.gcount()));
  }
  return h.HexDigest();
}

}  // namespace prefmix

namespace prefmix {

void WriteUserMatrix(const std::string& path, const std::vector<std::string>& ids,
                     const std::string& dataset, const RowMatrixF& m,
                     const UserMatrixProvenance& prov) {
  SilenceHdf5();
  PREFMIX_ASSERT((int64_t)ids.size() == m.rows(), "ids/rows mismatch");
  PREFMIX_ASSERT(m.allFinite(), "non-finite values in ", dataset);
  AtomicOutput out(path);
  {
    Hid file = CreateFile(path);
    Writer w(path, file.get());
    Hid root(H5Gopen2(file.get(), "/", H5P_DEFAULT), H5Gclose);
    if (!prov.family.empty()) w.StringAttr(root.get(), "family", prov.family);
    if (!prov.model_sha256.empty()) w.StringAttr(root.get(), "model_sha256", prov.model_sha256);
    if (!prov.item_ids_sha256.empty())
      w.StringAttr(root.get(), "item_ids_sha256", prov.item_ids_sha256);
    w.Group("/users");
    w.Strings("/users/ids", ids);
    w.FloatMatrix(dataset, m);
    root.Reset();
    WriteImage(file.get(), out.temp_path(), path);
  }
  out.Commit();
}

namespace {

void ReadUserMatrixInProcess(const std::string& path, const std::string& dataset,
                             std::vector<std::string>* ids, RowMatrixF* m,
                             UserMatrixProvenance* prov) {
  Hid file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  PREFMIX_CHECK_INPUT(file.ok(), path, ": cannot open as HDF5");
  Reader r(path, file.get());
  PREFMIX_CHECK_INPUT(r.Has("/users/ids"), path, ": /users/ids is missing");
  PREFMIX_CHECK_INPUT(r.Has(dataset), path, ": ", dataset, " is missing");
  *ids = r.Strings("/users/ids");
  *m = r.FloatMatrix(dataset);
  PREFMIX_CHECK_INPUT(m->rows() == (int64_t)ids->size(), path, ": ", dataset, " has ", m->rows(),
                      " rows, expected ", ids->size(), " (one per /users/ids)");
  PREFMIX_CHECK_INPUT(m->allFinite(), path, ": ", dataset, " has a non-finite value");
  if (prov) {
    *prov = UserMatrixProvenance();
    Hid root(H5Gopen2(file.get(), "/", H5P_DEFAULT), H5Gclose);
    auto one = [&](const char* name) {
      if (!r.HasAttr(root.get(), name)) return std::string();
      const auto v = r.StringAttr(root.get(), name, "/");
      return v.empty() ? std::string() : v[0];
    };
    prov->family = one("family");
    prov->model_sha256 = one("model_sha256");
    prov->item_ids_sha256 = one("item_ids_sha256");
  }
}

}  // namespace

void ReadUserMatrix(const std::string& path, const std::string& dataset,
                    std::vector<std::string>* ids, RowMatrixF* m, UserMatrixProvenance* prov) {
  CheckDatasetPath(path);
  // As ReadDataset: a child reads first (libhdf5 may crash on a corrupt file).
  Probe(path, [&] {
    std::vector<std::string> i2;
    RowMatrixF m2;
    UserMatrixProvenance p2;
    ReadUserMatrixInProcess(path, dataset, &i2, &m2, &p2);
  });
  ReadUserMatrixInProcess(path, dataset, ids, m, prov);
}

std::string StringsSha256(const std::vector<std::string>& s) {
  Sha256 h;
  for (const auto& x : s)  // each with its NUL terminator
    h.Update(reinterpret_cast<const uint8_t*>(x.c_str()), x.size() + 1);
  return h.HexDigest();
}

}  // namespace prefmix
