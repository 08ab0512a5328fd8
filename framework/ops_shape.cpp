// tapegrad — shape ops: reshape, permute, narrow/select, concat/stack, index_select/gather and their adjoints.
//
// Row-major data lets every "take a block along one axis" op be written as `outer` contiguous
// runs of `len · inner` elements, where outer = Π shape[:axis] and inner = Π shape[axis+1:].
// narrow's VJP adds its gradient into the parent's gradient in place (GradSink::add_narrow):
// slicing a (B, T, 3H) projection T times costs O(T), not O(T²).
#include <algorithm>
#include <cstring>
#include <numeric>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <fmt/format.h>
#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include <xtensor/xmanipulation.hpp>

#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "framework/tape.hpp"

namespace tapegrad {

using detail::dispatch;

namespace {

/// Copies `outer` runs of `run` elements from src + src_offset (stride src_stride) to
/// dst + dst_offset (stride dst_stride). Nothing to copy touches no pointer: an empty array's
/// data may be null, and neither memcpy nor pointer arithmetic may see a null pointer.
template <class T>
void copy_runs(const T* src, std::size_t src_offset, std::size_t src_stride, T* dst,
               std::size_t dst_offset, std::size_t dst_stride, std::size_t outer, std::size_t run) {
  if (run == 0 || outer == 0) return;
  for (std::size_t o = 0; o < outer; ++o)
    std::memcpy(dst + dst_offset + o * dst_stride, src + src_offset + o * src_stride,
                run * sizeof(T));
}

void check_index(std::int64_t i, std::size_t size, const char* op, std::size_t axis) {
  if (i < 0 || static_cast<std::size_t>(i) >= size)
    throw IndexError(fmt::format("{}: index {} is out of range for axis {} of size {}", op, i, axis, size));
}

}  // namespace

// ---- reshape ---------------------------------------------------------------------------------------

Tensor reshape(const Tensor& a, const Shape& shape) {
  detail::require_defined(a, "reshape", "a");
  if (detail::checked_numel("reshape", shape) != a.numel())
    throw ShapeError(fmt::format("reshape: cannot reshape {} ({} elements) to {}",
                                 shape_str(a.shape()), a.numel(), shape_str(shape)));
  if (shape == a.shape()) return a;
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor r = detail::empty_for<T>("reshape", shape);
    std::copy_n(a.data<T>().data(), a.numel(), r.data<T>().data());
    return r;
  });
  return record("reshape", std::move(out), {a}, Reads::Nothing, [](const Tensor& g, GradSink& s) {
    // The incoming gradient is usually the pass's own, held by no one else: its values are then
    // moved into the input's gradient instead of copied (an optimisation: the same numbers).
    if (!s.create_graph() && detail::values_takeable(g))
      return s.add(0, detail::take_values(g, s.input(0).shape()));
    s.add(0, reshape(g, s.input(0).shape()));
  });
}

Tensor reshape(const Tensor& a, const std::vector<std::ptrdiff_t>& spec) {
  detail::require_defined(a, "reshape", "a");
  Shape shape(spec.size());
  std::ptrdiff_t infer = -1;
  auto spec_str = [&] {
    std::string r = "(";
    for (std::size_t i = 0; i < spec.size(); ++i) r += (i ? ", " : "") + std::to_string(spec[i]);
    return r + (spec.size() == 1 ? ",)" : ")");
  };
  for (std::size_t i = 0; i < spec.size(); ++i) {
    if (spec[i] == -1) {
      if (infer >= 0)
        throw ShapeError(fmt::format("reshape: only one dimension can be -1, got {} for {}",
                                     spec_str(), shape_str(a.shape())));
      infer = static_cast<std::ptrdiff_t>(i);
      shape[i] = 1;  // placeholder while the known dims are checked
    } else if (spec[i] < 0) {
      throw ShapeError(fmt::format("reshape: negative dimension {} in {} for {}", spec[i],
                                   spec_str(), shape_str(a.shape())));
    } else {
      shape[i] = static_cast<std::size_t>(spec[i]);
    }
  }
  // The known dims' product (placeholder 1 for -1), overflow-checked.
  const std::size_t known = detail::checked_numel("reshape", shape);
  if (infer >= 0) {
    if (known == 0 || a.numel() % known != 0)
      throw ShapeError(fmt::format("reshape: cannot infer -1 reshaping {} ({} elements)",
                                   shape_str(a.shape()), a.numel()));
    shape[infer] = a.numel() / known;
  }
  return reshape(a, shape);
}

Tensor reshape(const Tensor& a, std::initializer_list<std::ptrdiff_t> spec) {
  return reshape(a, std::vector<std::ptrdiff_t>(spec));
}

Tensor unsqueeze(const Tensor& a, std::ptrdiff_t axis) {
  // The axis of the result (a.dim() + 1 axes): −1 appends, as torch.unsqueeze.
  std::size_t ax = normalize_axis(axis, a.dim() + 1, "unsqueeze");
  Shape s(a.dim() + 1);  // a's shape with a 1 at `ax`
  for (std::size_t d = 0, from = 0; d < s.size(); ++d) s[d] = d == ax ? 1 : a.shape()[from++];
  return reshape(a, s);
}

Tensor squeeze(const Tensor& a, std::ptrdiff_t axis) {
  std::size_t ax = normalize_axis(axis, a.dim(), "squeeze");
  if (a.shape()[ax] != 1)
    throw ShapeError(fmt::format("squeeze: axis {} of {} is not 1", axis, shape_str(a.shape())));
  Shape s = a.shape();
  s.erase(s.begin() + static_cast<std::ptrdiff_t>(ax));
  return reshape(a, s);
}

// ---- permute / transpose ---------------------------------------------------------------------------

namespace {

/// An 8 × 8 block of floats (a 4 × 4 block of doubles) transposed in registers:
/// out[j · ldo + i] = in[i · ldi + j]. Where the build has AVX; a copy, so the same values either way.
#if defined(__AVX__)
template <class T>
constexpr std::size_t kRegisterBlock = 8 * sizeof(float) / sizeof(T);
inline void transpose_block(const float* in, std::size_t ldi, float* out, std::size_t ldo) {
  const __m256 r0 = _mm256_loadu_ps(in), r1 = _mm256_loadu_ps(in + ldi),
               r2 = _mm256_loadu_ps(in + 2 * ldi), r3 = _mm256_loadu_ps(in + 3 * ldi),
               r4 = _mm256_loadu_ps(in + 4 * ldi), r5 = _mm256_loadu_ps(in + 5 * ldi),
               r6 = _mm256_loadu_ps(in + 6 * ldi), r7 = _mm256_loadu_ps(in + 7 * ldi);
  // pairs of rows interleaved, then pairs of pairs: each 128-bit half holds a 4 × 4 transpose
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
               t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
               t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)),
               s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
               s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)),
               s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
               s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)),
               s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
               s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)),
               s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  // the low halves of rows 0–3 and 4–7 make columns 0–3; the high halves columns 4–7
  _mm256_storeu_ps(out, _mm256_permute2f128_ps(s0, s4, 0x20));
  _mm256_storeu_ps(out + ldo, _mm256_permute2f128_ps(s1, s5, 0x20));
  _mm256_storeu_ps(out + 2 * ldo, _mm256_permute2f128_ps(s2, s6, 0x20));
  _mm256_storeu_ps(out + 3 * ldo, _mm256_permute2f128_ps(s3, s7, 0x20));
  _mm256_storeu_ps(out + 4 * ldo, _mm256_permute2f128_ps(s0, s4, 0x31));
  _mm256_storeu_ps(out + 5 * ldo, _mm256_permute2f128_ps(s1, s5, 0x31));
  _mm256_storeu_ps(out + 6 * ldo, _mm256_permute2f128_ps(s2, s6, 0x31));
  _mm256_storeu_ps(out + 7 * ldo, _mm256_permute2f128_ps(s3, s7, 0x31));
}
inline void transpose_block(const double* in, std::size_t ldi, double* out, std::size_t ldo) {
  const __m256d r0 = _mm256_loadu_pd(in), r1 = _mm256_loadu_pd(in + ldi),
                r2 = _mm256_loadu_pd(in + 2 * ldi), r3 = _mm256_loadu_pd(in + 3 * ldi);
  const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1),
                t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
  _mm256_storeu_pd(out, _mm256_permute2f128_pd(t0, t2, 0x20));
  _mm256_storeu_pd(out + ldo, _mm256_permute2f128_pd(t1, t3, 0x20));
  _mm256_storeu_pd(out + 2 * ldo, _mm256_permute2f128_pd(t0, t2, 0x31));
  _mm256_storeu_pd(out + 3 * ldo, _mm256_permute2f128_pd(t1, t3, 0x31));
}
#else
template <class T>
constexpr std::size_t kRegisterBlock = 1;  // no vector transpose: element by element
#endif

/// out = in with its last two axes swapped: `total` elements in matrices of rows × cols, copied in
/// 32 × 32 tiles so that both the reads and the writes stay in cache lines already loaded, each
/// tile by register blocks (transpose_block) where the build has AVX, and element by element at
/// its edges. Element by element, the loop walks down the side whose stride is the smaller
/// power-of-two multiple: 32 lines 8 KiB apart fall into one set of the L1 cache and evict each
/// other (a (2048, 384) float transpose took 1.56 ms walking the writes' 8 KiB stride, 0.31 ms
/// walking the reads' 1.5 KiB). The register blocks took a (256, 1024) float transpose, forward
/// and backward, from 299.7 to 169.4 µs (medians of three rounds, the two builds alternated:
/// docs/performance.md, session 34, run CK); what is left is the memory traffic.
template <class T>
void transpose_last_two(const T* in, T* out, std::size_t total, std::size_t rows, std::size_t cols) {
  const std::size_t size = rows * cols;
  if (size == 0) return;
  constexpr std::size_t kTile = 32, kB = kRegisterBlock<T>;
  // Reads stride cols, writes stride rows: step along the one with fewer trailing zero bits.
  const bool down_rows = __builtin_ctzll(cols) <= __builtin_ctzll(rows);
  auto by_element = [&](const T* src, T* dst, std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
    if (down_rows) {
      for (std::size_t j = j0; j < j1; ++j)
        for (std::size_t i = i0; i < i1; ++i) dst[j * rows + i] = src[i * cols + j];
    } else {
      for (std::size_t i = i0; i < i1; ++i)
        for (std::size_t j = j0; j < j1; ++j) dst[j * rows + i] = src[i * cols + j];
    }
  };
  for (std::size_t base = 0; base < total; base += size) {
    const T* src = in + base;
    T* dst = out + base;
    for (std::size_t i0 = 0; i0 < rows; i0 += kTile)
      for (std::size_t j0 = 0; j0 < cols; j0 += kTile) {
        const std::size_t i1 = std::min(rows, i0 + kTile), j1 = std::min(cols, j0 + kTile);
        if constexpr (kB > 1) {
          // whole blocks, then the tile's last rows and last columns that make no whole block
          const std::size_t ib = i0 + (i1 - i0) / kB * kB, jb = j0 + (j1 - j0) / kB * kB;
          for (std::size_t i = i0; i < ib; i += kB)
            for (std::size_t j = j0; j < jb; j += kB) transpose_block(src + i * cols + j, cols, dst + j * rows + i, rows);
          by_element(src, dst, ib, i1, j0, j1);
          by_element(src, dst, i0, ib, jb, j1);
        } else {
          by_element(src, dst, i0, i1, j0, j1);
        }
      }
  }
}


/// out = in permuted (axis d of out is axis dims[d] of in), any rank, for the permutations other
/// than a swap of the last two axes. When the last axis stays last, rows are copied whole;
/// otherwise out's last axis (contiguous writes) and the out axis holding in's last axis
/// (contiguous reads) are copied in 32 × 32 tiles, as transpose_last_two does, for every index
/// of the other axes. (xtensor's strided copy took 2.6× PyTorch's time for a (32, 64, 128)
/// tensor permuted to (2, 0, 1), forward and backward: docs/performance.md, session 33, run CG.)
template <class T>
void permute_copy(const T* in, T* out, const Shape& ishape, const std::vector<std::size_t>& dims) {
  const std::size_t n = dims.size();
  std::size_t total = 1;
  for (std::size_t v : ishape) total *= v;
  if (total == 0) return;
  if (n == 0) {  // a 0-d tensor: its one element
    out[0] = in[0];
    return;
  }
  std::vector<std::size_t> istride(n, 1), oshape(n), ostride(n, 1), src(n);
  for (std::size_t d = n - 1; d-- > 0;) istride[d] = istride[d + 1] * ishape[d + 1];
  for (std::size_t d = 0; d < n; ++d) oshape[d] = ishape[dims[d]], src[d] = istride[dims[d]];
  for (std::size_t d = n - 1; d-- > 0;) ostride[d] = ostride[d + 1] * oshape[d + 1];
  std::size_t q = 0;  // the out axis that is in's last axis
  while (dims[q] != n - 1) ++q;
  const std::size_t last = n - 1;
  std::vector<std::size_t> other;  // the axes the tiles do not cover, outermost first
  for (std::size_t d = 0; d < n; ++d)
    if (d != last && d != q) other.push_back(d);
  std::vector<std::size_t> idx(other.size(), 0);
  std::size_t ibase = 0, obase = 0, count = 1;
  for (std::size_t d : other) count *= oshape[d];
  constexpr std::size_t kTile = 32;
  const std::size_t rows = oshape[q], cols = oshape[last], sstep = src[last], ostep = ostride[q];
  // Within a tile, walk along the stride with fewer trailing zero bits (transpose_last_two).
  const bool down_rows = __builtin_ctzll(ostep) <= __builtin_ctzll(sstep);
  for (std::size_t c = 0; c < count; ++c) {
    if (q == last) {  // rows contiguous on both sides
      std::copy_n(in + ibase, cols, out + obase);
    } else {
      for (std::size_t i0 = 0; i0 < rows; i0 += kTile)
        for (std::size_t j0 = 0; j0 < cols; j0 += kTile) {
          const std::size_t i1 = std::min(rows, i0 + kTile), j1 = std::min(cols, j0 + kTile);
          if (down_rows) {
            for (std::size_t j = j0; j < j1; ++j)
              for (std::size_t i = i0; i < i1; ++i) out[obase + i * ostep + j] = in[ibase + i + j * sstep];
          } else {
            for (std::size_t i = i0; i < i1; ++i)
              for (std::size_t j = j0; j < j1; ++j) out[obase + i * ostep + j] = in[ibase + i + j * sstep];
          }
        }
    }
    for (std::size_t k = other.size(); k-- > 0;) {  // the next index of the other axes
      const std::size_t d = other[k];
      ibase += src[d], obase += ostride[d];
      if (++idx[k] < oshape[d]) break;
      ibase -= src[d] * oshape[d], obase -= ostride[d] * oshape[d];
      idx[k] = 0;
    }
  }
}

}  // namespace

Tensor permute(const Tensor& a, const std::vector<std::size_t>& dims) {
  detail::require_defined(a, "permute", "a");
  std::vector<std::size_t> sorted = dims;
  std::sort(sorted.begin(), sorted.end());
  bool ok = sorted.size() == a.dim();  // also for an empty `dims` (the loop would not run)
  for (std::size_t i = 0; ok && i < sorted.size(); ++i) ok = sorted[i] == i;
  if (!ok)
      throw ShapeError(fmt::format("permute: {} dims given for a tensor of shape {}, not a permutation",
                                   dims.size(), shape_str(a.shape())));
  // The last two axes swapped (a matrix transpose, or one per batch): a blocked copy instead of
  // xtensor's stepper. char_gru's composed path transposes the (3H, V) input weight every step:
  // 7.5 % of the S training step's perf samples before, 2.2 % after. Other permutations:
  // permute_copy.
  const std::size_t n = a.dim();
  bool last_two = n >= 2 && dims[n - 2] == n - 1 && dims[n - 1] == n - 2;
  for (std::size_t i = 0; last_two && i + 2 < n; ++i) last_two = dims[i] == i;
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (last_two) {
      Shape shape = a.shape();
      std::swap(shape[n - 2], shape[n - 1]);
      Tensor o_t = detail::empty_for<T>("permute", shape);
      xt::xarray<T>& o = o_t.data<T>();
      transpose_last_two(a.data<T>().data(), o.data(), a.numel(), a.shape()[n - 2],
                         a.shape()[n - 1]);
      return o_t;
    }
    Shape shape(n);
    for (std::size_t d = 0; d < n; ++d) shape[d] = a.shape()[dims[d]];
    Tensor o_t = detail::empty_for<T>("permute", shape);
    permute_copy(a.data<T>().data(), o_t.data<T>().data(), a.shape(), dims);
    return o_t;
  });
  std::vector<std::size_t> inverse(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) inverse[dims[i]] = i;
  return record("permute", std::move(out), {a}, Reads::Nothing,
                [inverse](const Tensor& g, GradSink& s) {
    s.add(0, permute(g, inverse));
  });
}

Tensor transpose(const Tensor& a, std::ptrdiff_t axis0, std::ptrdiff_t axis1) {
  detail::require_defined(a, "transpose", "a");
  std::vector<std::size_t> dims(a.dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[normalize_axis(axis0, a.dim(), "transpose")],
            dims[normalize_axis(axis1, a.dim(), "transpose")]);
  return permute(a, dims);
}

Tensor transpose(const Tensor& a) {
  detail::require_defined(a, "transpose", "a");
  if (a.dim() < 2)
    throw ShapeError(fmt::format("transpose: needs at least 2 dims, got {}", shape_str(a.shape())));
  return transpose(a, -2, -1);
}

// ---- narrow / concat and their adjoint ----------------------------------------------------------

Tensor narrow(const Tensor& a, std::ptrdiff_t axis_in, std::size_t start, std::size_t length) {
  detail::require_defined(a, "narrow", "a");
  std::size_t axis = normalize_axis(axis_in, a.dim(), "narrow");
  const Shape& s = a.shape();
  if (start > s[axis] || length > s[axis] - start)
    throw IndexError(fmt::format("narrow: range of {} elements from {} is out of bounds for axis {} of {}",
                                 length, start, axis_in, shape_str(s)));
  Shape os = s;
  os[axis] = length;
  std::size_t inner = detail::prod(s, axis + 1, s.size());
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor r_t = detail::empty_for<T>("narrow", os);
    xt::xarray<T>& r = r_t.data<T>();
    copy_runs(a.data<T>().data(), start * inner, s[axis] * inner, r.data(), 0, length * inner,
              detail::prod(s, 0, axis), length * inner);
    return r_t;
  });
  return record("narrow", std::move(out), {a}, Reads::Nothing,
                [axis, start](const Tensor& g, GradSink& sk) {
    sk.add_narrow(0, axis, start, g);
  });
}

Tensor pad_narrow(const Tensor& g, std::ptrdiff_t axis_in, std::size_t start, std::size_t full_size) {
  detail::require_defined(g, "pad_narrow", "g");
  std::size_t axis = normalize_axis(axis_in, g.dim(), "pad_narrow");
  const Shape& s = g.shape();
  if (start > full_size || s[axis] > full_size - start)
    throw IndexError(fmt::format("pad_narrow: {} elements from {} exceed size {} (axis {} of {})",
                                 s[axis], start, full_size, axis_in, shape_str(s)));
  Shape fs = s;
  fs[axis] = full_size;
  Tensor out = detail::zeros_for("pad_narrow", fs, g.dtype());
  std::size_t inner = detail::prod(s, axis + 1, s.size());
  dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    copy_runs(g.data<T>().data(), 0, s[axis] * inner, out.data<T>().data(), start * inner,
              full_size * inner, detail::prod(s, 0, axis), s[axis] * inner);
  });
  return record("pad_narrow", std::move(out), {g}, [axis, start, len = s[axis]](const Tensor& gg, GradSink& sk) {
    sk.add(0, narrow(gg, static_cast<std::ptrdiff_t>(axis), start, len));
  });
}

Tensor select(const Tensor& a, std::ptrdiff_t axis, std::ptrdiff_t index) {
  detail::require_defined(a, "select", "a");
  const std::size_t ax = normalize_axis(axis, a.dim(), "select");
  const auto n = static_cast<std::ptrdiff_t>(a.shape()[ax]);
  if (index < -n || index >= n)
    throw IndexError(fmt::format("select: index {} is out of range for axis {} of {} (valid: {}..{})", index,
                                 axis, shape_str(a.shape()), -n, n - 1));
  // narrow to length 1 and squeeze, in one copy; the gradient is added into the selected
  // slice of a's gradient in place (GradSink::add_narrow with the axis dropped).
  const std::size_t start = static_cast<std::size_t>(index < 0 ? index + n : index);
  const Shape& s = a.shape();
  Shape os = s;
  os.erase(os.begin() + static_cast<std::ptrdiff_t>(ax));
  const std::size_t inner = detail::prod(s, ax + 1, s.size());
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor r_t = detail::empty_for<T>("select", os);
    xt::xarray<T>& r = r_t.data<T>();
    copy_runs(a.data<T>().data(), start * inner, s[ax] * inner, r.data(), 0, inner,
              detail::prod(s, 0, ax), inner);
    return r_t;
  });
  return record("select", std::move(out), {a}, Reads::Nothing,
                [ax, start](const Tensor& g, GradSink& sk) {
    sk.add_narrow(0, ax, start, g);
  });
}

Tensor slice_rows(const Tensor& a, std::size_t start, std::size_t stop) {
  if (stop < start) throw IndexError(fmt::format("slice_rows: stop {} < start {}", stop, start));
  return narrow(a, 0, start, stop - start);
}

std::vector<Tensor> split(const Tensor& a, const std::vector<std::size_t>& sizes, std::ptrdiff_t axis) {
  detail::require_defined(a, "split", "a");
  std::size_t ax = normalize_axis(axis, a.dim(), "split");
  std::size_t total = 0;
  for (std::size_t n : sizes) total = detail::checked_add("split", total, n, a.shape());
  if (total != a.shape()[ax])
    throw ShapeError(fmt::format("split: sizes add up to {}, but axis {} of {} has {}", total, axis,
                                 shape_str(a.shape()), a.shape()[ax]));
  std::vector<Tensor> parts;
  std::size_t start = 0;
  for (std::size_t n : sizes) {
    parts.push_back(narrow(a, axis, start, n));
    start += n;
  }
  return parts;
}

std::vector<Tensor> chunk(const Tensor& a, std::size_t n, std::ptrdiff_t axis) {
  detail::require_defined(a, "chunk", "a");
  std::size_t len = a.shape()[normalize_axis(axis, a.dim(), "chunk")];
  // n ≤ len (or 1 for an empty axis): an empty axis does not make n empty pieces for any n,
  // which would let chunk(empty, 2^31) allocate billions of pieces.
  if (n == 0 || len % n != 0 || n > std::max<std::size_t>(len, 1))
    throw ShapeError(fmt::format("chunk: axis {} of {} (size {}) does not split into {} equal parts",
                                 axis, shape_str(a.shape()), len, n));
  return split(a, std::vector<std::size_t>(n, len / n), axis);
}

Tensor concat(const std::vector<Tensor>& parts, std::ptrdiff_t axis_in) {
  if (parts.empty()) throw ValueError("concat: no tensors given");
  const Tensor& first = parts[0];
  detail::require_defined(first, "concat", "parts[0]");
  std::size_t axis = normalize_axis(axis_in, first.dim(), "concat");
  Shape os = first.shape();
  os[axis] = 0;
  for (const Tensor& p : parts) {
    detail::require_same_dtype(first, p, "concat");
    bool ok = p.dim() == first.dim();
    for (std::size_t d = 0; ok && d < p.dim(); ++d) ok = d == axis || p.shape()[d] == first.shape()[d];
    if (!ok)
      throw ShapeError(fmt::format("concat: shapes {} and {} differ outside axis {}",
                                   shape_str(first.shape()), shape_str(p.shape()), axis_in));
    os[axis] = detail::checked_add("concat", os[axis], p.shape()[axis], p.shape());
  }
  detail::checked_numel("concat", os);
  std::size_t inner = detail::prod(os, axis + 1, os.size()), outer = detail::prod(os, 0, axis);
  Tensor out = dispatch(first.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor r_t = detail::empty_for<T>("concat", os);
    xt::xarray<T>& r = r_t.data<T>();
    std::size_t offset = 0;
    for (const Tensor& p : parts) {
      std::size_t run = p.shape()[axis] * inner;
      copy_runs(p.data<T>().data(), 0, run, r.data(), offset * inner, os[axis] * inner, outer, run);
      offset += p.shape()[axis];
    }
    return r_t;
  });
  std::vector<std::size_t> lens;
  for (const Tensor& p : parts) lens.push_back(p.shape()[axis]);
  return record("concat", std::move(out), parts, Reads::Nothing,
                [axis, lens](const Tensor& g, GradSink& s) {
    std::size_t offset = 0;
    for (std::size_t i = 0; i < lens.size(); offset += lens[i], ++i)
      if (s.needs(i)) s.add(i, narrow(g, static_cast<std::ptrdiff_t>(axis), offset, lens[i]));
  });
}

Tensor stack(const std::vector<Tensor>& parts, std::ptrdiff_t axis_in) {
  if (parts.empty()) throw ValueError("stack: no tensors given");
  const Tensor& first = parts[0];
  detail::require_defined(first, "stack", "parts[0]");
  // The new axis of the result (first.dim() + 1 axes): −1 is the last, as torch.stack.
  const std::size_t axis = normalize_axis(axis_in, first.dim() + 1, "stack");
  Shape os(first.dim() + 1);  // first's shape with parts.size() at `axis`
  for (std::size_t d = 0, from = 0; d < os.size(); ++d) os[d] = d == axis ? parts.size() : first.shape()[from++];
  detail::checked_numel("stack", os);
  for (const Tensor& p : parts) {
    detail::require_defined(p, "stack", "parts[i]");
    detail::require_same_dtype(first, p, "stack");
    if (p.shape() != first.shape())
      throw ShapeError(fmt::format("stack: shapes {} and {} differ", shape_str(first.shape()),
                                   shape_str(p.shape())));
  }
  // One copy: part i fills index i of the new axis (runs of `inner` elements, `outer` of them).
  // The same values as unsqueezing every part and concatenating them, without a copy and a tape
  // node per part (a recurrence stacks its T states).
  const std::size_t inner = detail::prod(os, axis + 1, os.size()), outer = detail::prod(os, 0, axis);
  const std::size_t n = parts.size();
  Tensor out = dispatch(first.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor r_t = detail::empty_for<T>("stack", os);
    T* r = r_t.data<T>().data();
    for (std::size_t i = 0; i < n; ++i) copy_runs(parts[i].data<T>().data(), 0, inner, r, i * inner, n * inner, outer, inner);
    return r_t;
  });
  return record("stack", std::move(out), parts, Reads::Nothing, [axis, n](const Tensor& g, GradSink& s) {
    for (std::size_t i = 0; i < n; ++i)
      if (s.needs(i)) s.add(i, select(g, static_cast<std::ptrdiff_t>(axis), static_cast<std::ptrdiff_t>(i)));
  });
}

// ---- index_select / gather and their adjoints ---------------------------------------------------

Tensor index_select(const Tensor& a, std::ptrdiff_t axis_in, const std::vector<std::int64_t>& index) {
  detail::require_defined(a, "index_select", "a");
  std::size_t axis = normalize_axis(axis_in, a.dim(), "index_select");
  const Shape& s = a.shape();
  for (auto i : index) check_index(i, s[axis], "index_select", axis);
  Shape os = s;
  os[axis] = index.size();
  std::size_t outer = detail::prod(s, 0, axis), inner = detail::prod(s, axis + 1, s.size());
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor r_t = detail::empty_for<T>("index_select", os);
    xt::xarray<T>& r = r_t.data<T>();
    const T* src = a.data<T>().data();
    if (inner == 0) return r_t;
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t j = 0; j < index.size(); ++j)
        std::memcpy(r.data() + (o * index.size() + j) * inner,
                    src + (o * s[axis] + static_cast<std::size_t>(index[j])) * inner, inner * sizeof(T));
    return r_t;
  });
  return record("index_select", std::move(out), {a}, Reads::Nothing,
                [s, axis, index](const Tensor& g, GradSink& sk) {
    sk.add(0, index_add(s, static_cast<std::ptrdiff_t>(axis), index, g));
  });
}

Tensor index_add(const Shape& shape, std::ptrdiff_t axis_in, const std::vector<std::int64_t>& index,
                 const Tensor& g) {
  detail::require_defined(g, "index_add", "g");
  std::size_t axis = normalize_axis(axis_in, shape.size(), "index_add");
  bool fits = g.dim() == shape.size() && g.shape()[axis] == index.size();
  for (std::size_t d = 0; fits && d < shape.size(); ++d) fits = d == axis || g.shape()[d] == shape[d];
  if (!fits)
    throw ShapeError(fmt::format("index_add: gradient {} does not fit {} with {} indices",
                                 shape_str(g.shape()), shape_str(shape), index.size()));
  detail::checked_numel("index_add", shape);
  for (auto i : index) check_index(i, shape[axis], "index_add", axis);
  Tensor out = detail::zeros_for("index_add", shape, g.dtype());
  std::size_t outer = detail::prod(shape, 0, axis), inner = detail::prod(shape, axis + 1, shape.size());
  dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* dst = out.data<T>().data();
    const T* src = g.data<T>().data();
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t j = 0; j < index.size(); ++j) {
        T* d = dst + (o * shape[axis] + static_cast<std::size_t>(index[j])) * inner;
        const T* sr = src + (o * index.size() + j) * inner;
        for (std::size_t k = 0; k < inner; ++k) d[k] += sr[k];
      }
  });
  return record("index_add", std::move(out), {g}, [axis, index](const Tensor& gg, GradSink& sk) {
    sk.add(0, index_select(gg, static_cast<std::ptrdiff_t>(axis), index));
  });
}

namespace {

/// Checks gather/scatter operand shapes and returns (outer, index_len, inner).
std::array<std::size_t, 3> gather_geometry(const Shape& data, std::size_t axis,
                                           const xt::xarray<std::int64_t>& index, const char* op) {
  detail::checked_numel(op, Shape(index.shape().begin(), index.shape().end()));
  bool ok = index.dimension() == data.size();
  for (std::size_t d = 0; ok && d < data.size(); ++d) ok = d == axis || index.shape()[d] == data[d];
  if (!ok)
    throw ShapeError(fmt::format("{}: index shape {} does not match data {} outside axis {}", op,
                                 shape_str(Shape(index.shape().begin(), index.shape().end())),
                                 shape_str(data), axis));
  for (auto i : index) check_index(i, data[axis], op, axis);
  const auto& is = index.shape();
  std::size_t outer = 1, inner = 1;
  for (std::size_t d = 0; d < axis; ++d) outer *= is[d];
  for (std::size_t d = axis + 1; d < is.size(); ++d) inner *= is[d];
  return {outer, is[axis], inner};
}

}  // namespace

Tensor gather(const Tensor& a, std::ptrdiff_t axis_in, const xt::xarray<std::int64_t>& index) {
  detail::require_defined(a, "gather", "a");
  std::size_t axis = normalize_axis(axis_in, a.dim(), "gather");
  const auto geo = gather_geometry(a.shape(), axis, index, "gather");
  const std::size_t outer = geo[0], len = geo[1], inner = geo[2];
  std::size_t alen = a.shape()[axis];
  Tensor out = dispatch(a.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor r_t = detail::empty_for<T>("gather", Shape(index.shape().begin(), index.shape().end()));
    xt::xarray<T>& r = r_t.data<T>();
    const T* src = a.data<T>().data();
    const std::int64_t* idx = index.data();
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t j = 0; j < len; ++j)
        for (std::size_t i = 0; i < inner; ++i) {
          std::size_t p = (o * len + j) * inner + i;
          r.data()[p] = src[(o * alen + static_cast<std::size_t>(idx[p])) * inner + i];
        }
    return r_t;
  });
  return record("gather", std::move(out), {a}, [s = a.shape(), axis, index](const Tensor& g, GradSink& sk) {
    sk.add(0, scatter_add(s, static_cast<std::ptrdiff_t>(axis), index, g));
  });
}

Tensor scatter_add(const Shape& shape, std::ptrdiff_t axis_in, const xt::xarray<std::int64_t>& index,
                   const Tensor& g) {
  detail::require_defined(g, "scatter_add", "g");
  std::size_t axis = normalize_axis(axis_in, shape.size(), "scatter_add");
  detail::checked_numel("scatter_add", shape);
  const auto geo = gather_geometry(shape, axis, index, "scatter_add");
  const std::size_t outer = geo[0], len = geo[1], inner = geo[2];
  if (!std::equal(g.shape().begin(), g.shape().end(), index.shape().begin(), index.shape().end()))
    throw ShapeError(fmt::format("scatter_add: gradient {} must have the index's shape",
                                 shape_str(g.shape())));
  Tensor out = detail::zeros_for("scatter_add", shape, g.dtype());
  std::size_t alen = shape[axis];
  dispatch(g.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* dst = out.data<T>().data();
    const T* src = g.data<T>().data();
    const std::int64_t* idx = index.data();
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t j = 0; j < len; ++j)
        for (std::size_t i = 0; i < inner; ++i) {
          std::size_t p = (o * len + j) * inner + i;
          dst[(o * alen + static_cast<std::size_t>(idx[p])) * inner + i] += src[p];
        }
  });
  return record("scatter_add", std::move(out), {g}, [axis, index](const Tensor& gg, GradSink& sk) {
    sk.add(0, gather(gg, static_cast<std::ptrdiff_t>(axis), index));
  });
}

Tensor one_hot(const std::vector<std::int64_t>& labels, std::size_t num_classes, DType dtype) {
  detail::checked_numel("one_hot", Shape{labels.size(), num_classes});
  for (auto l : labels) check_index(l, num_classes, "one_hot", 1);
  Tensor out = detail::zeros_for("one_hot", Shape{labels.size(), num_classes}, dtype);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* d = out.data<T>().data();
    for (std::size_t i = 0; i < labels.size(); ++i) d[i * num_classes + labels[i]] = T(1);
  });
  return out;
}

}  // namespace tapegrad
