// tapegrad — the fused GRU (see gru_fused.hpp for the equations, the buffers and the limits).
// Shapes: B batch, T time (Tn in code, T is the scalar type), H hidden, in input size.
#include "layers/fast/gru_fused.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include <fmt/format.h>
// GCC 12 warns "'__Y' may be used uninitialized" inside its own AVX-512 intrinsics as inlined
// into xsimd's exp/tanh: a false positive (_mm512_undefined_* on purpose).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <xtensor/xbuilder.hpp>

#include "framework/blas.hpp"
#include "framework/packed_gemm.hpp"
#include "framework/dispatch.hpp"
#include "framework/ops.hpp"
#include "framework/tape.hpp"
#include "layers/fast/fused_kernels.hpp"
#include "layers/fast/gate_kernels.hpp"

namespace tapegrad {

namespace {

using detail::gemm;  // framework/blas.hpp: transpose flags, gemv for one row, 1 thread when small
using detail::PackedGemm;  // framework/packed_gemm.hpp: the per-step products
using namespace fused;  // fused_kernels.hpp: Buffer, over_batch, StepWeight; gate_kernels.hpp: the gate passes

// ---- the layer ---------------------------------------------------------------------------------

/// What the backward needs besides the output (see the header): h0 (B, H) and G (B, T, 4H).
template <class T>
struct Saved {
  Saved(std::size_t B, std::size_t Tn, std::size_t H) : B(B), Tn(Tn), H(H), h0(B * H), G(B * Tn * 4 * H) {}
  std::size_t B, Tn, H;
  Buffer<T> h0;
  Buffer<T> G;
};

/// The layer's input: a dense (B, T, in) tensor or one-hot ids.
struct LayerInput {
  const Tensor* x = nullptr;                                   // dense
  std::shared_ptr<const std::vector<std::int64_t>> ids;        // or one-hot ids, (B, T) row-major
};

/// The layer's initial state: undefined (zeros), a (B, H) tensor, or slice `layer` of a
/// (L, B, H) tensor — read in place, and its gradient added in place into that slice
/// (GradSink::add_narrow), so a stacked GRU needs no select op per layer.
struct InitialState {
  Tensor h0;
  std::size_t layer = 0;
};

/// h_{t−1} of every sequence as a (B × H) matrix with leading dimension *ld: row b of h0 for
/// t = 0, else out[b, t − 1] (rows T·H apart in the batch-first output).
template <class T>
const T* previous_states(const T* out, const T* h0, std::size_t t, std::size_t Tn, std::size_t H,
                         std::size_t* ld) {
  *ld = t == 0 ? H : Tn * H;
  return t == 0 ? h0 : out + (t - 1) * H;
}

/// The layer's backward written with framework ops, for a create_graph (double) backward: the
/// gates are recomputed from the saved inputs and the states h_t (the node's own output), and
/// BPTT runs step by step on the tape, so every gradient it returns is itself differentiable
/// (gradgradcheck, Hessian-vector products). The same equations as the BLAS backward below;
/// tests/test_gru_fused.cpp checks both against the composed GRU. Slow, and only used there.
struct DifferentiableBackward {
  std::shared_ptr<const std::vector<std::int64_t>> ids;  // or dense x
  Tensor x, w_ih, w_hh, b_ih, b_hh;
  Tensor h0;  // (B, H), or (L, B, H) of which this layer reads slice `layer`, or undefined
  std::size_t layer, B, Tn, H;

  /// dL/d(x or ·), w_ih, w_hh, b_ih, b_hh, h0 for dL/d(out) = gout, out = the layer's output.
  std::vector<Tensor> operator()(const Tensor& out, const Tensor& gout) const {
    const auto sB = std::ptrdiff_t(B), sT = std::ptrdiff_t(Tn), sH = std::ptrdiff_t(H);
    const std::ptrdiff_t rows = sB * sT;
    // gi = x W_ihᵀ + b_ih for every step (B, T, 3H); for ids, rows of W_ihᵀ.
    Tensor gi = ids ? reshape(index_select(transpose(w_ih), 0, *ids), {sB, sT, 3 * sH}) + b_ih
                    : matmul(x, w_ih, false, true) + b_ih;
    Tensor h_first = !h0.defined()  ? zeros({B, H}, w_ih.dtype())
                     : h0.dim() == 3 ? select(h0, 0, std::ptrdiff_t(layer))
                                     : h0;
    std::vector<Tensor> d_gi(Tn), d_gh(Tn);  // per step (B, 3H)
    Tensor dh_next;                          // dL/dh_t through h_{t+1}
    for (std::size_t t = Tn; t-- > 0;) {
      Tensor h_prev = t == 0 ? h_first : select(out, 1, std::ptrdiff_t(t) - 1);
      std::vector<Tensor> xi = chunk(select(gi, 1, std::ptrdiff_t(t)), 3, -1);
      std::vector<Tensor> hh = chunk(matmul(h_prev, w_hh, false, true) + b_hh, 3, -1);
      Tensor r = sigmoid(xi[0] + hh[0]), z = sigmoid(xi[1] + hh[1]);
      Tensor n = tanh(xi[2] + r * hh[2]);
      Tensor dh = dh_next.defined() ? select(gout, 1, std::ptrdiff_t(t)) + dh_next
                                    : select(gout, 1, std::ptrdiff_t(t));
      Tensor dn = dh * (1.0 - z), dz = dh * (h_prev - n);
      Tensor da_n = dn * (1.0 - n * n);
      Tensor da_r = da_n * hh[2] * r * (1.0 - r), da_z = dz * z * (1.0 - z);
      d_gi[t] = concat({da_r, da_z, da_n}, -1);
      d_gh[t] = concat({da_r, da_z, da_n * r}, -1);
      dh_next = dh * z + matmul(d_gh[t], w_hh);  // dL/dh_{t−1}
    }
    Tensor dgi = reshape(stack(d_gi, 1), {rows, 3 * sH});  // (B·T, 3H)
    Tensor dgh = reshape(stack(d_gh, 1), {rows, 3 * sH});
    std::vector<Tensor> h_prevs{unsqueeze(h_first, 1)};
    if (Tn > 1) h_prevs.push_back(narrow(out, 1, 0, Tn - 1));
    Tensor h_prev_all = reshape(concat(h_prevs, 1), {rows, sH});  // h_{t−1} of every row
    Tensor dx_or_ids, dw_ih;
    if (ids) {
      dw_ih = transpose(index_add(Shape{w_ih.size(1), 3 * H}, 0, *ids, dgi));
    } else {
      Tensor x_rows = reshape(x, {rows, std::ptrdiff_t(w_ih.size(1))});
      dw_ih = matmul(dgi, x_rows, true, false);
      dx_or_ids = reshape(matmul(dgi, w_ih), {sB, sT, std::ptrdiff_t(w_ih.size(1))});
    }
    return {dx_or_ids, dw_ih, matmul(dgh, h_prev_all, true, false), sum(dgi, Axes{0}),
            sum(dgh, Axes{0}), dh_next};
  }
};

/// dW_hh (3H × H, overwritten) of sequences [b0, b1) on the engine's kernel, both operands packed
/// across the sequences: the sum over the pairs (b, t) of G's gate-gradient columns of row (b, t)
/// (r, z: columns 0:2H; n: 3H:4H) times h_{t−1} of sequence b (h0 for t = 0, when given). One
/// kernel call runs over up to kKC pairs, so each block of C is loaded and stored once per kKC
/// steps of k; BLAS called per sequence (below) gets products of k = T − 1, and OpenBLAS's speed
/// there depends on the kernels it picks (OPENBLAS_CORETYPE). For a large C only (more than
/// 1 MiB: H = 512). docs/performance.md, session 23.
template <class T>
void recurrent_weight_gradient(const T* G, const T* out, const T* hinit, bool has_h0, std::size_t b0,
                               std::size_t b1, std::size_t Tn, std::size_t H, T* dw) {
  using P = PackedGemm<T>;
  constexpr std::size_t kKC = 512, kMC = 128;  // pairs per kernel call; rows of C per block
  const std::size_t H3 = 3 * H, H4 = 4 * H, t0 = has_h0 ? 0 : 1, per = Tn - t0;
  const std::size_t K = (b1 - b0) * per;
  if (K == 0) {
    std::fill(dw, dw + H3 * H, T(0));
    return;
  }
  const std::size_t most = std::min(K, kKC);
  Buffer<T> hrows(most * H), packed(P::storage_size(most, H)), gt(most * kMC);
  std::vector<const T*> grows(most);  // the block's rows of G
  for (std::size_t k0 = 0; k0 < K; k0 += kKC) {
    const std::size_t kc = std::min(kKC, K - k0);
    for (std::size_t q = 0; q < kc; ++q) {  // pair k0 + q is (b, t): G's row (b, t), h_{t−1} of b
      const std::size_t b = b0 + (k0 + q) / per, t = t0 + (k0 + q) % per;
      grows[q] = G + (b * Tn + t) * H4;
      std::memcpy(hrows.data() + q * H, t == 0 ? hinit + b * H : out + (b * Tn + t - 1) * H, H * sizeof(T));
    }
    const P hp(packed.data(), hrows.data(), H, /*transpose_b=*/false, kc, H);
    for (std::size_t r0 = 0; r0 < H3;) {  // row r of dW_hh is G's column r (r < 2H) or r + H
      const std::size_t end = std::min(r0 + kMC, r0 < 2 * H ? 2 * H : H3), mc = end - r0;
      const std::size_t col = r0 < 2 * H ? r0 : r0 + H;
      for (std::size_t q = 0; q < kc; ++q)  // Aᵀ (kc × mc): these columns of the pairs' rows of G
        std::memcpy(gt.data() + q * mc, grows[q] + col, mc * sizeof(T));
      hp.multiply_panels(0, P::panels(H), mc, gt.data(), mc, k0 == 0 ? T(0) : T(1), dw + r0 * H, H,
                         /*transpose_a=*/true);
      r0 = end;
    }
  }
}

template <class T>
Tensor layer_forward(const LayerInput& input, std::size_t B, std::size_t Tn, const Tensor& w_ih,
                     const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh,
                     const InitialState& init) {
  const Tensor& h0 = init.h0;
  const std::size_t H = w_hh.size(1), in = w_ih.size(1), H3 = 3 * H, H4 = 4 * H;
  const T* Wih = w_ih.data<T>().data();  // (3H, in)
  const T* Whh = w_hh.data<T>().data();  // (3H, H)
  const T* bih = b_ih.data<T>().data();  // (3H)
  const T* bhh = b_hh.data<T>().data();  // (3H)
  auto saved = std::make_shared<Saved<T>>(B, Tn, H);
  T* hinit = saved->h0.data();
  T* G = saved->G.data();
  xt::xarray<T> out_arr = xt::xarray<T>::from_shape({B, Tn, H});  // h_1 … h_T, batch-first
  T* out = out_arr.data();

  if (h0.defined())  // (B, H), or slice `layer` of (L, B, H)
    std::memcpy(hinit, h0.data<T>().data() + (h0.dim() == 3 ? init.layer * B * H : 0), B * H * sizeof(T));
  else
    std::fill(hinit, hinit + B * H, T(0));

  // gi = x W_ihᵀ for all T steps. One-hot: one_hot(id) W_ihᵀ is row id of W_ihᵀ, read in place
  // by the gate pass (W_ih (3H, V) is transposed once). Dense: one GEMM over all B·T rows of
  // x (B, T, in), into G[:, :, 0:3H] (row (b, t) at (b·T + t)·4H).
  // With fewer rows than V (a sampled character: one row), column id of W_ih is copied into
  // the row's G instead, as the dense input's gi would be: transposing all of W_ih would cost
  // more than that row's step.
  const bool transpose_wih = input.ids && B * Tn >= in;
  Buffer<T> wt(transpose_wih ? in * H3 : 1);  // W_ihᵀ (V, 3H)
  if (transpose_wih) {
    for (std::size_t i = 0; i < H3; ++i)
      for (std::size_t v = 0; v < in; ++v) wt.data()[v * H3 + i] = Wih[i * in + v];
  } else if (input.ids) {
    for (std::size_t r = 0; r < B * Tn; ++r) {
      const std::size_t id = std::size_t((*input.ids)[r]);
      for (std::size_t i = 0; i < H3; ++i) G[r * H4 + i] = Wih[i * in + id];
    }
  } else {
    gemm(false, true, B * Tn, H3, in, input.x->data<T>().data(), in, Wih, in, T(0), G, H4);
  }
  auto gi_row = [&](std::size_t r) -> const T* {  // gi of row r = b·T + t
    return transpose_wih ? wt.data() + std::size_t((*input.ids)[r]) * H3 : G + r * H4;
  };

  // The recurrence of sequences [b0, b1): one GEMM and one pass over the gates per step.
  Buffer<T> gh_buf(B * H3);  // h_{t−1} W_hhᵀ (B, 3H)
  T* gh = gh_buf.data();
  const StepWeight<T> whh(Whh, H3, H, B * Tn);  // packed once, unless B · T < 4 (fused_kernels.hpp)
  const GateKernel<T>& gates = gate_kernel<T>();  // this CPU's widest build (gate_kernels.hpp)
  over_batch(B, split_batch(3, B, Tn, H), [&](std::size_t b0, std::size_t b1) {
    for (std::size_t t = 0; t < Tn; ++t) {
      std::size_t ld;
      const T* hprev = previous_states<T>(out, hinit, t, Tn, H, &ld);
      whh.multiply(b1 - b0, hprev + b0 * ld, ld, T(0), gh + b0 * H3, H3);
      for (std::size_t b = b0; b < b1; ++b) {
        T* row = G + (b * Tn + t) * H4;  // [gi_r gi_z gi_n ·] or [· · · ·] → [r z n gh_n]
        GruRow<T> p{row, row + H, row + 2 * H, row + 3 * H, gh + b * H3, hprev + b * ld,
                     out + (b * Tn + t) * H, nullptr, nullptr, nullptr, nullptr, nullptr};
        // r, z, n, h_t of this row (the equations: gru_gates_forward in gate_kernels.inc)
        gates.gru_forward(p, gi_row(b * Tn + t), bih, bhh, H);
      }
    }
  });

  // Inputs on the tape: [x] w_ih w_hh b_ih b_hh [h0].
  std::vector<Tensor> inputs;
  if (!input.ids) inputs.push_back(*input.x);
  const std::size_t iw = inputs.size();  // index of w_ih; w_hh, b_ih, b_hh follow
  inputs.insert(inputs.end(), {w_ih, w_hh, b_ih, b_hh});
  if (h0.defined()) inputs.push_back(h0);
  const bool dense = !input.ids;
  const bool has_h0 = h0.defined();
  auto ids = input.ids;
  Tensor x = dense ? *input.x : Tensor();
  Tensor result(std::move(out_arr));

  // The backward reads the output (the states h_t) through a weak handle: the output owns this
  // node, so a Tensor captured here would keep both alive in a cycle (framework/tape.hpp).
  const bool h0_slice = has_h0 && h0.dim() == 3;
  DifferentiableBackward differentiable{ids, x, w_ih, w_hh, b_ih, b_hh, h0, init.layer, B, Tn, H};
  return record("gru_fused", result, inputs,
                [saved, ids, x, w_ih, w_hh, iw, dense, has_h0, result_ref = WeakTensor(result),
                 h0_slice, layer = init.layer, differentiable](const Tensor& gout, GradSink& sink) {
    if (sink.create_graph()) {  // a double backward: the same BPTT, written with tapegrad ops
      const std::vector<Tensor> g = differentiable(result_ref.lock(), gout);
      if (dense && sink.needs(0)) sink.add(0, g[0]);
      for (std::size_t i = 0; i < 4; ++i)
        if (sink.needs(iw + i)) sink.add(iw + i, g[1 + i]);
      if (has_h0 && sink.needs(iw + 4)) {
        if (h0_slice) sink.add_narrow(iw + 4, 0, layer, unsqueeze(g[5], 0));
        else sink.add(iw + 4, g[5]);
      }
      return;
    }
    const std::size_t B = saved->B, Tn = saved->Tn, H = saved->H, H3 = 3 * H, H4 = 4 * H;
    const std::size_t in = w_ih.size(1), rows = B * Tn;
    const T* Wih = w_ih.data<T>().data();
    const T* Whh = w_hh.data<T>().data();
    const Tensor result = result_ref.lock();  // alive: the backward pass holds it
    const T* out = result.data<T>().data();  // h_1 … h_T (B, T, H)
    const T* hinit = saved->h0.data();
    const T* go = gout.data<T>().data();     // dL/d(out) (B, T, H)
    // G is turned into the gates' gradients in place, unless the graph is kept for another
    // backward (then a copy is).
    std::unique_ptr<Buffer<T>> copy;
    T* G = saved->G.data();
    if (sink.retain_graph()) {
      copy = std::make_unique<Buffer<T>>(rows * H4);
      std::memcpy(copy->data(), G, rows * H4 * sizeof(T));
      G = copy->data();
    }
    const bool need_h0 = has_h0 && sink.needs(iw + 4);

    const bool need_bias = sink.needs(iw + 2) || sink.needs(iw + 3);
    const bool need_whh = sink.needs(iw + 1);
    const bool scatter = !dense && sink.needs(iw);  // dW_ihᵀ (V, 3H) for one-hot ids
    const bool split = split_batch(3, B, Tn, H);
    const bool engine_dw_hh = PackedGemm<T>::available() && H3 * H * sizeof(T) > (std::size_t(1) << 20);
    // dL/dh_{t−1} += S W_hh at every step: W_hh packed once (packed_gemm.hpp), or BLAS.
    std::optional<PackedGemm<T>> whh_packed;
    Buffer<T> whh_storage(PackedGemm<T>::available() ? PackedGemm<T>::storage_size(H3, H) : 1);
    if (PackedGemm<T>::available())
      whh_packed.emplace(pack_on_two_cores<T>(whh_storage.data(), Whh, H, /*transpose_b=*/false, H3, H));
    Buffer<T> dh_buf(B * H), dhn_buf(B * H), s_buf(B * H3);
    const GateKernel<T>& gates = gate_kernel<T>();
    // Per half of the batch: column sums of G (4H), dW_ihᵀ (V, 3H), dW_hh (3H, H); added up below.
    struct Partial {
      xt::xarray<T> sums, dwt, dw_hh;
    };
    Partial part[2];
    // Allocated here, on the calling thread, and zeroed by each half: an array the helper thread
    // allocated would come fresh from the system at every step (the helper keeps no cache of
    // freed blocks, memory_pool.cpp) and be page-faulted in again: 860 faults a step at L.
    for (std::size_t i = 0; i < (split ? 2u : 1u); ++i) {
      part[i].sums = xt::xarray<T>::from_shape({H4});
      if (scatter) part[i].dwt = xt::xarray<T>::from_shape({in, H3});
      if (need_whh) part[i].dw_hh = xt::xarray<T>::from_shape({H3, H});
    }
    T* dh_final = nullptr;  // dL/dh_0 (B, H) after the loop
    over_batch(B, split, [&](std::size_t b0, std::size_t b1) {
      Partial& mine = part[b0 == 0 ? 0 : 1];
      std::fill(mine.sums.begin(), mine.sums.end(), T(0));
      if (scatter) std::fill(mine.dwt.begin(), mine.dwt.end(), T(0));
      T* dh = dh_buf.data();    // dL/dh_t
      T* dhn = dhn_buf.data();  // dL/dh_{t−1}
      T* S = s_buf.data();      // [da_r | da_z | dgh_n] of this step (B, 3H)
      std::fill(dh + b0 * H, dh + b1 * H, T(0));
      for (std::size_t t = Tn; t-- > 0;) {
        std::size_t ld;
        const T* hprev = previous_states<T>(out, hinit, t, Tn, H, &ld);
        for (std::size_t b = b0; b < b1; ++b) {
          T* row = G + (b * Tn + t) * H4;
          GruRow<T> p{row,           row + H,     row + 2 * H, row + 3 * H, nullptr,
                       hprev + b * ld, dhn + b * H, dh + b * H,  go + (b * Tn + t) * H, S + b * H3,
                       need_bias ? mine.sums.data() : nullptr,
                       scatter ? mine.dwt.data() + std::size_t((*ids)[b * Tn + t]) * H3 : nullptr};
          gates.gru_backward(p, H);  // BPTT through the gates (gru_gates_backward, gate_kernels.inc)
        }
        if (t > 0 || need_h0) {
          if (whh_packed) whh_packed->multiply(b1 - b0, S + b0 * H3, H3, T(1), dhn + b0 * H, H);
          else gemm(false, false, b1 - b0, H, H3, S + b0 * H3, H3, Whh, H, T(1), dhn + b0 * H, H);
        }
        std::swap(dh, dhn);
      }
      if (b0 == 0) dh_final = dh;  // both halves end on the same buffer
      if (!need_whh) return;
      if (engine_dw_hh) return recurrent_weight_gradient<T>(G, out, hinit, has_h0, b0, b1, Tn, H, mine.dw_hh.data());
      // dW_hh = Σ dghᵀ · h_{t−1}, as rows r|z (G columns 0:2H) and rows n (columns 3H:4H): per
      // sequence b, G[b, 1:T] with out[b, 0:T−1] (both contiguous); then G[b0:b1, 0] with h0.
      // The first product of each piece overwrites (beta = 0) instead of adding to zeros.
      if (Tn == 1 && !has_h0) std::fill(mine.dw_hh.begin(), mine.dw_hh.end(), T(0));
      for (std::size_t piece = 0; piece < 2; ++piece) {
        const std::size_t m = piece == 0 ? 2 * H : H, col = piece == 0 ? 0 : 3 * H;
        T* d = mine.dw_hh.data() + (piece == 0 ? 0 : 2 * H * H);
        T beta(0);
        for (std::size_t b = b0; b < b1 && Tn > 1; ++b, beta = T(1))
          gemm(true, false, m, H, Tn - 1, G + (b * Tn + 1) * H4 + col, H4, out + b * Tn * H, H, beta, d, H);
        if (has_h0)
          gemm(true, false, m, H, b1 - b0, G + b0 * Tn * H4 + col, Tn * H4, hinit + b0 * H, H, beta, d, H);
      }
    });
    if (split) {  // add the second half's partial results into the first's
      part[0].sums += part[1].sums;
      if (scatter) part[0].dwt += part[1].dwt;
      if (need_whh) add_on_two_cores(part[0].dw_hh.data(), part[1].dw_hh.data(), part[0].dw_hh.size());
    }
    const T* sums = part[0].sums.data();
    const T* dwt = scatter ? part[0].dwt.data() : nullptr;
    const T* dh = dh_final;

    auto new_grad = [](const Shape& shape) { return xt::xarray<T>::from_shape(shape); };
    if (need_whh) sink.add(iw + 1, Tensor(std::move(part[0].dw_hh)));
    if (need_bias) {  // db_ih = Σ dgi = sums[0:3H]; db_hh = Σ dgh = sums[0:2H] | sums[3H:4H]
      xt::xarray<T> dbi = xt::xarray<T>::from_shape({H3}), dbh = xt::xarray<T>::from_shape({H3});
      std::copy(sums, sums + H3, dbi.data());
      std::copy(sums, sums + 2 * H, dbh.data());
      std::copy(sums + 3 * H, sums + H4, dbh.data() + 2 * H);
      if (sink.needs(iw + 2)) sink.add(iw + 2, Tensor(std::move(dbi)));
      if (sink.needs(iw + 3)) sink.add(iw + 3, Tensor(std::move(dbh)));
    }
    if (sink.needs(iw)) {  // dW_ih = dgiᵀ · x: one GEMM over all B·T rows
      xt::xarray<T> dw = new_grad({H3, in});
      if (dense) {
        gemm(true, false, H3, in, rows, G, H4, x.data<T>().data(), in, T(0), dw.data(), in);
      } else {  // one-hot: dgi rows were added into rows of dW_ihᵀ (V, 3H) above; transpose
        for (std::size_t i = 0; i < H3; ++i)
          for (std::size_t v = 0; v < in; ++v) dw.data()[i * in + v] = dwt[v * H3 + i];
      }
      sink.add(iw, Tensor(std::move(dw)));
    }
    if (dense && sink.needs(0)) {  // dx = dgi · W_ih: one GEMM over all B·T rows
      xt::xarray<T> dx = new_grad({B, Tn, in});
      gemm(false, false, rows, in, H3, G, H4, Wih, in, T(0), dx.data(), in);
      sink.add(0, Tensor(std::move(dx)));
    }
    if (need_h0) {
      xt::xarray<T> d0 = new_grad(h0_slice ? Shape{1, B, H} : Shape{B, H});
      std::memcpy(d0.data(), dh, B * H * sizeof(T));
      if (h0_slice)
        sink.add_narrow(iw + 4, 0, layer, Tensor(std::move(d0)));
      else
        sink.add(iw + 4, Tensor(std::move(d0)));
    }
  });
}

/// Checks the weights and h0 of one layer; returns H.
std::size_t check_layer(const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh,
                        const InitialState& init, std::size_t B) {
  const Tensor& h0 = init.h0;
  const char* op = "gru_fused";
  for (const Tensor* t : {&w_ih, &w_hh, &b_ih, &b_hh}) detail::require_defined(*t, op, "weight");
  for (const Tensor* t : {&w_hh, &b_ih, &b_hh}) detail::require_same_dtype(w_ih, *t, op);
  if (w_hh.dim() != 2 || w_hh.size(0) != 3 * w_hh.size(1))
    throw ShapeError(fmt::format("{}: w_hh must be (3H, H), got {}", op, shape_str(w_hh.shape())));
  const std::size_t H = w_hh.size(1);
  if (w_ih.dim() != 2 || w_ih.size(0) != 3 * H || b_ih.shape() != Shape{3 * H} ||
      b_hh.shape() != Shape{3 * H})
    throw ShapeError(fmt::format("{}: expected w_ih (3H, in), b_ih and b_hh (3H) with H = {}; got {}, "
                                 "{}, {}",
                                 op, H, shape_str(w_ih.shape()), shape_str(b_ih.shape()),
                                 shape_str(b_hh.shape())));
  if (h0.defined()) {
    detail::require_same_dtype(w_ih, h0, op);
    const bool ok = h0.dim() == 3 ? h0.shape()[1] == B && h0.shape()[2] == H && init.layer < h0.shape()[0]
                                  : h0.shape() == Shape{B, H};
    if (!ok)
      throw ShapeError(fmt::format("{}: expected h0 of shape ({}, {}), got {}", op, B, H,
                                   shape_str(h0.shape())));
  }
  return H;
}

Tensor fused_layer(const LayerInput& in, std::size_t B, std::size_t Tn, const Tensor& w_ih,
                   const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh, const InitialState& init);

/// Runs the layers of `gru` (layer 0 reads `input0`) and assembles Output like GRU. A reverse
/// direction is the same kernel run over the time-reversed sequence, its states reversed back
/// (index_select along time: ordinary tape ops, so gradients flow as in the composed GRU).
GRU::Output run_layers(const GRU& gru, std::size_t B, std::size_t Tn, DType dtype, const Tensor& h0,
                       const LayerInput& input0) {
  const std::size_t L = gru.options.num_layers(), H = gru.options.hidden_size(),
                    D = gru.options.bidirectional() ? 2 : 1;
  if (!gru.options.reset_after())
    throw ValueError("gru_fused: only the reset-after GRU (PyTorch's, reset_after = true) is fused; "
                     "use the composed GRU for reset_after = false");
  detail::check_gru_h0(gru.options, h0, B);
  if (gru.weight_ih[0].dtype() != dtype)
    throw DTypeError(fmt::format("GRU: input is {} but the weights are {}", dtype_name(dtype),
                                 dtype_name(gru.weight_ih[0].dtype())));
  std::vector<std::int64_t> reversed(Tn);  // time positions T−1 … 0
  for (std::size_t t = 0; t < Tn; ++t) reversed[t] = std::int64_t(Tn - 1 - t);
  GRU::Output out;
  out.fused = true;
  out.steps.set_fused();  // per-step tensors: composed path only
  std::vector<Tensor> last;  // h_T of each layer and direction (1, B, H)
  for (std::size_t k = 0; k < L; ++k) {
    std::vector<Tensor> directions;  // each (B, T, H) in time order
    for (std::size_t d = 0; d < D; ++d) {
      const std::size_t j = k * D + d;
      const InitialState init{h0, j};  // reads h0[j] in place
      LayerInput in = input0;
      Tensor x_reversed;
      if (k > 0) in = LayerInput{&out.output, nullptr};  // the layer below, (B, T, D·H)
      if (d == 1) {  // the reverse direction reads x_T first
        if (in.ids) {
          auto ids = std::make_shared<std::vector<std::int64_t>>(B * Tn);
          for (std::size_t b = 0; b < B; ++b)
            for (std::size_t t = 0; t < Tn; ++t) (*ids)[b * Tn + t] = (*in.ids)[b * Tn + Tn - 1 - t];
          in.ids = std::move(ids);
        } else {
          x_reversed = index_select(*in.x, 1, reversed);
          in.x = &x_reversed;
        }
      }
      Tensor states = fused_layer(in, B, Tn, gru.weight_ih[j], gru.weight_hh[j], gru.bias_ih[j],
                                  gru.bias_hh[j], init);  // in the direction's reading order
      // h_T = states[:, T−1] as (1, B, H): (B, 1, H) and (1, B, H) share their element order.
      last.push_back(reshape(narrow(states, 1, Tn - 1, 1), Shape{1, B, H}));
      directions.push_back(d == 1 ? index_select(states, 1, reversed) : states);
    }
    out.output = D == 1 ? directions[0] : concat(directions, -1);  // the next layer's input
  }
  out.h_n = last.size() == 1 ? last[0] : concat(last, 0);  // (L·D, B, H)
  return out;
}

/// Checks one layer's input and runs it (float32 or float64).
Tensor fused_layer(const LayerInput& in, std::size_t B, std::size_t Tn, const Tensor& w_ih,
                   const Tensor& w_hh, const Tensor& b_ih, const Tensor& b_hh, const InitialState& init) {
  check_layer(w_ih, w_hh, b_ih, b_hh, init, B);
  if (Tn == 0 || B == 0) throw ShapeError("gru_fused: the sequence is empty");
  if (in.x) {
    const Tensor& x = *in.x;
    detail::require_same_dtype(x, w_ih, "gru_fused");
    if (x.size(2) != w_ih.size(1))
      throw ShapeError(fmt::format("gru_fused: x {} does not match w_ih {} (input size)",
                                   shape_str(x.shape()), shape_str(w_ih.shape())));
  } else {
    const std::size_t V = w_ih.size(1);
    const std::vector<std::int64_t>& ids = *in.ids;
    if (ids.size() != B * Tn)
      throw ShapeError(fmt::format("gru_fused: {} ids for B = {}, T = {}", ids.size(), B, Tn));
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < 0 || std::size_t(ids[i]) >= V)
        throw IndexError(fmt::format("gru_fused: id {} at position {} is out of range for V = {}",
                                     ids[i], i, V));
  }
  return detail::dispatch(w_ih.dtype(), [&](auto tag) {
    return layer_forward<decltype(tag)>(in, B, Tn, w_ih, w_hh, b_ih, b_hh, init);
  });
}

}  // namespace

Tensor gru_layer_fused(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                       const Tensor& b_hh, const Tensor& h0) {
  detail::require_defined(x, "gru_fused", "x");
  if (x.dim() != 3)
    throw ShapeError(fmt::format("gru_fused: expected x of shape (B, T, in), got {}", shape_str(x.shape())));
  if (h0.defined() && h0.dim() != 2)
    throw ShapeError(fmt::format("gru_fused: expected h0 of shape (B, H), got {}", shape_str(h0.shape())));
  LayerInput in;
  in.x = &x;
  return fused_layer(in, x.size(0), x.size(1), w_ih, w_hh, b_ih, b_hh, {h0, 0});
}

Tensor gru_layer_fused_ids(const std::vector<std::int64_t>& ids, std::size_t B, std::size_t Tn,
                           const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                           const Tensor& b_hh, const Tensor& h0) {
  if (h0.defined() && h0.dim() != 2)
    throw ShapeError(fmt::format("gru_fused: expected h0 of shape (B, H), got {}", shape_str(h0.shape())));
  LayerInput in;
  in.ids = std::make_shared<const std::vector<std::int64_t>>(ids);
  return fused_layer(in, B, Tn, w_ih, w_hh, b_ih, b_hh, {h0, 0});
}

GRU::Output gru_forward_fused(const GRU& gru, const Tensor& x, const Tensor& h0) {
  detail::check_gru_input(gru.options, x);
  return run_layers(gru, x.size(0), x.size(1), x.dtype(), h0, LayerInput{&x, nullptr});
}

GRU::Output gru_forward_ids_fused(const GRU& gru, const std::vector<std::int64_t>& ids, std::size_t B,
                                  std::size_t Tn, std::size_t V, const Tensor& h0) {
  detail::check_gru_ids(gru.options, ids, B, Tn, V);
  return run_layers(gru, B, Tn, gru.weight_ih[0].dtype(), h0,
                    LayerInput{nullptr, std::make_shared<const std::vector<std::int64_t>>(ids)});
}

}  // namespace tapegrad
