// tapegrad — mini-batches (see data.hpp).
#include "framework/data.hpp"

#include <numeric>

#include <fmt/format.h>

#include "framework/ops.hpp"

namespace tapegrad {

std::vector<std::int64_t> randperm(std::size_t n, Generator& gen) {
  std::vector<std::int64_t> p(n);
  std::iota(p.begin(), p.end(), std::int64_t(0));
  for (std::size_t i = n; i > 1; --i) std::swap(p[i - 1], p[gen.integer(i)]);
  return p;
}

std::vector<std::vector<std::int64_t>> batch_indices(std::size_t n, std::size_t batch_size, bool shuffle,
                                                     bool drop_last, Generator& gen) {
  if (batch_size == 0) throw ValueError("batch_indices: batch_size must be at least 1");
  std::vector<std::int64_t> order(n);
  if (shuffle) order = randperm(n, gen);
  else std::iota(order.begin(), order.end(), std::int64_t(0));
  std::vector<std::vector<std::int64_t>> batches;
  for (std::size_t start = 0; start < n; start += batch_size) {
    std::size_t end = std::min(n, start + batch_size);
    if (drop_last && end - start < batch_size) break;
    batches.emplace_back(order.begin() + std::ptrdiff_t(start), order.begin() + std::ptrdiff_t(end));
  }
  return batches;
}

DataLoader::DataLoader(Tensor x, std::vector<std::int64_t> y, std::size_t batch_size, bool shuffle,
                       bool drop_last, Generator& gen)
    : x_(std::move(x)), y_(std::move(y)), batch_size_(batch_size), shuffle_(shuffle), drop_last_(drop_last),
      gen_(gen) {
  if (!x_.defined() || x_.dim() == 0)
    throw ValueError("DataLoader: x must be a tensor whose axis 0 indexes the examples");
  if (batch_size == 0) throw ValueError("DataLoader: batch_size must be at least 1");
  const std::size_t n = x_.size(0);
  if (!y_.empty() && y_.size() != n)
    throw ValueError(fmt::format("DataLoader: x has {} examples {} but y has {} targets", n,
                                 shape_str(x_.shape()), y_.size()));
  if (drop_last && n < batch_size)
    throw ValueError(fmt::format("DataLoader: {} examples make no full batch of {} (drop_last)", n, batch_size));
}

std::size_t DataLoader::size() const {
  const std::size_t n = x_.size(0);
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

std::vector<MiniBatch> DataLoader::epoch() {
  std::vector<MiniBatch> out;
  for (auto& idx : batch_indices(x_.size(0), batch_size_, shuffle_, drop_last_, gen_)) {
    MiniBatch b;
    b.x = index_select(x_, 0, idx);
    if (!y_.empty())
      for (std::int64_t i : idx) b.y.push_back(y_[std::size_t(i)]);
    b.index = std::move(idx);
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace tapegrad
