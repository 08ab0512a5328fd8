// tapegrad — what the fused recurrent kernels (gru_fused.cpp, lstm_fused.cpp) share besides their
// gate passes (gate_kernels.hpp): a pool for their big buffers, the split of a batch over two
// cores, and the recurrent weight's per-step products. Internal to layers/fast/ (not part of the
// public API).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstddef>
#include <mutex>
#include <new>
#include <optional>
#include <utility>
#include <vector>

#include "framework/blas.hpp"
#include "framework/packed_gemm.hpp"
#include "framework/parallel.hpp"

namespace tapegrad::fused {

// ---- an arena for the big buffers -------------------------------------------------------------
// A training step of L (B = 64, T = 64, H = 512) saves ~40 MB per layer. Allocations that large
// are fresh mmaps, page-faulted in at every step; keeping the few blocks a step needs and handing
// them out again makes the steady state allocation-free (and the peak RSS stable).

class BlockPool {
 public:
  static BlockPool& get() {
    static BlockPool pool;
    return pool;
  }
  /// False once the pool has been destroyed at exit: later releases free their block directly.
  static bool& alive() {
    static bool flag = true;  // trivially destructible: still readable during exit
    return flag;
  }
  ~BlockPool() {  // give the kept blocks back (leak checkers and valgrind see no leak)
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& block : free_) std::free(block.second);
    free_.clear();
    alive() = false;
  }
  void* acquire(std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (std::size_t i = 0; i < free_.size(); ++i)
        if (free_[i].first == bytes) {
          void* p = free_[i].second;
          free_.erase(free_.begin() + std::ptrdiff_t(i));
          return p;
        }
    }
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void release(void* p, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.emplace_back(bytes, p);
    if (free_.size() > kKeep) {  // keep the most recent blocks
      std::free(free_.front().second);
      free_.erase(free_.begin());
    }
  }

 private:
  static constexpr std::size_t kKeep = 16;
  std::mutex mu_;
  std::vector<std::pair<std::size_t, void*>> free_;
};

/// An uninitialised array of n T from the pool, returned to it on destruction.
template <class T>
class Buffer {
 public:
  explicit Buffer(std::size_t n) : n_(n), p_(static_cast<T*>(BlockPool::get().acquire(bytes()))) {}
  ~Buffer() {
    if (BlockPool::alive())
      BlockPool::get().release(p_, bytes());
    else
      std::free(p_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* data() { return p_; }
  const T* data() const { return p_; }

 private:
  std::size_t bytes() const { return std::max<std::size_t>(n_, 1) * sizeof(T); }
  std::size_t n_;
  T* p_;
};

/// The recurrences of different sequences are independent, so with two cores the batch is split
/// in two halves that run on two threads with no synchronisation inside the T-step loops (both
/// threads then call single-threaded BLAS: OneBlasThread). Worth it when the layer's recurrent
/// work gates·H·H·B·T (3 gates for the GRU, 4 for the LSTM) is large. The second thread is the
/// engine's helper (framework/parallel.hpp); the engine's own GEMMs inside either half stay on
/// one thread, since the helper is then busy.
inline bool split_batch(std::size_t gates, std::size_t B, std::size_t Tn, std::size_t H) {
  return detail::have_two_cores() && B >= 2 && gates * H * H * B * Tn >= (std::size_t(1) << 23);
}

/// C (m × n) = A (m × k) · Bᵀ + beta · C with B given as Bᵀ (n × k), for a step of so few rows
/// that packing B would cost more than the product (PackedGemm::multiply_unpacked: the kernel's
/// own sums, so the same bits). From 2^18 multiply-adds (one row at H = 512 has 786,432) its
/// columns run as two halves on two cores: each element is its own sum, so the halves change no
/// bit. (Inside a half of over_batch the helper is busy and both halves run here, one after the
/// other.)
template <class T>
void unpacked_product(std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t lda,
                      const T* bt, std::size_t ldbt, T beta, T* c, std::size_t ldc) {
  using P = detail::PackedGemm<T>;
  const std::size_t mid = n / 2 / 8 * 8;
  if (m * n * k < (std::size_t(1) << 18) || mid == 0 || !detail::have_two_cores())
    return P::multiply_unpacked(m, n, k, a, lda, bt, ldbt, beta, c, ldc);
  auto half = [&](int h) {
    if (h == 0) P::multiply_unpacked(m, mid, k, a, lda, bt, ldbt, beta, c, ldc);
    else P::multiply_unpacked(m, n - mid, k, a, lda, bt + mid * ldbt, ldbt, beta, c + mid, ldc);
  };
  detail::two_halves(half);
}

/// dst[i] += src[i] for i < n, the two halves of the range on the engine's two cores when large
/// (split_elements: the GRU's two partial dW_hh at H = 512 are 786,432 elements). Each element
/// is one rounding whichever thread adds it.
template <class T>
void add_on_two_cores(T* dst, const T* src, std::size_t n) {
  auto range = [dst, src](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) dst[i] += src[i];
  };
  detail::split_elements(n, 16, range);
}

/// Packs B (k × n; given as Bᵀ when transpose_b) into `storage` for PackedGemm, the panels split
/// over the engine's two threads when there are enough of them (from 1 MiB of panels: the
/// recurrent weight at H = 512 is 3 MiB, packed before every forward and backward of a fused
/// layer, ~1 ms on one thread). Packing is a copy: the panels are the same whoever writes them.
template <class T>
detail::PackedGemm<T> pack_on_two_cores(T* storage, const T* b, std::size_t ldb, bool transpose_b,
                                       std::size_t k, std::size_t n) {
  using P = detail::PackedGemm<T>;
  const std::size_t panels = P::panels(n);
  if (panels < 2 || P::storage_size(k, n) * sizeof(T) < (std::size_t(1) << 20) || !detail::have_two_cores()) {
    P::pack_panels(storage, b, ldb, transpose_b, k, n, 0, panels);
  } else {
    auto half = [&](int h) {
      if (h == 0) P::pack_panels(storage, b, ldb, transpose_b, k, n, 0, panels / 2);
      else P::pack_panels(storage, b, ldb, transpose_b, k, n, panels / 2, panels);
    };
    detail::two_halves(half);
  }
  return P(storage, k, n);
}

/// A fused layer's recurrent weight W (n × k, as stored: W_hh) for the forward's per-step
/// products h_{t−1} Wᵀ: packed once for the engine's kernel (packed_gemm.hpp), or BLAS where the
/// process has no kernel. A forward of fewer than 4 rows in all (B · T < 4: sampling one character
/// at a time) forms the kernel's own sums from W where it is (unpacked_product), since packing
/// would cost more than the products it serves; the bits are the same either way.
template <class T>
class StepWeight {
 public:
  StepWeight(const T* w, std::size_t n, std::size_t k, std::size_t rows)
      : w_(w), n_(n), k_(k), pack_(detail::PackedGemm<T>::available() && rows >= 4),
        storage_(pack_ ? detail::PackedGemm<T>::storage_size(k, n) : 1) {
    if (pack_) packed_.emplace(pack_on_two_cores<T>(storage_.data(), w, k, /*transpose_b=*/true, k, n));
  }

  /// C (m × n, ldc) = A (m × k, lda) · Wᵀ + beta · C.
  ///
  /// A step of fewer rows than the kernel's register block (one sequence: `char_gru score`, the
  /// held-out loss after training) against a large weight (from 2^18 multiply-adds: one row at
  /// H = 512 is 786,432) reads the whole packed weight to do little arithmetic with it. Its
  /// panels then run as two halves on the two cores, each core always the same half, so that
  /// each keeps its half in its own L2 from step to step (the GRU's 3 MiB at H = 512 do not fit
  /// one core's 2 MiB; 1.5 MiB do). Splitting the panels changes no bit (packed_gemm.hpp).
  /// (Inside a half of over_batch the helper is busy and both halves run here, one after the other.)
  void multiply(std::size_t m, const T* a, std::size_t lda, T beta, T* c, std::size_t ldc) const {
    const std::size_t panels = packed_ ? detail::PackedGemm<T>::panels(n_, &packed_->kernel()) : 0;
    if (packed_ && m < packed_->kernel().MR && m * n_ * k_ >= (std::size_t(1) << 18) && panels >= 2 && detail::have_two_cores()) {
      auto half = [&](int h) {
        if (h == 0) packed_->multiply_panels(0, panels / 2, m, a, lda, beta, c, ldc);
        else packed_->multiply_panels(panels / 2, panels, m, a, lda, beta, c, ldc);
      };
      detail::two_halves(half);
    } else if (packed_) packed_->multiply(m, a, lda, beta, c, ldc);
    else if (detail::PackedGemm<T>::available()) unpacked_product<T>(m, n_, k_, a, lda, w_, k_, beta, c, ldc);
    else detail::gemm(false, true, m, n_, k_, a, lda, w_, k_, beta, c, ldc);
  }

 private:
  const T* w_;
  std::size_t n_, k_;
  bool pack_;
  Buffer<T> storage_;
  std::optional<detail::PackedGemm<T>> packed_;
};

/// Runs f(b0, b1) on [0, B): as two halves on two threads when split, else once here.
template <class F>
void over_batch(std::size_t B, bool split, F&& f) {
  if (!split) {
    f(std::size_t(0), B);
    return;
  }
  detail::OneBlasThread one_blas_thread;
  auto half = [&](int h) { h == 0 ? f(B / 2, B) : f(std::size_t(0), B / 2); };
  detail::two_halves(half);  // the engine's helper thread (framework/parallel.hpp)
}

}  // namespace tapegrad::fused
