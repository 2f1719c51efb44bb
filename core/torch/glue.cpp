#include "core/torch/glue.h"

#include <cstring>

namespace prefmix::torchglue {

namespace {
torch::Tensor Long(const std::vector<int32_t>& v) {
  return torch::from_blob(const_cast<int32_t*>(v.data()), {static_cast<int64_t>(v.size())},
                          torch::TensorOptions().dtype(torch::kInt32))
      .to(torch::kLong);
}

torch::Tensor Float(const std::vector<float>& v) {
  return torch::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())},
                          torch::TensorOptions().dtype(torch::kFloat32))
      .clone();
}
}  // namespace

PairTensors ToTensors(const PairSet& p) {
  PairTensors t;
  t.n = static_cast<int64_t>(p.size());
  t.user = Long(p.user);
  t.first = Long(p.first);
  t.second = Long(p.second);
  t.context = Long(p.context);
  t.label = Float(p.label);
  t.weight = Float(p.weight);
  return t;
}

torch::Tensor View(const RowMatrixF& m) {
  return torch::from_blob(const_cast<float*>(m.data()), {m.rows(), m.cols()},
                          torch::TensorOptions().dtype(torch::kFloat32));
}

torch::Tensor Copy(const RowMatrixF& m) { return View(m).clone(); }

std::vector<torch::Tensor> Snapshot(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  out.reserve(params.size());
  for (const auto& p : params) out.push_back(p.detach().clone());
  return out;
}

void Restore(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& snapshot) {
  torch::NoGradGuard ng;
  for (size_t i = 0; i < params.size() && i < snapshot.size(); ++i) params[i].copy_(snapshot[i]);
}

RowMatrixF ToMatrix(const torch::Tensor& t) {
  auto c = t.detach().contiguous().to(torch::kFloat32);
  RowMatrixF m(c.size(0), c.dim() > 1 ? c.size(1) : 1);
  if (m.size()) std::memcpy(m.data(), c.data_ptr<float>(), sizeof(float) * m.size());
  return m;
}

}  // namespace prefmix::torchglue
