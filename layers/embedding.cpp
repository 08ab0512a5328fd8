// tapegrad — Embedding (see embedding.hpp).
#include "layers/embedding.hpp"

#include <fmt/format.h>

#include "framework/dispatch.hpp"
#include "framework/init.hpp"
#include "framework/ops.hpp"

namespace tapegrad {

Embedding::Embedding(const EmbeddingOptions& opts, Generator& gen) : options(opts) {
  detail::require_positive("Embedding", "num_embeddings", opts.num_embeddings());
  detail::require_positive("Embedding", "embedding_dim", opts.embedding_dim());
  weight = register_parameter(
      "weight", detail::zeros_for("Embedding", {opts.num_embeddings(), opts.embedding_dim()},
                                  default_dtype()));
  init::normal_(weight, 0.0, 1.0, gen);
}

Tensor Embedding::forward(const std::vector<std::int64_t>& ids) const {
  return index_select(weight, 0, ids);  // (N, E)
}

Tensor Embedding::forward(const std::vector<std::int64_t>& ids, const Shape& shape) const {
  Shape out = shape;
  out.push_back(options.embedding_dim());
  detail::checked_numel("Embedding", out);
  const std::size_t n = detail::checked_numel("Embedding", shape);
  if (n != ids.size())
    throw ShapeError(
        fmt::format("Embedding: {} ids do not fill shape {}", ids.size(), shape_str(shape)));
  return reshape(forward(ids), out);  // (N, E) → shape + (E)
}

}  // namespace tapegrad
