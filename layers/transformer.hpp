// tapegrad — TransformerEncoderLayer (torch.nn.TransformerEncoderLayer), composed of
// MultiheadAttention, Linear, LayerNorm and Dropout (no hand-written backward).
//
//   post-norm (default):  x = norm1(x + SA(x));        x = norm2(x + FF(x))
//   pre-norm (norm_first): x = x + SA(norm1(x));        x = x + FF(norm2(x))
//   SA(x) = dropout1(self_attn(x, x, x, masks))     FF(x) = dropout2(linear2(dropout(act(linear1(x)))))
//   act = relu (default) or gelu (exact, erf-based)
//
// Parameter names are PyTorch's: self_attn.in_proj_weight, self_attn.in_proj_bias,
// self_attn.out_proj.weight, self_attn.out_proj.bias, linear1.weight, linear1.bias,
// linear2.weight, linear2.bias, norm1.weight, norm1.bias, norm2.weight, norm2.bias.
// batch_first = true by default: src (N, T, d_model). Dropout acts in training only (eval()).
//
//   TransformerEncoderLayer enc(TransformerEncoderLayerOptions(16, 4).dim_feedforward(32));
//   Tensor y = enc(x, AttentionMask::boolean(causal));   // (N, T, 16)
#pragma once

#include <memory>
#include <string>

#include "framework/module.hpp"
#include "framework/random.hpp"
#include "layers/attention.hpp"
#include "layers/dropout.hpp"
#include "layers/layer_norm.hpp"
#include "layers/linear.hpp"

namespace tapegrad {

struct TransformerEncoderLayerOptions {
  TransformerEncoderLayerOptions(std::size_t d_model, std::size_t nhead)
      : d_model_(d_model), nhead_(nhead) {}
  TAPEGRAD_ARG(std::size_t, d_model);
  TAPEGRAD_ARG(std::size_t, nhead);
  TAPEGRAD_ARG(std::size_t, dim_feedforward) = 2048;
  TAPEGRAD_ARG(double, dropout) = 0.1;
  /// "relu" or "gelu" (ValueError otherwise).
  TAPEGRAD_ARG(std::string, activation) = "relu";
  TAPEGRAD_ARG(double, layer_norm_eps) = 1e-5;
  TAPEGRAD_ARG(bool, batch_first) = true;
  TAPEGRAD_ARG(bool, norm_first) = false;
};

class TransformerEncoderLayer : public Module {
 public:
  explicit TransformerEncoderLayer(const TransformerEncoderLayerOptions& options,
                                   Generator& gen = default_generator());

  /// src (N, T, d_model) (or (T, N, d_model) without batch_first); src_mask (T, T) or
  /// (N·nhead, T, T); src_key_padding_mask (N, T).
  Tensor forward(const Tensor& src, const AttentionMask& src_mask = {},
                 const AttentionMask& src_key_padding_mask = {});
  Tensor operator()(const Tensor& src, const AttentionMask& src_mask = {},
                    const AttentionMask& src_key_padding_mask = {}) {
    return forward(src, src_mask, src_key_padding_mask);
  }

  TransformerEncoderLayerOptions options;
  std::shared_ptr<MultiheadAttention> self_attn;
  std::shared_ptr<Linear> linear1;
  std::shared_ptr<Dropout> dropout;
  std::shared_ptr<Linear> linear2;
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Dropout> dropout1, dropout2;

 private:
  Tensor self_attention_block(const Tensor& x, const AttentionMask& mask,
                              const AttentionMask& key_padding_mask);
  Tensor feed_forward_block(const Tensor& x);
};

}  // namespace tapegrad
