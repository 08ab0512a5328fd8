// tapegrad — TransformerEncoderLayer (see transformer.hpp).
#include "layers/transformer.hpp"

#include <fmt/format.h>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "layers/activation.hpp"

namespace tapegrad {

TransformerEncoderLayer::TransformerEncoderLayer(const TransformerEncoderLayerOptions& opts,
                                                 Generator& gen)
    : options(opts) {
  const char* op = "TransformerEncoderLayer";
  if (opts.activation() != "relu" && opts.activation() != "gelu")
    throw ValueError(fmt::format("{}: activation must be \"relu\" or \"gelu\", got \"{}\"", op,
                                 opts.activation()));
  detail::require_positive(op, "d_model", opts.d_model());
  detail::require_positive(op, "dim_feedforward", opts.dim_feedforward());
  // Registration order = PyTorch's state-dict order.
  self_attn = register_module(
      "self_attn", std::make_shared<MultiheadAttention>(
                       MultiheadAttentionOptions(opts.d_model(), opts.nhead())
                           .dropout(opts.dropout())
                           .batch_first(true),
                       gen));
  linear1 = register_module("linear1", std::make_shared<Linear>(opts.d_model(), opts.dim_feedforward(), gen));
  dropout = register_module("dropout", std::make_shared<Dropout>(opts.dropout(), gen));
  linear2 = register_module("linear2", std::make_shared<Linear>(opts.dim_feedforward(), opts.d_model(), gen));
  const auto norm = LayerNormOptions(Shape{opts.d_model()}).eps(opts.layer_norm_eps());
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(norm));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(norm));
  dropout1 = register_module("dropout1", std::make_shared<Dropout>(opts.dropout(), gen));
  dropout2 = register_module("dropout2", std::make_shared<Dropout>(opts.dropout(), gen));
}

Tensor TransformerEncoderLayer::self_attention_block(const Tensor& x, const AttentionMask& mask,
                                                     const AttentionMask& key_padding_mask) {
  Tensor a = self_attn->forward(x, x, x, key_padding_mask, /*need_weights=*/false, mask).output;
  return dropout1->forward(a);
}

Tensor TransformerEncoderLayer::feed_forward_block(const Tensor& x) {
  Tensor hidden = linear1->forward(x);
  hidden = options.activation() == "gelu" ? gelu(hidden) : relu(hidden);
  return dropout2->forward(linear2->forward(dropout->forward(hidden)));
}

Tensor TransformerEncoderLayer::forward(const Tensor& src, const AttentionMask& src_mask,
                                        const AttentionMask& src_key_padding_mask) {
  if (!src.defined() || src.dim() != 3 || src.size(2) != options.d_model())
    throw ShapeError(fmt::format("TransformerEncoderLayer: expected src of shape {} with d_model = {}, got {}",
                                 options.batch_first() ? "(N, T, d_model)" : "(T, N, d_model)",
                                 options.d_model(), src.defined() ? shape_str(src.shape()) : "undefined"));
  Tensor x = options.batch_first() ? src : transpose(src, 0, 1);  // (N, T, d_model)
  if (options.norm_first()) {
    x = x + self_attention_block(norm1->forward(x), src_mask, src_key_padding_mask);
    x = x + feed_forward_block(norm2->forward(x));
  } else {
    x = norm1->forward(x + self_attention_block(x, src_mask, src_key_padding_mask));
    x = norm2->forward(x + feed_forward_block(x));
  }
  return options.batch_first() ? x : transpose(x, 0, 1);
}

}  // namespace tapegrad
