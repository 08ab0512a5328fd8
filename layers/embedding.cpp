// tapegrad — Embedding (see embedding.hpp).
#include "layers/embedding.hpp"

#include <fmt/format.h>

#include "framework/init.hpp"
#include "framework/ops.hpp"

namespace tapegrad {

Embedding::Embedding(const EmbeddingOptions& opts, Generator& gen) : options(opts) {
  weight = register_parameter("weight", zeros({opts.num_embeddings(), opts.embedding_dim()}));
  init::normal_(weight, 0.0, 1.0, gen);
}

Tensor Embedding::forward(const std::vector<std::int64_t>& ids) const {
  return index_select(weight, 0, ids);  // (N, E)
}

Tensor Embedding::forward(const std::vector<std::int64_t>& ids, const Shape& shape) const {
  std::size_t n = 1;
  for (auto d : shape) n *= d;
  if (n != ids.size())
    throw ShapeError(
        fmt::format("Embedding: {} ids do not fill shape {}", ids.size(), shape_str(shape)));
  Shape out = shape;
  out.push_back(options.embedding_dim());
  return reshape(forward(ids), out);  // (N, E) → shape + (E)
}

}  // namespace tapegrad
