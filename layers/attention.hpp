// tapegrad — scaled dot-product attention and MultiheadAttention (torch.nn.MultiheadAttention),
// composed of framework ops only (no hand-written backward).
//
//   attention(q, k, v) = softmax(q kᵀ / √E + mask) v          q (B, L, E), k (B, S, E), v (B, S, Ev)
//
// Masks (AttentionMask) come in PyTorch's two kinds:
//   boolean   nonzero = masked out: the score becomes −∞ (its weight 0). A row with every key
//             masked gives NaN, as in PyTorch.
//   additive  a float tensor added to the scores (0 keeps, −∞ masks, anything else biases).
// A boolean mask is turned into an additive one (0 / −∞) first, exactly as PyTorch 1.13's
// nn.MultiheadAttention does; boolean masks combine like logical or.
//
// MultiheadAttention follows PyTorch 1.13 exactly, so state dicts interchange:
//   in_proj_weight (3E, E) rows q|k|v, xavier_uniform;  in_proj_bias (3E), zeros;
//   out_proj.weight (E, E) (Linear's init), out_proj.bias (E), zeros.
//   batch_first = true by default (query (N, L, E), key/value (N, S, E)); attn_mask (L, S) or
//   (N·num_heads, L, S); key_padding_mask (N, S) (true = this key is padding). With need_weights
//   the attention weights are returned, averaged over the heads (N, L, S), or per head
//   (N, num_heads, L, S) with average_attn_weights = false. Attention dropout (options.dropout)
//   applies in training only, to the weights (the returned weights are the dropped ones, as in
//   PyTorch).
//
//   MultiheadAttention mha(MultiheadAttentionOptions(16, 4));
//   auto out = mha(x, x, x, AttentionMask::boolean(padding));   // out.output (N, L, 16)
//   out.weights;                                                 // (N, L, S), rows sum to 1
#pragma once

#include <memory>

#include "framework/module.hpp"
#include "framework/random.hpp"
#include "layers/linear.hpp"

namespace tapegrad {

/// A boolean or additive attention mask (see the file comment). Default: no mask.
struct AttentionMask {
  enum class Kind { None, Boolean, Additive };
  /// Nonzero entries are masked out (any float dtype; the values are read, not differentiated).
  static AttentionMask boolean(const Tensor& mask) { return {mask, Kind::Boolean}; }
  /// Added to the scores (the scores' dtype; differentiable like any addend).
  static AttentionMask additive(const Tensor& mask) { return {mask, Kind::Additive}; }
  bool defined() const { return kind != Kind::None; }

  Tensor values;
  Kind kind = Kind::None;
};

struct AttentionOutput {
  Tensor output;   // (B, L, Ev)
  Tensor weights;  // (B, L, S) softmax weights (after dropout when training)
};

/// softmax(q kᵀ / √E + mask) v for q (B, L, E), k (B, S, E), v (B, S, Ev); the mask must
/// broadcast to (B, L, S). dropout_p > 0 drops attention weights with `gen` (F.dropout).
AttentionOutput scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                             const AttentionMask& mask = {},
                                             double dropout_p = 0.0, Generator* gen = nullptr);

/// A mask as an additive tensor of `dtype` (boolean → 0 / −∞); `op` names the caller in errors.
Tensor additive_mask(const AttentionMask& mask, DType dtype, const char* op);

struct MultiheadAttentionOptions {
  MultiheadAttentionOptions(std::size_t embed_dim, std::size_t num_heads)
      : embed_dim_(embed_dim), num_heads_(num_heads) {}
  TAPEGRAD_ARG(std::size_t, embed_dim);
  TAPEGRAD_ARG(std::size_t, num_heads);
  /// Dropout probability on the attention weights (training only), in [0, 1).
  TAPEGRAD_ARG(double, dropout) = 0.0;
  TAPEGRAD_ARG(bool, batch_first) = true;
};

class MultiheadAttention : public Module {
 public:
  struct Output {
    Tensor output;   // (N, L, E) (or (L, N, E) without batch_first)
    Tensor weights;  // (N, L, S) averaged over heads, (N, heads, L, S), or undefined
  };

  explicit MultiheadAttention(const MultiheadAttentionOptions& options,
                              Generator& gen = default_generator());

  Output forward(const Tensor& query, const Tensor& key, const Tensor& value,
                 const AttentionMask& key_padding_mask = {}, bool need_weights = true,
                 const AttentionMask& attn_mask = {}, bool average_attn_weights = true);
  Output operator()(const Tensor& query, const Tensor& key, const Tensor& value,
                    const AttentionMask& key_padding_mask = {}, bool need_weights = true,
                    const AttentionMask& attn_mask = {}, bool average_attn_weights = true) {
    return forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                   average_attn_weights);
  }
  /// Seeds the attention dropout's Generator.
  void manual_seed(std::uint64_t seed) { dropout_gen_.manual_seed(seed); }

  MultiheadAttentionOptions options;
  Tensor in_proj_weight;              // (3E, E) rows q|k|v
  Tensor in_proj_bias;                // (3E)
  std::shared_ptr<Linear> out_proj;   // E → E

 private:
  Generator dropout_gen_;
};

}  // namespace tapegrad
