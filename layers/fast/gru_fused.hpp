// tapegrad — the fused GRU fast path: one tape node per layer per sequence, with a hand-written
// forward (BLAS + vectorised gate loops) and a hand-written BPTT backward.
//
// The composed GRU (layers/gru.hpp) stays the teaching path: it builds every
// step from sigmoid, tanh, mul, add... on the tape, so hooks, retain_grad and gate recording
// see every h_t. This file computes exactly the same function (PyTorch's equations,
// reset_after = true) for speed, and tests/test_gru_fused.cpp proves values and gradients equal
// to the composed GRU (float64 to ~1e-12, float32 to ~1e-5) for 1 and 2 layers, one-hot ids and
// dense inputs, with and without h0.
//
// Why one node per layer per *sequence* (not per step): a per-step node would still need a
// select of the (B, T, 3H) projection and a stack of the T outputs on the tape, and would run
// T small backward calls instead of one; per sequence, the T steps share three buffers and the
// weight gradients become one GEMM each over all B·T rows. What the caller sees is unchanged:
// the node's output is the (B, T, H) sequence, a normal tape tensor; h_n is taken from it with
// narrow/reshape (ordinary nodes, whose gradients flow back into the same node), and layer k
// reads h0[k] of the (L, B, H) h0 in place (its gradient is added in place into that slice).
// What is lost: the per-step tensors (Output::steps is empty) — use the composed GRU for hooks
// on h_t, retain_grad and gate records.
//
// Layer equations (B batch, T time, H hidden, in input size; rows of W and b in order r|z|n):
//   gi_t = x_t W_ihᵀ + b_ih                  all T steps at once; for one-hot ids, the rows
//                                            of W_ihᵀ are gathered instead (no GEMM)
//   gh_t = h_{t−1} W_hhᵀ + b_hh              one product (B×H · H×3H) per step, W_hh packed
//                                            once per pass (framework/packed_gemm.hpp)
//   r = σ(gi_r + gh_r),  z = σ(gi_z + gh_z),  n = tanh(gi_n + r ⊙ gh_n),  h_t = n + z ⊙ (h_{t−1} − n)
//
// Saved for backward: the output itself (h_1 … h_T, batch-first (B, T, H): h_{t−1} of every
// sequence is a (B × H) matrix with leading dimension T·H, which BLAS reads in place), h0 (B, H)
// (zeros when undefined), and one work array
//   G  (B, T, 4H)    per row [r | z | n | gh_n]; for a dense input the forward first computes
//                    gi into the first 3H columns (one GEMM) and overwrites it in place with
//                    r, z, n; for one-hot ids the gate pass reads gi as a row of W_ihᵀ.
// Backward (BPTT by hand), for t = T−1 … 0 with dh = dL/dh_t:
//   dn = dh ⊙ (1 − z),  dz = dh ⊙ (h_{t−1} − n),  da_n = dn ⊙ (1 − n²)
//   da_r = da_n ⊙ gh_n ⊙ r(1 − r),  da_z = dz ⊙ z(1 − z),  dgh_n = da_n ⊙ r
//   dh_{t−1} = dh ⊙ z + [da_r | da_z | dgh_n] W_hh      (one GEMM, beta = 1)
// and the row of G becomes [da_r | da_z | da_n | dgh_n] (its column sums, and for one-hot ids
// its scatter into dW_ihᵀ, are accumulated in the same pass), so that afterwards
//   dgi = G[:, :, 0:3H] and dgh = G[:, :, 0:2H] | G[:, :, 3H:4H]
//   dW_hh = dghᵀ · h_{t−1}   (per sequence: G[b, 1:T] with out[b, 0:T−1]; plus G[:, 0] with h0)
//   dW_ih = dgiᵀ · x, dx = dgi · W_ih   (one GEMM each over all B·T rows; transpose flags)
//   db_ih, db_hh = column sums;  dh0 = dh after step 0.
// The backward reuses G in place unless the pass retains the graph (then it copies G first).
// Sequences are independent: on two cores, when 3H·H·B·T is large, the forward and the backward
// loops run as two halves of the batch on two threads (single-threaded BLAS in each), with no
// synchronisation inside the T-step loops; the halves' bias sums and weight gradients are added.
//
// Double backward: the BLAS backward above is not itself on the tape, so during a create_graph
// backward the node runs the same BPTT written with tapegrad ops instead (the gates recomputed from
// the saved inputs and states): slower, but every gradient it returns is differentiable again
// (gradgradcheck, Hessian-vector products; tests/test_gru_fused.cpp compares both orders with the
// composed GRU).
//
// GRU::forward calls these on its own (GRU::Path::Auto) whenever nothing needs the per-step graph.
// Bidirectional: the reverse direction is the same kernel over the time-reversed sequence, its
// states reversed back (index_select along time). Limits: reset_after = true only (ValueError
// otherwise; Auto then runs the composed GRU).
#pragma once

#include <cstdint>
#include <vector>

#include "framework/tensor.hpp"
#include "layers/gru.hpp"

namespace tapegrad {

/// One GRU layer over a batch-first sequence as one tape node "gru_fused".
/// x (B, T, in); weights as in GRU (w_ih (3H, in), w_hh (3H, H), b_ih, b_hh (3H));
/// h0 (B, H) or undefined (zeros). Returns h_1 … h_T as (B, T, H).
Tensor gru_layer_fused(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                       const Tensor& b_hh, const Tensor& h0 = Tensor());

/// The same for one-hot inputs given as ids (B·T integers in [0, V), row-major (B, T)), where
/// V = w_ih.size(1): gathers columns of w_ih instead of multiplying by a one-hot matrix.
Tensor gru_layer_fused_ids(const std::vector<std::int64_t>& ids, std::size_t B, std::size_t T,
                           const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih,
                           const Tensor& b_hh, const Tensor& h0 = Tensor());

/// gru.forward(x, h0) through fused layers: same output and h_n (and gradients); steps is empty.
GRU::Output gru_forward_fused(const GRU& gru, const Tensor& x, const Tensor& h0 = Tensor());
/// gru.forward_ids(ids, B, T, V, h0) through fused layers; steps is empty.
GRU::Output gru_forward_ids_fused(const GRU& gru, const std::vector<std::int64_t>& ids,
                                  std::size_t B, std::size_t T, std::size_t V,
                                  const Tensor& h0 = Tensor());

}  // namespace tapegrad
