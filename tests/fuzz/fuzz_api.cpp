// libFuzzer target for the public tensor API: each input is decoded into a sequence of calls
// (creation with random shapes, reshape, narrow, pad_narrow, select, concat/stack, split,
// matmul, broadcasting elementwise ops, reductions, gather/scatter, layers, backward, ...) on a
// small pool of tensors, with arguments taken from the input, some of them hostile (SIZE_MAX,
// 2^62 + 1, negative axes, ...).
//
// A tapegrad::Error (any subclass: ShapeError, IndexError, DTypeError, ValueError,
// AutogradError, MemoryError, ...) is an accepted outcome. Any other exception, a crash, or a
// sanitizer report is a bug.
//
// Legitimate allocations stay small: a call is made only when the size it would allocate is
// either small (at most kCap elements, the product counting a 0 as 1) or above tapegrad's element
// limit (so it must be refused before allocating). Calls in between (legal but big) are skipped,
// so the fuzzer looks for crashes, not for out-of-memory.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <typeinfo>
#include <limits>
#include <vector>

#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

namespace {

constexpr std::size_t kCap = 4096;                              // pool tensors and results
constexpr std::size_t kLimit = (std::size_t(1) << 31) - 1;      // tapegrad's element limit
constexpr std::size_t kMaxPool = 8;

const std::size_t kHostile[] = {
    SIZE_MAX,          SIZE_MAX / 2 + 1,      std::size_t(1) << 63, (std::size_t(1) << 62) + 1,
    std::size_t(1) << 62, std::size_t(1) << 32, std::size_t(1) << 40, kLimit + 1,
    kLimit,            std::size_t(1) << 31,  std::size_t(1) << 20, 65536,
    4097,              4096};

/// Product of the dims with 0 counted as 1, saturating at SIZE_MAX.
std::size_t capacity(const Shape& s) {
  std::size_t c = 1;
  for (std::size_t d : s) {
    if (d == 0) continue;
    if (c > SIZE_MAX / d) return SIZE_MAX;
    c *= d;
  }
  return c;
}

/// Whether a call producing `shape` may be made: small, or certain to be refused.
bool admissible(const Shape& s) {
  std::size_t c = capacity(s);
  return c <= kCap || c > kLimit;
}

struct Fuzz {
  FuzzedDataProvider& in;
  std::vector<Tensor> pool;

  std::size_t dim() {
    if (in.ConsumeIntegralInRange<int>(0, 9) == 0)
      return kHostile[in.ConsumeIntegralInRange<std::size_t>(0, std::size(kHostile) - 1)];
    return in.ConsumeIntegralInRange<std::size_t>(0, 5);
  }
  std::size_t small(std::size_t hi) { return in.ConsumeIntegralInRange<std::size_t>(0, hi); }
  std::ptrdiff_t axis() {
    if (in.ConsumeIntegralInRange<int>(0, 15) == 0) return in.ConsumeIntegral<std::ptrdiff_t>();
    return in.ConsumeIntegralInRange<std::ptrdiff_t>(-4, 4);
  }
  Shape shape() {
    Shape s(small(4));
    for (auto& d : s) d = dim();
    return s;
  }
  DType dtype() { return in.ConsumeBool() ? DType::Float32 : DType::Float64; }
  Tensor pick() {
    if (pool.empty()) return ones({2, 3});
    return pool[small(pool.size() - 1)];
  }
  void keep(const Tensor& t) {
    if (!t.defined() || capacity(t.shape()) > kCap) return;
    if (pool.size() < kMaxPool)
      pool.push_back(t);
    else
      pool[small(kMaxPool - 1)] = t;
  }
  std::vector<std::int64_t> indices(std::size_t n, std::size_t range) {
    std::vector<std::int64_t> v(n);
    for (auto& i : v)
      i = in.ConsumeIntegralInRange<int>(0, 7) == 0
              ? in.ConsumeIntegral<std::int64_t>()
              : static_cast<std::int64_t>(small(range == 0 ? 0 : range - 1));
    return v;
  }

  void step();
};

void Fuzz::step() {
  const int op = in.ConsumeIntegralInRange<int>(0, 24);
  switch (op) {
    case 0: {  // creation
      Shape s = shape();
      if (!admissible(s)) return;
      DType dt = dtype();
      switch (small(5)) {
        case 0: keep(zeros(s, dt)); break;
        case 1: keep(ones(s, dt)); break;
        case 2: keep(full(s, in.ConsumeFloatingPoint<double>(), dt)); break;
        case 3: keep(randn(s, dt).requires_grad_(in.ConsumeBool())); break;
        case 4: keep(uniform(s, -1.0, 1.0, dt).requires_grad_()); break;
        default: {
          std::size_t c = capacity(s);
          std::vector<double> v(c <= kCap ? c : small(3), 0.5);  // maybe the wrong count
          keep(from_vector(v, s, dt).requires_grad_(in.ConsumeBool()));
        }
      }
      return;
    }
    case 1: {  // arange, sometimes with a huge count
      double start = in.ConsumeFloatingPoint<double>(), stop = in.ConsumeFloatingPoint<double>();
      double step = in.ConsumeFloatingPoint<double>();
      double count = (stop - start) / step;
      if (count > double(kCap) && count <= double(kLimit) + 2) return;  // legal but big
      keep(arange(start, stop, step, dtype()));
      return;
    }
    case 2: {  // reshape with a signed spec (-1, negatives, huge values)
      Tensor t = pick();
      std::vector<std::ptrdiff_t> spec(small(4));
      for (auto& d : spec) {
        int k = in.ConsumeIntegralInRange<int>(0, 9);
        d = k == 0 ? -1 : k == 1 ? in.ConsumeIntegral<std::ptrdiff_t>()
                                 : static_cast<std::ptrdiff_t>(dim());
      }
      keep(reshape(t, spec));
      return;
    }
    case 3: {  // narrow
      Tensor t = pick();
      keep(narrow(t, axis(), dim(), dim()));
      return;
    }
    case 4: {  // pad_narrow (the adjoint of narrow)
      Tensor g = pick();
      std::ptrdiff_t ax = axis();
      std::size_t start = dim(), full_size = dim();
      if (g.dim() > 0 && ax >= -std::ptrdiff_t(g.dim()) && ax < std::ptrdiff_t(g.dim())) {
        Shape fs = g.shape();
        fs[ax < 0 ? ax + g.dim() : ax] = full_size;
        if (!admissible(fs)) return;
      }
      keep(pad_narrow(g, ax, start, full_size));
      return;
    }
    case 5: keep(select(pick(), axis(), dim())); return;
    case 6: keep(slice_rows(pick(), dim(), dim())); return;
    case 7:
    case 8: {  // concat / stack of 1..4 pool tensors
      std::vector<Tensor> parts(1 + small(3));
      for (auto& p : parts) p = pick();
      keep(op == 7 ? concat(parts, axis()) : stack(parts, axis()));
      return;
    }
    case 9: {  // split / chunk
      Tensor t = pick();
      std::vector<std::size_t> sizes(small(3));
      for (auto& s : sizes) s = dim();
      auto parts = in.ConsumeBool() ? split(t, sizes, axis()) : chunk(t, dim(), axis());
      for (const auto& p : parts) keep(p);
      return;
    }
    case 10: {  // matmul
      Tensor a = pick(), b = pick();
      bool ta = in.ConsumeBool(), tb = in.ConsumeBool();
      if (a.dim() >= 2 && b.dim() >= 2) {
        std::size_t m = a.shape()[a.dim() - (ta ? 1 : 2)], n = b.shape()[b.dim() - (tb ? 2 : 1)];
        Shape os{a.dim() == 3 ? a.shape()[0] : 1, m, n};
        if (!admissible(os)) return;
      }
      keep(matmul(a, b, ta, tb));
      return;
    }
    case 11: {  // broadcasting binary ops
      Tensor a = pick(), b = pick();
      Shape out;
      try {
        out = broadcast_shapes(a.shape(), b.shape(), "fuzz");
      } catch (const Error&) {
      }
      if (!admissible(out)) return;
      switch (small(5)) {
        case 0: keep(a + b); break;
        case 1: keep(a - b); break;
        case 2: keep(a * b); break;
        case 3: keep(a / b); break;
        case 4: keep(pow(abs(a) + 1.0, b)); break;
        default: keep(where(gt(a, 0.0), a, b)); break;
      }
      return;
    }
    case 12: {  // unary ops
      Tensor a = pick();
      switch (small(9)) {
        case 0: keep(exp(a)); break;
        case 1: keep(log(abs(a) + 1.0)); break;
        case 2: keep(tanh(a)); break;
        case 3: keep(sigmoid(a)); break;
        case 4: keep(relu(a)); break;
        case 5: keep(sqrt(abs(a))); break;
        case 6: keep(-a); break;
        case 7: keep(clamp(a, in.ConsumeFloatingPoint<double>(), in.ConsumeFloatingPoint<double>())); break;
        case 8: keep(a.pow(in.ConsumeFloatingPointInRange<double>(-3, 3))); break;
        default: keep(2.0 * a - 1.0); break;
      }
      return;
    }
    case 13: {  // reductions
      Tensor a = pick();
      Axes axes(small(2));
      for (auto& x : axes) x = axis();
      switch (small(6)) {
        case 0: keep(sum(a)); break;
        case 1: keep(mean(a)); break;
        case 2: keep(sum(a, axes, in.ConsumeBool())); break;
        case 3: keep(mean(a, axes, in.ConsumeBool())); break;
        case 4: keep(max(a, axis(), in.ConsumeBool())); break;
        case 5: keep(softmax(a, axis())); break;
        default: keep(log_softmax(a, axis())); break;
      }
      return;
    }
    case 14: {  // backward
      Tensor t = pick();
      bool retain = in.ConsumeBool();
      if (in.ConsumeBool())
        t.sum().backward(Tensor(), retain);
      else
        t.backward(ones_like(t), retain, in.ConsumeIntegralInRange<int>(0, 7) == 0);
      return;
    }
    case 15: {  // Linear with random sizes
      std::size_t in_f = dim(), out_f = dim();
      if (!admissible(Shape{out_f, in_f})) return;
      Generator gen(small(100));
      Linear lin(LinearOptions(in_f, out_f).bias(in.ConsumeBool()), gen);
      keep(lin(pick()));
      return;
    }
    case 16: {  // recurrent cells and embedding with small (maybe zero) sizes
      std::size_t a = small(4), h = small(4);
      Generator gen(1);
      switch (small(4)) {
        case 0: keep(RNNCell(RNNCellOptions(a, h), gen)(pick())); break;
        case 1: keep(GRUCell(GRUCellOptions(a, h), gen)(pick(), in.ConsumeBool() ? pick() : Tensor())); break;
        case 2: keep(LSTMCell(LSTMCellOptions(a, h), gen)(pick()).h); break;
        case 3: {
          Embedding e(a, h, gen);
          keep(e(indices(small(6), a), Shape{small(2), small(3)}));
          break;
        }
        default: {
          GRU gru(GRUOptions(a, h).num_layers(small(2)), gen);
          keep(gru(pick()).output);
        }
      }
      return;
    }
    case 17: {  // axes shuffling
      Tensor a = pick();
      switch (small(4)) {
        case 0: keep(transpose(a)); break;
        case 1: keep(transpose(a, axis(), axis())); break;
        case 2: keep(unsqueeze(a, axis())); break;
        case 3: keep(squeeze(a, axis())); break;
        default: {
          std::vector<std::size_t> dims(small(4));
          for (auto& d : dims) d = small(4);
          keep(permute(a, dims));
        }
      }
      return;
    }
    case 18: {  // index_select / index_add
      Tensor a = pick();
      std::ptrdiff_t ax = axis();
      std::size_t range = a.dim() > 0 ? a.shape()[0] : 0;
      auto idx = indices(small(4), range);
      if (in.ConsumeBool()) {
        keep(index_select(a, ax, idx));
      } else {
        Shape s = shape();
        if (!admissible(s)) return;
        keep(index_add(s, ax, idx, a));
      }
      return;
    }
    case 19: {  // gather / scatter_add with an index shaped like the data
      Tensor a = pick();
      std::ptrdiff_t ax = axis();
      Shape is = a.shape();
      if (!is.empty()) is[small(is.size() - 1)] = small(3);
      if (capacity(is) > kCap) return;
      xt::xarray<std::int64_t> index = xt::xarray<std::int64_t>::from_shape(is);
      auto v = indices(index.size(), a.dim() > 0 ? a.shape()[0] : 0);
      std::copy(v.begin(), v.end(), index.begin());
      if (in.ConsumeBool()) {
        keep(gather(a, ax, index));
      } else {
        Shape s = in.ConsumeBool() ? a.shape() : shape();
        if (!admissible(s)) return;
        keep(scatter_add(s, ax, index, a));
      }
      return;
    }
    case 20: {  // one_hot / cross_entropy / mse
      switch (small(2)) {
        case 0: {
          std::size_t classes = dim();
          auto labels = indices(small(8), classes);
          if (!admissible(Shape{labels.size(), classes})) return;
          keep(one_hot(labels, classes, dtype()));
          break;
        }
        case 1: {
          Tensor l = pick();
          keep(cross_entropy(l, indices(l.dim() > 0 ? l.shape()[0] : small(2), l.dim() > 1 ? l.shape()[1] : 1),
                             static_cast<Reduction>(small(2))));
          break;
        }
        default: keep(mse(pick(), pick(), in.ConsumeBool() ? Reduction::Sum : Reduction::Mean));
      }
      return;
    }
    case 21: {  // broadcast_to / sum_to
      Tensor a = pick();
      Shape s = shape();
      if (!admissible(s)) return;
      keep(in.ConsumeBool() ? broadcast_to(a, s) : sum_to(a, s));
      return;
    }
    case 22: {  // dtype, leaves, no-grad
      Tensor a = pick();
      switch (small(3)) {
        case 0: keep(a.to(a.dtype() == DType::Float32 ? DType::Float64 : DType::Float32)); break;
        case 1: keep(a.detach().requires_grad_()); break;
        case 2: {
          NoGradGuard ng;
          keep(a * 3.0);
          break;
        }
        default: a.zero_grad();
      }
      return;
    }
    case 23: tape().clear(); return;
    default: {  // init on a pool tensor (leaves only; others must raise)
      Tensor a = pick().detach();
      Generator gen(2);
      if (a.dim() >= 2 && in.ConsumeBool())
        init::kaiming_uniform_(a, in.ConsumeFloatingPointInRange<double>(0, 3), gen);
      else
        init::normal_(a, 0.0, 1.0, gen);
      keep(a);
      return;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  Fuzz f{in, {}};
  const bool anomaly = in.ConsumeIntegralInRange<int>(0, 7) == 0;
  AnomalyGuard guard(anomaly);
  for (int n = 0; n < 32 && in.remaining_bytes() > 0; ++n) {
    try {
      f.step();
    } catch (const tapegrad::Error&) {
      // The expected outcome for bad arguments.
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz_api: non-tapegrad exception %s: %s\n", typeid(e).name(), e.what());
      std::abort();
    }
  }
  f.pool.clear();
  tape().clear();
  return 0;
}
