// tapegrad — the fused LSTM (see lstm_fused.hpp for the equations, the buffers and the limits).
// Shapes: B batch, T time (Tn in code, T is the scalar type), H hidden, in input size.
#include "layers/fast/lstm_fused.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>

// GCC 12 warns "'__Y' may be used uninitialized" inside its own AVX-512 intrinsics as inlined
// into xsimd's exp: a false positive (_mm512_undefined_* on purpose).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "framework/blas.hpp"
#include "framework/packed_gemm.hpp"
#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "framework/tape.hpp"
#include "layers/fast/fused_kernels.hpp"
#include "layers/fast/gate_kernels.hpp"
#include "layers/rnn.hpp"

namespace tapegrad {

namespace {

using detail::gemm;     // framework/blas.hpp: transpose flags, gemv for one row, 1 thread when small
using detail::PackedGemm;  // framework/packed_gemm.hpp: the per-step products
using namespace fused;  // fused_kernels.hpp: Buffer, over_batch, StepWeight; gate_kernels.hpp: the gate passes

/// A layer's initial state: undefined (zeros) or slice j of an (L·D, B, H) tensor, read in place;
/// its gradient is added in place into that slice (GradSink::add_narrow).
struct InitialState {
  Tensor s;
  std::size_t j = 0;
};

/// The initial state as a (B, H) tape tensor, for the differentiable backward.
Tensor initial_tensor(const InitialState& init, std::size_t B, std::size_t H, DType dtype) {
  return init.s.defined() ? select(init.s, 0, std::ptrdiff_t(init.j)) : zeros({B, H}, dtype);
}

/// The layer's backward written with framework ops, for a create_graph (double) backward: the
/// gates are recomputed from the saved inputs and the states in Y (the node's own output), and
/// BPTT runs step by step on the tape, so every gradient it returns is differentiable again.
/// The same equations as the BLAS backward below; tests/test_lstm_fused.cpp checks it with
/// gradgradcheck. Slow, and only used there.
struct DifferentiableBackward {
  Tensor x, w_ih, w_hh, b_ih, b_hh;
  InitialState h0, c0;
  std::size_t B, Tn, H;

  /// dL/dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0 for dL/dY = gy.
  std::vector<Tensor> operator()(const Tensor& y, const Tensor& gy) const {
    const auto sB = std::ptrdiff_t(B), sT = std::ptrdiff_t(Tn), sH = std::ptrdiff_t(H);
    const std::ptrdiff_t rows = sB * sT, in = std::ptrdiff_t(w_ih.size(1));
    Tensor gi = matmul(x, w_ih, false, true) + (b_ih + b_hh);  // (B, T, 4H)
    const Tensor h_first = initial_tensor(h0, B, H, w_ih.dtype());
    const Tensor c_first = initial_tensor(c0, B, H, w_ih.dtype());
    Tensor hs = narrow(y, 2, 0, H), cs = narrow(y, 2, H, H);  // (B, T, H) each
    std::vector<Tensor> da(Tn);  // per step (B, 4H)
    Tensor dh_next, dc_next;     // dL/dh_t, dL/dc_t through step t+1
    for (std::size_t t = Tn; t-- > 0;) {
      const auto st = std::ptrdiff_t(t);
      Tensor h_prev = t == 0 ? h_first : select(hs, 1, st - 1);
      Tensor c_prev = t == 0 ? c_first : select(cs, 1, st - 1);
      auto a = chunk(select(gi, 1, st) + matmul(h_prev, w_hh, false, true), 4, -1);
      Tensor i = sigmoid(a[0]), f = sigmoid(a[1]), n = tanh(a[2]), o = sigmoid(a[3]);
      Tensor tc = tanh(f * c_prev + i * n);
      Tensor gy_t = select(gy, 1, st);
      Tensor dh = narrow(gy_t, 1, 0, H), dc = narrow(gy_t, 1, H, H);
      if (dh_next.defined()) dh = dh + dh_next, dc = dc + dc_next;
      dc = dc + dh * o * (1.0 - tc * tc);
      da[t] = concat({dc * n * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - n * n),
                      dh * tc * o * (1.0 - o)},
                     -1);
      dh_next = matmul(da[t], w_hh);  // dL/dh_{t−1}
      dc_next = dc * f;               // dL/dc_{t−1}
    }
    Tensor d = reshape(stack(da, 1), {rows, 4 * sH});  // (B·T, 4H)
    std::vector<Tensor> h_prevs{unsqueeze(h_first, 1)};
    if (Tn > 1) h_prevs.push_back(narrow(hs, 1, 0, Tn - 1));
    Tensor h_prev_all = reshape(concat(h_prevs, 1), {rows, sH});
    Tensor db = sum(d, Axes{0});
    return {reshape(matmul(d, w_ih), {sB, sT, in}), matmul(d, reshape(x, {rows, in}), true, false),
            matmul(d, h_prev_all, true, false), db, db, dh_next, dc_next};
  }
};

/// Adds the gradient d (B, H) of an initial state given as slice j of an (L·D, B, H) tensor.
void add_initial_grad(GradSink& sink, std::size_t input, const InitialState& init, const Tensor& d) {
  sink.add_narrow(input, 0, init.j, unsqueeze(d, 0));
}

/// One layer and direction over x (B, T, in): the node "lstm_fused" with output Y (B, T, 2H).
template <class T>
Tensor layer_forward(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                     const Tensor& b_hh, const InitialState& h0, const InitialState& c0) {
  const std::size_t B = x.size(0), Tn = x.size(1), in = x.size(2), H = w_hh.size(1);
  const std::size_t H4 = 4 * H, H5 = 5 * H;
  const T* Wih = w_ih.data<T>().data();  // (4H, in)
  const T* Whh = w_hh.data<T>().data();  // (4H, H)
  // h_{t−1} W_hhᵀ of rows [b0, b1) added into G, at every step: W_hh packed once, unless
  // B · T < 4 (StepWeight, fused_kernels.hpp).
  const StepWeight<T> whh(Whh, H4, H, B * Tn);

  struct Saved {
    Saved(std::size_t B, std::size_t Tn, std::size_t H) : h0(B * H), c0(B * H), G(B * Tn * 5 * H) {}
    Buffer<T> h0, c0, G;
  };
  auto saved = std::make_shared<Saved>(B, Tn, H);
  for (auto [init, dst] : {std::pair{&h0, saved->h0.data()}, std::pair{&c0, saved->c0.data()}}) {
    if (init->s.defined())
      std::memcpy(dst, init->s.template data<T>().data() + init->j * B * H, B * H * sizeof(T));
    else
      std::fill(dst, dst + B * H, T(0));
  }
  Buffer<T> bias_buf(H4);  // b_ih + b_hh
  T* bias = bias_buf.data();
  for (std::size_t k = 0; k < H4; ++k) bias[k] = b_ih.data<T>().data()[k] + b_hh.data<T>().data()[k];

  T* G = saved->G.data();
  xt::xarray<T> y_arr = xt::xarray<T>::from_shape({B, Tn, 2 * H});  // rows [h_t | c_t]
  T* Y = y_arr.data();
  const GateKernel<T>& gates = gate_kernel<T>();  // this CPU's widest build (gate_kernels.hpp)
  over_batch(B, split_batch(4, B, Tn, H), [&](std::size_t b0, std::size_t b1) {
    // x W_ihᵀ for all T steps of sequences b0..: one GEMM into G[b0:b1, :, 0:4H].
    gemm(false, true, (b1 - b0) * Tn, H4, in, x.data<T>().data() + b0 * Tn * in, in, Wih, in, T(0),
         G + b0 * Tn * H5, H5);
    for (std::size_t t = 0; t < Tn; ++t) {
      // h_{t−1} of rows b0.. as a matrix: h0's rows, or Y's h columns of step t − 1.
      const T* hp = t == 0 ? saved->h0.data() + b0 * H : Y + (b0 * Tn + t - 1) * 2 * H;
      const std::size_t ldh = t == 0 ? H : Tn * 2 * H;
      whh.multiply(b1 - b0, hp, ldh, T(1), G + (b0 * Tn + t) * H5, Tn * H5);
      for (std::size_t b = b0; b < b1; ++b) {
        const std::size_t r = b * Tn + t;
        LstmRow<T> p{G + r * H5, t == 0 ? saved->c0.data() + b * H : Y + (r - 1) * 2 * H + H,
                     Y + r * 2 * H, nullptr, nullptr, nullptr, nullptr};
        gates.lstm_forward(p, bias, H);  // i, f, g, o, c_t, h_t (lstm_gates_forward, gate_kernels.inc)
      }
    }
  });

  // Inputs on the tape: x w_ih w_hh b_ih b_hh [h0] [c0].
  std::vector<Tensor> inputs;
  inputs.reserve(7);
  inputs.insert(inputs.end(), {x, w_ih, w_hh, b_ih, b_hh});
  const std::size_t ih0 = h0.s.defined() ? inputs.size() : 0;
  if (h0.s.defined()) inputs.push_back(h0.s);
  const std::size_t ic0 = c0.s.defined() ? inputs.size() : 0;
  if (c0.s.defined()) inputs.push_back(c0.s);
  Tensor result(std::move(y_arr));
  DifferentiableBackward differentiable{x, w_ih, w_hh, b_ih, b_hh, h0, c0, B, Tn, H};
  // The backward reads Y through a weak handle: Y owns this node, so a Tensor captured here would
  // keep both alive in a cycle (framework/tape.hpp).
  return record("lstm_fused", result, inputs,
                [saved, x, w_ih, w_hh, ih0, ic0, h0, c0, result_ref = WeakTensor(result),
                 differentiable](const Tensor& gy, GradSink& sink) {
    if (sink.create_graph()) {  // a double backward: the same BPTT, written with tapegrad ops
      const std::vector<Tensor> g = differentiable(result_ref.lock(), gy);
      for (std::size_t i = 0; i < 5; ++i)
        if (sink.needs(i)) sink.add(i, g[i]);
      if (ih0 && sink.needs(ih0)) add_initial_grad(sink, ih0, h0, g[5]);
      if (ic0 && sink.needs(ic0)) add_initial_grad(sink, ic0, c0, g[6]);
      return;
    }
    const std::size_t B = x.size(0), Tn = x.size(1), in = x.size(2), H = w_hh.size(1);
    const std::size_t H4 = 4 * H, H5 = 5 * H, rows = B * Tn;
    const Tensor result = result_ref.lock();  // alive: the backward pass holds it
    const T* Y = result.data<T>().data();
    const T* GY = gy.data<T>().data();  // dL/dY (B, T, 2H)
    const T* Whh = w_hh.data<T>().data();
    // dL/dh_{t−1} = da_t W_hh for rows [b0, b1), at every step (W_hh packed once, as in forward).
    std::optional<PackedGemm<T>> whh_packed;
    Buffer<T> whh_storage(PackedGemm<T>::available() ? PackedGemm<T>::storage_size(H4, H) : 1);
    if (PackedGemm<T>::available())
      whh_packed.emplace(pack_on_two_cores<T>(whh_storage.data(), Whh, H, /*transpose_b=*/false, H4, H));
    auto recurrent = [&](std::size_t m, const T* da, std::size_t ld, T* d) {
      if (whh_packed) whh_packed->multiply(m, da, ld, T(0), d, H);
      else gemm(false, false, m, H, H4, da, ld, Whh, H, T(0), d, H);
    };
    // G is turned into da in place, unless the graph is kept for another backward (then a copy is).
    std::unique_ptr<Buffer<T>> copy;
    T* G = saved->G.data();
    if (sink.retain_graph()) {
      copy = std::make_unique<Buffer<T>>(rows * H5);
      std::memcpy(copy->data(), G, rows * H5 * sizeof(T));
      G = copy->data();
    }
    const bool need_bias = sink.needs(3) || sink.needs(4);
    const bool need_h0 = ih0 && sink.needs(ih0);
    const bool split = split_batch(4, B, Tn, H);
    Buffer<T> dh_buf(B * H), dc_buf(B * H);  // the carried dL/dh, dL/dc
    T* dh = dh_buf.data();
    T* dc = dc_buf.data();
    // Per half of the batch: column sums of da (4H), allocated on this thread (as in the GRU's
    // backward: the helper thread keeps no cache of freed blocks) and zeroed by each half.
    xt::xarray<T> sums[2] = {xt::xarray<T>::from_shape({H4}), xt::xarray<T>::from_shape({H4})};
    const GateKernel<T>& gates = gate_kernel<T>();
    over_batch(B, split, [&](std::size_t b0, std::size_t b1) {
      xt::xarray<T>& mine = sums[b0 == 0 ? 0 : 1];
      std::fill(mine.begin(), mine.end(), T(0));
      std::fill(dh + b0 * H, dh + b1 * H, T(0));
      std::fill(dc + b0 * H, dc + b1 * H, T(0));
      for (std::size_t t = Tn; t-- > 0;) {
        for (std::size_t b = b0; b < b1; ++b) {
          const std::size_t r = b * Tn + t;
          LstmRow<T> p{G + r * H5, t == 0 ? saved->c0.data() + b * H : Y + (r - 1) * 2 * H + H, nullptr,
                       GY + r * 2 * H, dh + b * H, dc + b * H, need_bias ? mine.data() : nullptr};
          gates.lstm_backward(p, H);  // BPTT through the gates (lstm_gates_backward, gate_kernels.inc)
        }
        if (t > 0 || need_h0)  // dL/dh_{t−1} = da_t W_hh
          recurrent(b1 - b0, G + (b0 * Tn + t) * H5, Tn * H5, dh + b0 * H);
      }
    });
    if (split) sums[0] += sums[1];

    // The weight gradients, each one GEMM over all B·T rows; on two threads, each computes half
    // of the gate rows (i|f of dW_hh and dW_ih, or g|o) and half of dx's rows.
    const bool need_whh = sink.needs(2), need_wih = sink.needs(1), need_x = sink.needs(0);
    Buffer<T> hprev(need_whh ? rows * H : 1);  // h_{t−1} of every row (b, t)
    if (need_whh)
      for (std::size_t b = 0; b < B; ++b) {
        std::memcpy(hprev.data() + b * Tn * H, saved->h0.data() + b * H, H * sizeof(T));
        for (std::size_t t = 1; t < Tn; ++t)
          std::memcpy(hprev.data() + (b * Tn + t) * H, Y + (b * Tn + t - 1) * 2 * H, H * sizeof(T));
      }
    auto new_grad = [](const Shape& shape) { return xt::xarray<T>::from_shape(shape); };
    xt::xarray<T> dw_hh = new_grad(need_whh ? Shape{H4, H} : Shape{0});
    xt::xarray<T> dw_ih = new_grad(need_wih ? Shape{H4, in} : Shape{0});
    xt::xarray<T> dx = new_grad(need_x ? Shape{B, Tn, in} : Shape{0});
    over_batch(2, split, [&](std::size_t p0, std::size_t p1) {
      const std::size_t g0 = p0 * H4 / 2, g1 = p1 * H4 / 2;  // gate rows [g0, g1)
      const std::size_t r0 = p0 * rows / 2, r1 = p1 * rows / 2;  // rows of dx
      if (need_whh)  // dW_hh = daᵀ · h_{t−1}
        gemm(true, false, g1 - g0, H, rows, G + g0, H5, hprev.data(), H, T(0), dw_hh.data() + g0 * H, H);
      if (need_wih)  // dW_ih = daᵀ · x
        gemm(true, false, g1 - g0, in, rows, G + g0, H5, x.data<T>().data(), in, T(0),
             dw_ih.data() + g0 * in, in);
      if (need_x)  // dx = da · W_ih
        gemm(false, false, r1 - r0, in, H4, G + r0 * H5, H5, w_ih.data<T>().data(), in, T(0),
             dx.data() + r0 * in, in);
    });
    if (need_whh) sink.add(2, Tensor(std::move(dw_hh)));
    if (need_bias) {
      if (sink.needs(3)) sink.add(3, Tensor(xt::xarray<T>(sums[0])));
      if (sink.needs(4)) sink.add(4, Tensor(std::move(sums[0])));
    }
    if (need_wih) sink.add(1, Tensor(std::move(dw_ih)));
    if (need_x) sink.add(0, Tensor(std::move(dx)));
    for (auto [input, init, carried] : {std::tuple{ih0, &h0, dh}, std::tuple{ic0, &c0, dc}}) {
      if (!input || !sink.needs(input)) continue;
      xt::xarray<T> d = new_grad({1, B, H});
      std::memcpy(d.data(), carried, B * H * sizeof(T));
      sink.add_narrow(input, 0, init->j, Tensor(std::move(d)));
    }
  });
}

}  // namespace

LSTM::Output lstm_forward_fused(const LSTM& lstm, const Tensor& x_in, const Tensor& h0, const Tensor& c0) {
  const LSTMOptions& o = lstm.options;
  const std::size_t L = o.num_layers(), D = o.bidirectional() ? 2 : 1, H = o.hidden_size();
  // The same checks (and messages) as the composed LSTM.
  Tensor x = detail::sequence_batch_first("LSTM", x_in, o.input_size(), o.batch_first(),
                                          lstm.weight_ih[0]);  // (B, T, in)
  const std::size_t B = x.size(0), Tn = x.size(1);
  detail::check_initial_state("LSTM", "h0", h0, L * D, B, H, x);
  detail::check_initial_state("LSTM", "c0", c0, L * D, B, H, x);
  std::vector<std::int64_t> reversed(Tn);  // time positions T−1 … 0
  for (std::size_t t = 0; t < Tn; ++t) reversed[t] = std::int64_t(Tn - 1 - t);

  LSTM::Output out;
  out.fused = true;
  Tensor input = x;                   // this layer's input (B, T, in_k)
  std::vector<Tensor> last_h, last_c;  // each (1, B, H)
  for (std::size_t k = 0; k < L; ++k) {
    std::vector<Tensor> directions;  // each (B, T, H) in time order
    for (std::size_t d = 0; d < D; ++d) {
      const std::size_t j = k * D + d;
      // The reverse direction is the same kernel over the time-reversed sequence.
      Tensor in = d == 1 ? index_select(input, 1, reversed) : input;
      Tensor y = detail::dispatch(x.dtype(), [&](auto tag) {
        return layer_forward<decltype(tag)>(in, lstm.weight_ih[j], lstm.weight_hh[j], lstm.bias_ih[j],
                                            lstm.bias_hh[j], {h0, j}, {c0, j});
      });  // (B, T, 2H), rows [h_t | c_t] in the direction's reading order
      Tensor y_last = narrow(y, 1, Tn - 1, 1);  // (B, 1, 2H): (B, 1, H) and (1, B, H) share an order
      last_h.push_back(reshape(narrow(y_last, 2, 0, H), Shape{1, B, H}));
      last_c.push_back(reshape(narrow(y_last, 2, H, H), Shape{1, B, H}));
      Tensor states = narrow(y, 2, 0, H);
      directions.push_back(d == 1 ? index_select(states, 1, reversed) : states);
    }
    input = D == 1 ? directions[0] : concat(directions, -1);  // (B, T, D·H)
  }
  out.output = o.batch_first() ? input : transpose(input, 0, 1);
  out.h_n = last_h.size() == 1 ? last_h[0] : concat(last_h, 0);
  out.c_n = last_c.size() == 1 ? last_c[0] : concat(last_c, 0);
  return out;
}

}  // namespace tapegrad
