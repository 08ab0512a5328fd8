// tapegrad — the gate passes of the fused recurrences (gru_fused.cpp, lstm_fused.cpp): for one
// batch row of one step, the gates' nonlinearities and their products forward, and BPTT through
// them backward. Internal to layers/fast/ (not part of the public API).
//
// Like the engine's GEMM kernel (framework/packed_gemm.hpp), the passes are compiled more than
// once (gate_kernels.inc): with the build's own flags (gate_kernels_native.cpp) and, on x86-64,
// once for AVX2 + FMA and once for AVX-512 (gate_kernels_avx2.cpp, gate_kernels_avx512.cpp). A
// portable build (the Debian package's: SSE2) then runs its exp and divisions on the widest
// vectors the CPU has instead of 128-bit ones. They run on the instruction set of the process's
// GEMM kernel (TAPEGRAD_GEMM_KERNEL: native, avx512 or avx2); where every product goes to BLAS,
// on the widest build the CPU runs (native when that is as wide). Different builds round the
// exponential's polynomial differently (with or without fused multiply-adds): their results agree
// to a few ulp, not bit for bit (tests/test_gate_kernels.cpp).
#pragma once

#include <cstddef>
#include <vector>

namespace tapegrad::fused {

/// One batch row of one step of the fused GRU (each pointer H long, disjoint; see gru_fused.cpp).
template <class T>
struct GruRow {
  T* r;        // G: (gi_r →) r → da_r
  T* z;        // G: (gi_z →) z → da_z
  T* n;        // G: (gi_n →) n → da_n
  T* gn;       // G: gh_n → dgh_n
  const T* gh; // h_{t−1} W_hhᵀ (3H), forward only
  const T* hp; // h_{t−1}
  T* h;        // forward: h_t; backward: dL/dh_{t−1} (the direct part, dh ⊙ z)
  const T* d;  // backward: dL/dh_t carried from step t+1
  const T* go; // backward: dL/d(out) at step t
  T* s;        // backward: [da_r | da_z | dgh_n] (3H) for the dh_{t−1} GEMM
  T* sums;     // backward: column sums of G's new rows (4H) (→ db_ih, db_hh), or null
  T* dwt;      // backward, one-hot ids: row id of dW_ihᵀ (3H) += [da_r | da_z | da_n], or null
};

/// One batch row of one step of the fused LSTM (see lstm_fused.cpp).
template <class T>
struct LstmRow {
  T* g;         // G row (5H): a → [i | f | g | o | tanh(c_t)] → [da_i | da_f | da_g | da_o | ·]
  const T* cp;  // c_{t−1} (H)
  T* y;         // forward: Y row [h_t | c_t] (2H)
  const T* gy;  // backward: dL/dY row (2H)
  const T* dh;  // backward: dL/dh_t carried from step t+1 (H)
  T* dc;        // backward: dL/dc_t carried from step t+1 in, dL/dc_{t−1} out (H)
  T* sums;      // backward: column sums of da (4H) (→ db_ih = db_hh), or null
};

/// One compiled build of the gate passes, as plain functions (gate_kernels.inc fills it).
template <class T>
struct GateKernel {
  const char* name;  // "native", "avx512", "avx2"
  int bits;          // vector width
  /// GRU forward of row p: gi = the row's x W_ihᵀ (3H), biases b_ih and b_hh (3H each).
  void (*gru_forward)(const GruRow<T>& p, const T* gi, const T* bih, const T* bhh, std::size_t H);
  /// GRU BPTT through the gates of row p.
  void (*gru_backward)(const GruRow<T>& p, std::size_t H);
  /// LSTM forward of row p: bias = b_ih + b_hh (4H).
  void (*lstm_forward)(const LstmRow<T>& p, const T* bias, std::size_t H);
  /// LSTM BPTT through the gates of row p.
  void (*lstm_backward)(const LstmRow<T>& p, std::size_t H);
};

/// What one compiled build provides, for float and double.
struct GateKernels {
  const GateKernel<float>* f32;
  const GateKernel<double>* f64;
};

/// Every build of the gate passes this CPU runs, widest first (native always among them).
template <class T>
const std::vector<const GateKernel<T>*>& gate_kernels();

/// The build for a GEMM kernel's name (framework/packed_gemm.hpp's gemm_kernel_name():
/// "native", "avx512", "avx2", or "blas" for the widest build this CPU runs).
template <class T>
const GateKernel<T>& choose_gate_kernel(const char* gemm_kernel);

/// The build this process uses, chosen at the first call from the process's GEMM kernel.
template <class T>
const GateKernel<T>& gate_kernel();

}  // namespace tapegrad::fused
