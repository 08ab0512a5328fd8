// tapegrad — primitive ops. Each is defined (forward and vector-Jacobian product side by side)
// in one of the family files:
//   ops_elementwise.cpp  add sub mul div neg pow exp log sqrt abs tanh sigmoid relu clamp where
//                        sum_to / broadcast_to (the one broadcast reducer), cast
//   ops_reduce.cpp       sum mean max softmax log_softmax cross_entropy
//   ops_linalg.cpp       matmul (BLAS, transpose flags instead of copies), linear
//   ops_shape.cpp        reshape transpose permute narrow select concat stack index_select gather
// Composite ops (split, chunk, unsqueeze, squeeze, mse, ...) are written from primitives and have
// no backward of their own.
//
// Binary elementwise ops broadcast like NumPy: shapes are aligned from the right and a
// dimension of 1 stretches. Each input's gradient is summed back to its own shape by sum_to.
// Every error names the op and the shapes: ShapeError, DTypeError, IndexError.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "framework/random.hpp"
#include "framework/tensor.hpp"

namespace tapegrad {

using Axes = std::vector<std::ptrdiff_t>;

// ---- elementwise (broadcasting) --------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
/// b - a, for `1 - z`.
Tensor rsub(const Tensor& a, double b);
Tensor neg(const Tensor& a);
/// a^p, elementwise. Its gradient is 0 for p = 0 (also at a = 0), as in PyTorch.
Tensor pow(const Tensor& a, double p);
/// a^b, elementwise with broadcasting. As in PyTorch, d/da is 0 where b = 0, and d/db is 0 where
/// a = 0 and b ≥ 0 (elsewhere a^b·ln a: NaN for a < 0).
Tensor pow(const Tensor& a, const Tensor& b);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor tanh(const Tensor& a);
/// 1 / (1 + e^-a), computed without overflow for any |a|.
Tensor sigmoid(const Tensor& a);
Tensor relu(const Tensor& a);
/// min(max(a, lo), hi); the gradient is 1 inside [lo, hi] and 0 outside.
Tensor clamp(const Tensor& a, double lo, double hi);
/// cond ? a : b elementwise; cond is a 0/1 mask (nonzero = true), never differentiated.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
/// 0/1 masks (no gradient).
Tensor gt(const Tensor& a, double v);
Tensor lt(const Tensor& a, double v);
/// Converts dtype; the gradient is converted back.
Tensor cast(const Tensor& a, DType dtype);

/// Sums g over broadcast dimensions so that it has `shape` (the one broadcast reducer).
Tensor sum_to(const Tensor& g, const Shape& shape);
/// The same for a temporary (a VJP's fresh product): moved through when no sum is needed.
Tensor sum_to(Tensor&& g, const Shape& shape);
/// Expands a to `shape` by broadcasting (copies).
Tensor broadcast_to(const Tensor& a, const Shape& shape);
/// The broadcast shape of a and b, or ShapeError naming `op`.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// ---- reductions --------------------------------------------------------------------------------
/// Sum of all elements (0-d result).
Tensor sum(const Tensor& a);
/// Sum over `axes` (negative counts from the end); keepdims keeps them as size 1.
Tensor sum(const Tensor& a, const Axes& axes, bool keepdims = false);
Tensor mean(const Tensor& a);
Tensor mean(const Tensor& a, const Axes& axes, bool keepdims = false);
/// Maximum along one axis; the gradient goes to the first maximal element.
Tensor max(const Tensor& a, std::ptrdiff_t axis, bool keepdims = false);
Tensor softmax(const Tensor& a, std::ptrdiff_t axis = -1);
/// log(softmax(a)) computed stably (max subtracted), for logits of any magnitude.
Tensor log_softmax(const Tensor& a, std::ptrdiff_t axis = -1);

enum class Reduction { Mean, Sum, None };
/// Cross-entropy of logits (N, C) against integer class targets (N): −log softmax(logits)[i, t_i],
/// reduced by mean (default), sum, or none (shape (N)). Stable for logits of ±1e4.
Tensor cross_entropy(const Tensor& logits, const std::vector<std::int64_t>& targets,
                     Reduction reduction = Reduction::Mean);
/// Mean squared error (composite: mean((a − b)²)), or the sum with Reduction::Sum.
Tensor mse(const Tensor& a, const Tensor& b, Reduction reduction = Reduction::Mean);

// ---- linear algebra -----------------------------------------------------------------------------
/// op(a) @ op(b), op = transpose when the flag is set (passed to BLAS, no copy).
/// a: (M, K) or batched (B, M, K); b: (K, N) or (B, K, N). A 3-D a with a 2-D b multiplies every
/// batch by the same b (one GEMM over B·M rows when a is not transposed).
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);
/// x Wᵀ + b (torch.nn.functional.linear), for x (N, in), weight (out, in), bias (out) or an
/// undefined bias: one op whose GEMM adds x Wᵀ into rows that start as b (BLAS beta = 1), so the
/// bias costs no pass of its own and no node; its VJP is matmul's pair of products plus the column
/// sums of g for b. The same numbers as matmul(x, weight, false, true) + bias (one rounding of
/// each sum; a BLAS that splits the inner dimension into blocks may round the bias in with a
/// partial sum instead). A 3-D x (B, T, in) is matmul + add.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- shape --------------------------------------------------------------------------------------
/// New shape with the same number of elements; one entry may be -1 (inferred).
Tensor reshape(const Tensor& a, const std::vector<std::ptrdiff_t>& shape);
Tensor reshape(const Tensor& a, const Shape& shape);
/// reshape(a, {2, -1}): a braced list is the signed form (without this overload it would be
/// ambiguous between the two above).
Tensor reshape(const Tensor& a, std::initializer_list<std::ptrdiff_t> shape);
/// Swaps the last two axes (or the two given axes).
Tensor transpose(const Tensor& a);
Tensor transpose(const Tensor& a, std::ptrdiff_t axis0, std::ptrdiff_t axis1);
/// Reorders axes: out.shape[i] = a.shape[dims[i]].
Tensor permute(const Tensor& a, const std::vector<std::size_t>& dims);
/// Inserts / removes a size-1 axis. unsqueeze's axis is one of the result's (a.dim() + 1 of
/// them): −1 appends it, as in torch.unsqueeze.
Tensor unsqueeze(const Tensor& a, std::ptrdiff_t axis);
Tensor squeeze(const Tensor& a, std::ptrdiff_t axis);
/// The elements [start, start + length) along `axis` (a copy; its gradient is added in place
/// into the parent's gradient).
Tensor narrow(const Tensor& a, std::ptrdiff_t axis, std::size_t start, std::size_t length);
/// Index `index` along `axis`, removing that axis (a[:, t] for axis 1).
Tensor select(const Tensor& a, std::ptrdiff_t axis, std::ptrdiff_t index);  // index < 0 counts from the end
/// Rows [start, stop) (axis 0).
Tensor slice_rows(const Tensor& a, std::size_t start, std::size_t stop);
/// Splits into pieces of the given sizes along axis.
std::vector<Tensor> split(const Tensor& a, const std::vector<std::size_t>& sizes,
                          std::ptrdiff_t axis = 0);
/// Splits into n equal pieces along axis (the GRU: chunk(gates, 3, -1) → r, z, n).
std::vector<Tensor> chunk(const Tensor& a, std::size_t n, std::ptrdiff_t axis = 0);
/// Joins along an existing axis.
Tensor concat(const std::vector<Tensor>& parts, std::ptrdiff_t axis = 0);
/// Joins along a new axis, at `axis` of the result (−1: the last), as torch.stack. One op: part i
/// is index i of the new axis, and its gradient that slice of the incoming one.
Tensor stack(const std::vector<Tensor>& parts, std::ptrdiff_t axis = 0);
/// Picks entries of `axis` by index (an embedding is index_select(weight, 0, ids)).
Tensor index_select(const Tensor& a, std::ptrdiff_t axis, const std::vector<std::int64_t>& index);
/// out[..., j, ...] = a[..., index[..., j, ...], ...] along axis (torch.gather); index has a's
/// rank and shape except along axis.
Tensor gather(const Tensor& a, std::ptrdiff_t axis, const xt::xarray<std::int64_t>& index);
/// zeros(shape) with g added at index along axis (the adjoint of gather).
Tensor scatter_add(const Shape& shape, std::ptrdiff_t axis, const xt::xarray<std::int64_t>& index,
                   const Tensor& g);
/// zeros of a's full size with g placed at [start, start+len) along axis (adjoint of narrow).
Tensor pad_narrow(const Tensor& g, std::ptrdiff_t axis, std::size_t start, std::size_t full_size);
/// zeros(shape) with rows of g added at `index` along axis (adjoint of index_select).
Tensor index_add(const Shape& shape, std::ptrdiff_t axis, const std::vector<std::int64_t>& index,
                 const Tensor& g);
/// One-hot rows (N, num_classes) of integer labels (no gradient).
Tensor one_hot(const std::vector<std::int64_t>& labels, std::size_t num_classes,
               DType dtype = default_dtype());

// ---- operators ----------------------------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator-(double a, const Tensor& b) { return rsub(b, a); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
inline Tensor operator/(double a, const Tensor& b) { return mul(pow(b, -1.0), a); }

// ---- indices: argmax, top-k, sampling, masks (ops_index.cpp) ---------------------------------------
/// Integer results and inputs (argmax, top-k indices, samples; targets and ids): int64 values in
/// row-major order with a shape. It converts to the std::vector<std::int64_t> that cross_entropy,
/// index_select and the embeddings take. Indices carry no gradient.
struct IndexTensor {
  Shape shape;
  std::vector<std::int64_t> values;
  std::size_t numel() const { return values.size(); }
  std::int64_t at(std::size_t flat_index) const { return values.at(flat_index); }
  operator const std::vector<std::int64_t>&() const { return values; }
};
/// Index of the largest (smallest) entry along `axis` (the first one on ties; NaN counts as the
/// largest, as in PyTorch). The axis is removed unless keepdims.
IndexTensor argmax(const Tensor& a, std::ptrdiff_t axis = -1, bool keepdims = false);
IndexTensor argmin(const Tensor& a, std::ptrdiff_t axis = -1, bool keepdims = false);
/// The k largest (or smallest) entries along `axis`, sorted, and their indices (torch.topk).
/// The values are differentiable (a gather of a).
struct TopK {
  Tensor values;
  IndexTensor indices;
};
TopK topk(const Tensor& a, std::size_t k, std::ptrdiff_t axis = -1, bool largest = true);
/// num_samples draws from the categorical distribution(s) whose unnormalised probabilities are
/// the rows of `probs` ((V) or (N, V); non-negative, finite, not all zero), with or without
/// replacement (torch.multinomial). Result shape (num_samples) or (N, num_samples).
IndexTensor multinomial(const Tensor& probs, std::size_t num_samples, bool replacement, Generator& gen);
/// a with `value` where mask ≠ 0 (torch.masked_fill); mask broadcasts to a's shape, same dtype.
/// Differentiable in a (zero gradient where filled).
Tensor masked_fill(const Tensor& a, const Tensor& mask, double value);

// ---- axis helpers shared by op implementations ------------------------------------------------
/// Normalises a possibly negative axis for a tensor of rank `rank`, or IndexError naming op.
std::size_t normalize_axis(std::ptrdiff_t axis, std::size_t rank, const char* op);

}  // namespace tapegrad
