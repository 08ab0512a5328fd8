// tapegrad — the fused LSTM fast path: one tape node per layer and direction per sequence, with a
// hand-written forward (BLAS + vectorised gate loops) and a hand-written BPTT backward. It is
// the LSTM's default (LSTM::Path::Auto); the composed LSTM (layers/lstm.cpp, every step built from
// matmul, sigmoid, tanh, mul and add on the tape) computes the same function and stays the one to
// read. tests/test_lstm_fused.cpp proves values and gradients equal (float64 ~1e-12, float32
// ~1e-5) for 1 and 2 layers, one and two directions, with and without h0 / c0, B = 1 and B = 3,
// batch-first or not, and first and second derivatives (gradgradcheck).
//
// Why it is faster than the composed LSTM (docs/performance.md has the numbers): the composed
// layer records ~15 tape nodes per step and computes the weight gradient dW_hh as T thin GEMMs
// (4H × H × B each); here the T steps share one work array, the gates are one vectorised pass per
// step, the per-step products read a weight packed once per pass instead of repacked by BLAS at
// every step, and the weight gradients are one GEMM each over all B·T rows. With two cores and
// enough work, the batch runs as two halves on two threads (fused_kernels.hpp), and the weight
// gradients as two halves of the gate rows.
//
// Layer equations (B batch, T time, H hidden, in input size; rows of W and b in order i|f|g|o):
//   a_t = x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh     x W_ihᵀ for all T steps is one GEMM, then
//                                                    one product (B×H · H×4H) per step, W_hh
//                                                    packed once per pass (framework/packed_gemm.hpp)
//   i, f, o = σ(a_i, a_f, a_o),  g = tanh(a_g)
//   c_t = f ⊙ c_{t−1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)
//
// The node's output is Y (B, T, 2H), per row [h_t | c_t]: the states h (the layer's output) and c
// (c_T is c_n) are narrow()ed out of it, ordinary tape ops whose gradients flow back into Y.
// Saved for backward: Y itself, h0 and c0 (B, H) each (zeros when undefined), and one work array
//   G  (B, T, 5H)    per row [i | f | g | o | tanh(c_t)]; the forward GEMMs write the
//                    pre-activations a into the first 4H columns, the gate pass overwrites them.
// Backward (BPTT by hand), for t = T−1 … 0, with dh = dL/dh_t (from Y and from step t+1) and
// dc = dL/dc_t (from Y, from step t+1, and through h_t):
//   da_o = dh ⊙ tanh(c_t) ⊙ o(1 − o),  dc += dh ⊙ o ⊙ (1 − tanh²(c_t))
//   da_i = dc ⊙ g ⊙ i(1 − i),  da_f = dc ⊙ c_{t−1} ⊙ f(1 − f),  da_g = dc ⊙ i ⊙ (1 − g²)
//   dL/dc_{t−1} = dc ⊙ f,   dL/dh_{t−1} = [da_i | da_f | da_g | da_o] W_hh   (one GEMM)
// and the row of G becomes da = [da_i | da_f | da_g | da_o] (its column sums, db_ih = db_hh, are
// accumulated in the same pass); afterwards
//   dW_ih = daᵀ · x and dx = da · W_ih   (one GEMM each over all B·T rows)
//   dW_hh = daᵀ · h_{t−1}                (h_{t−1} of every row gathered from h0 and Y first)
//   dh0, dc0 = the carried gradients after step 0.
// Double backward: as the fused GRU's, a create_graph backward runs the same BPTT written with
// tapegrad ops (slower; every gradient it returns is differentiable again).
#pragma once

#include "framework/tensor.hpp"
#include "layers/lstm.hpp"

namespace tapegrad {

/// lstm.forward(x, h0, c0) through fused layers (any LSTMOptions): the same output, h_n and c_n,
/// and the same gradients.
LSTM::Output lstm_forward_fused(const LSTM& lstm, const Tensor& x, const Tensor& h0 = Tensor(),
                                const Tensor& c0 = Tensor());

}  // namespace tapegrad
