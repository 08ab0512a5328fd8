// tapegrad — attention (see attention.hpp). Shapes: N batch, L target length, S source length,
// E embedding width, h heads, d = E / h per head.
#include "layers/attention.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "framework/dispatch.hpp"
#include "framework/init.hpp"
#include "framework/ops.hpp"
#include "layers/dropout.hpp"

namespace tapegrad {

namespace {

std::string shape_of(const Tensor& t) { return t.defined() ? shape_str(t.shape()) : "undefined"; }

/// ShapeError unless `mask` broadcasts to `target` (naming op, the mask's role and both shapes).
void require_broadcasts(const Tensor& mask, const Shape& target, const char* op, const char* what) {
  bool ok = mask.dim() <= target.size();
  for (std::size_t i = 0; ok && i < mask.dim(); ++i) {
    const std::size_t m = mask.shape()[mask.dim() - 1 - i], t = target[target.size() - 1 - i];
    ok = m == t || m == 1;
  }
  if (!ok)
    throw ShapeError(fmt::format("{}: {} of shape {} does not broadcast to the scores' shape {}",
                                 op, what, shape_str(mask.shape()), shape_str(target)));
}

/// (N, T, E) → (N·h, T, d): the heads as batch entries.
Tensor split_heads(const Tensor& x, std::size_t h) {
  const auto N = std::ptrdiff_t(x.size(0)), T = std::ptrdiff_t(x.size(1)),
             H = std::ptrdiff_t(h), d = std::ptrdiff_t(x.size(2) / h);
  Tensor y = permute(reshape(x, {N, T, H, d}), {0, 2, 1, 3});  // (N, h, T, d)
  return reshape(y, {N * H, T, d});
}

/// (N·h, T, d) → (N, T, h·d): the inverse of split_heads.
Tensor merge_heads(const Tensor& x, std::size_t N) {
  const auto n = std::ptrdiff_t(N), H = std::ptrdiff_t(x.size(0) / N),
             T = std::ptrdiff_t(x.size(1)), d = std::ptrdiff_t(x.size(2));
  Tensor y = permute(reshape(x, {n, H, T, d}), {0, 2, 1, 3});  // (N, T, h, d)
  return reshape(y, {n, T, H * d});
}

}  // namespace

Tensor additive_mask(const AttentionMask& mask, DType dtype, const char* op) {
  if (!mask.values.defined()) throw ValueError(fmt::format("{}: the mask tensor is undefined", op));
  if (mask.kind == AttentionMask::Kind::Additive) {
    if (mask.values.dtype() != dtype)
      throw DTypeError(fmt::format("{}: an additive mask must have the scores' dtype {}, got {} {}",
                                   op, dtype_name(dtype), dtype_name(mask.values.dtype()),
                                   shape_str(mask.values.shape())));
    return mask.values;
  }
  // Boolean: nonzero → −∞, zero → 0 (PyTorch's masked_fill of a zero mask).
  Tensor cond = cast(mask.values.detach(), dtype);
  return where(cond, full(cond.shape(), -std::numeric_limits<double>::infinity(), dtype),
               zeros(cond.shape(), dtype));
}

AttentionOutput scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                             const AttentionMask& mask, double dropout_p,
                                             Generator* gen) {
  const char* op = "scaled_dot_product_attention";
  if (!q.defined() || !k.defined() || !v.defined() || q.dim() != 3 || k.dim() != 3 ||
      v.dim() != 3 || k.size(0) != q.size(0) || v.size(0) != q.size(0) ||
      k.size(2) != q.size(2) || v.size(1) != k.size(1))
    throw ShapeError(fmt::format("{}: expected q (B, L, E), k (B, S, E), v (B, S, Ev), got q {}, k {}, v {}",
                                 op, shape_of(q), shape_of(k), shape_of(v)));
  if (q.size(2) == 0 || k.size(1) == 0)
    throw ShapeError(fmt::format("{}: zero-size q {} or k {} (E = 0 or S = 0)", op,
                                 shape_of(q), shape_of(k)));
  detail::require_same_dtype(q, k, op);
  detail::require_same_dtype(q, v, op);
  const Shape scores_shape{q.size(0), q.size(1), k.size(1)};
  Tensor scores = matmul(q / std::sqrt(double(q.size(2))), k, false, true);  // (B, L, S)
  if (mask.defined()) {
    require_broadcasts(mask.values, scores_shape, op, "the mask");
    scores = scores + additive_mask(mask, q.dtype(), op);
  }
  Tensor weights = softmax(scores, -1);
  if (dropout_p > 0.0) weights = dropout(weights, dropout_p, true, gen ? *gen : default_generator());
  return {matmul(weights, v), weights};  // (B, L, Ev)
}

MultiheadAttention::MultiheadAttention(const MultiheadAttentionOptions& opts, Generator& gen)
    : options(opts) {
  const char* op = "MultiheadAttention";
  const std::size_t E = opts.embed_dim(), h = opts.num_heads();
  detail::require_positive(op, "embed_dim", E);
  detail::require_positive(op, "num_heads", h);
  if (E % h != 0)
    throw ValueError(fmt::format("{}: embed_dim {} is not divisible by num_heads {}", op, E, h));
  if (!(opts.dropout() >= 0.0 && opts.dropout() < 1.0))
    throw ValueError(fmt::format("{}: dropout must be in [0, 1), got {}", op, opts.dropout()));
  const std::size_t E3 = detail::checked_mul(op, 3, E, Shape{3, E, E});
  in_proj_weight = register_parameter("in_proj_weight", detail::zeros_for(op, {E3, E}, default_dtype()));
  in_proj_bias = register_parameter("in_proj_bias", zeros({E3}));
  out_proj = register_module("out_proj", std::make_shared<Linear>(E, E, gen));
  // PyTorch's _reset_parameters: xavier_uniform_(in_proj_weight), zero biases.
  const double bound = std::sqrt(6.0 / double(E + E3));
  init::uniform_(in_proj_weight, -bound, bound, gen);
  detail::dispatch(out_proj->bias.dtype(), [&](auto tag) {
    out_proj->bias.data<decltype(tag)>().fill(decltype(tag)(0));
  });
  dropout_gen_.manual_seed(gen.integer(std::numeric_limits<std::uint64_t>::max()));
}

MultiheadAttention::Output MultiheadAttention::forward(const Tensor& query_in, const Tensor& key_in,
                                                       const Tensor& value_in,
                                                       const AttentionMask& key_padding_mask,
                                                       bool need_weights,
                                                       const AttentionMask& attn_mask,
                                                       bool average_attn_weights) {
  const char* op = "MultiheadAttention";
  const std::size_t E = options.embed_dim(), h = options.num_heads();
  const bool bf = options.batch_first();
  auto bad = [&] {
    return ShapeError(fmt::format(
        "{}: expected query {}, key and value {} with E = {}, got query {}, key {}, value {}", op,
        bf ? "(N, L, E)" : "(L, N, E)", bf ? "(N, S, E)" : "(S, N, E)", E, shape_of(query_in),
        shape_of(key_in), shape_of(value_in)));
  };
  for (const Tensor* t : {&query_in, &key_in, &value_in})
    if (!t->defined() || t->dim() != 3 || t->size(2) != E) throw bad();
  if (key_in.shape() != value_in.shape() || key_in.size(bf ? 0 : 1) != query_in.size(bf ? 0 : 1))
    throw bad();
  for (const Tensor* t : {&query_in, &key_in})
    if (t->size(0) == 0 || t->size(1) == 0)
      throw ShapeError(fmt::format("{}: zero-size input: query {}, key {}", op,
                                   shape_of(query_in), shape_of(key_in)));
  detail::require_same_dtype(query_in, in_proj_weight, op);
  detail::require_same_dtype(key_in, in_proj_weight, op);
  detail::require_same_dtype(value_in, in_proj_weight, op);
  const bool self = query_in.is_same(key_in) && key_in.is_same(value_in);
  Tensor query = bf ? query_in : transpose(query_in, 0, 1);  // (N, L, E)
  Tensor key = self ? query : bf ? key_in : transpose(key_in, 0, 1);
  Tensor value = self ? query : bf ? value_in : transpose(value_in, 0, 1);
  const std::size_t N = query.size(0), L = query.size(1), S = key.size(1);

  // Input projections q|k|v (one GEMM for self-attention, like PyTorch).
  Tensor q, k, v;
  if (self) {
    auto qkv = chunk(matmul(query, in_proj_weight, false, true) + in_proj_bias, 3, -1);
    q = qkv[0], k = qkv[1], v = qkv[2];
  } else {
    auto w = chunk(in_proj_weight, 3, 0);
    auto b = chunk(in_proj_bias, 3, 0);
    q = matmul(query, w[0], false, true) + b[0];
    k = matmul(key, w[1], false, true) + b[1];
    v = matmul(value, w[2], false, true) + b[2];
  }

  // One additive mask (N·h, L, S)-broadcastable from attn_mask and key_padding_mask.
  Tensor mask;
  if (attn_mask.defined()) {
    const Tensor& m = attn_mask.values;
    if (!m.defined() || !((m.dim() == 2 && m.shape() == Shape{L, S}) ||
                          (m.dim() == 3 && m.shape() == Shape{N * h, L, S})))
      throw ShapeError(fmt::format("{}: attn_mask must be ({}, {}) (L, S) or ({}, {}, {}) "
                                   "(N·num_heads, L, S), got {}",
                                   op, L, S, N * h, L, S, shape_of(m)));
    mask = additive_mask(attn_mask, query.dtype(), op);
    if (mask.dim() == 2) mask = unsqueeze(mask, 0);  // (1, L, S)
  }
  if (key_padding_mask.defined()) {
    const Tensor& m = key_padding_mask.values;
    if (!m.defined() || m.shape() != Shape{N, S})
      throw ShapeError(fmt::format("{}: key_padding_mask must be ({}, {}) (N, S), got {}", op, N,
                                   S, shape_of(m)));
    Tensor kpm = reshape(additive_mask(key_padding_mask, query.dtype(), op),
                         {std::ptrdiff_t(N), 1, 1, std::ptrdiff_t(S)});
    kpm = reshape(broadcast_to(kpm, Shape{N, h, 1, S}), {std::ptrdiff_t(N * h), 1, std::ptrdiff_t(S)});
    mask = mask.defined() ? mask + kpm : kpm;  // −∞ + −∞ = −∞: boolean masks combine by "or"
  }

  const double p = is_training() ? options.dropout() : 0.0;
  AttentionOutput a = scaled_dot_product_attention(
      split_heads(q, h), split_heads(k, h), split_heads(v, h),
      mask.defined() ? AttentionMask::additive(mask) : AttentionMask{}, p, &dropout_gen_);
  Tensor out = (*out_proj)(merge_heads(a.output, N));  // (N, L, E)
  Output result{bf ? out : transpose(out, 0, 1), Tensor()};
  if (need_weights) {
    Tensor w = reshape(a.weights, {std::ptrdiff_t(N), std::ptrdiff_t(h), std::ptrdiff_t(L),
                                   std::ptrdiff_t(S)});
    result.weights = average_attn_weights ? mean(w, {1}) : w;  // (N, L, S) or (N, h, L, S)
  }
  return result;
}

}  // namespace tapegrad
