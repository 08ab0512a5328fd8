// tapegrad — Embedding: a lookup table of rows (torch.nn.Embedding).
//
//   Embedding embed(EmbeddingOptions(27, 8));
//   Tensor e = embed(ids, {B, T});  // ids: B·T integers in [0, 27) → (B, T, 8)
#pragma once

#include <cstdint>
#include <vector>

#include "framework/module.hpp"
#include "framework/random.hpp"

namespace tapegrad {

struct EmbeddingOptions {
  EmbeddingOptions(std::size_t num_embeddings, std::size_t embedding_dim)
      : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}
  TAPEGRAD_ARG(std::size_t, num_embeddings);
  TAPEGRAD_ARG(std::size_t, embedding_dim);
};

class Embedding : public Module {
 public:
  /// weight ~ N(0, 1) (PyTorch's default), drawn from `gen`.
  explicit Embedding(const EmbeddingOptions& options, Generator& gen = default_generator());
  Embedding(std::size_t num_embeddings, std::size_t embedding_dim,
            Generator& gen = default_generator())
      : Embedding(EmbeddingOptions(num_embeddings, embedding_dim), gen) {}

  /// Rows of the table for `ids` (row-major, numel(shape) of them) → shape + (E). The gradient
  /// of a repeated id is the sum over its occurrences.
  Tensor forward(const std::vector<std::int64_t>& ids, const Shape& shape) const;
  /// ids → (N, E).
  Tensor forward(const std::vector<std::int64_t>& ids) const;
  Tensor operator()(const std::vector<std::int64_t>& ids, const Shape& shape) const {
    return forward(ids, shape);
  }

  EmbeddingOptions options;
  Tensor weight;  // (V, E)
};

}  // namespace tapegrad
