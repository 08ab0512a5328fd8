// tapegrad — GEMM through OpenBLAS (see blas.hpp).
#include "framework/blas.hpp"

#include "framework/packed_gemm.hpp"
#include "framework/parallel.hpp"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// OpenBLAS's call that stops its worker threads (the one its own fork handler makes). Weak: a
// BLAS without it leaves it null, and nothing is stopped.
extern "C" int blas_thread_shutdown_(void) __attribute__((weak));

namespace tapegrad::detail {

namespace {

/// OpenBLAS's thread count as the program configured it (OPENBLAS_NUM_THREADS, else the
/// cores), read when this library is loaded; 1 from then on while nothing big is multiplied.
///
/// The engine gives OpenBLAS's own threads only products of kSmallProduct multiply-adds and more
/// (below that it runs its own two halves, each on one OpenBLAS thread, or one call on one). But
/// OpenBLAS starts its worker threads when it is loaded, and each spins in sched_yield for about
/// 0.1 s waiting for a first job — and again after every openblas_set_num_threads that raises
/// the count back. On two cores that third thread took time from the engine's two: the
/// composed GRU's M benchmark (0.6 s of training) ran ~12 % faster with OPENBLAS_NUM_THREADS=1
/// (docs/performance.md, session 20). So with OpenBLAS's pthreads build, the count is set to 1
/// and the workers stopped here, before any thread of the program can be inside OpenBLAS; a
/// product of kSmallProduct and more raises the count to the configured one for its call
/// (ProductThreads), which starts them again. The bits are those of before: smaller products
/// ran on one OpenBLAS thread already. (A program that wants OpenBLAS on one thread for its own
/// big products too sets OPENBLAS_NUM_THREADS=1.)
const int configured_blas_threads = [] {
  const int n = openblas_get_num_threads();
  if (n > 1 && openblas_get_parallel() == 1 && blas_thread_shutdown_ != nullptr) {
    openblas_set_num_threads(1);  // first: a later call would start the workers again
    blas_thread_shutdown_();
  }
  return n;
}();

/// OneBlasThread scopes open now, on any thread (their halves call gemm() on the helper too).
std::atomic<int> one_blas_thread_scopes{0};

/// The enclosing call's OpenBLAS thread count: one for a product below kSmallProduct
/// multiply-adds, the configured count (above) for a bigger one, except inside a OneBlasThread
/// scope (the engine's own two threads each multiplying: the fused LSTM's per-half weight
/// gradients reach 2^29 at H = 512, and two OpenBLAS pools at once took 55 ms a step instead of
/// 40); restored afterwards.
class ProductThreads {
 public:
  explicit ProductThreads(std::size_t macs) : previous_(openblas_get_num_threads()) {
    const bool big = macs >= kSmallProduct && one_blas_thread_scopes.load(std::memory_order_relaxed) == 0;
    const int want = big ? std::max(previous_, configured_blas_threads) : 1;
    if (want != previous_) openblas_set_num_threads(want);
    else previous_ = 0;  // nothing to restore
  }
  ~ProductThreads() {
    if (previous_ > 0) openblas_set_num_threads(previous_);
  }
  ProductThreads(const ProductThreads&) = delete;
  ProductThreads& operator=(const ProductThreads&) = delete;

 private:
  int previous_;
};

CBLAS_TRANSPOSE flag(bool t) { return t ? CblasTrans : CblasNoTrans; }

void gemv(bool t, std::size_t m, std::size_t n, const float* a, std::size_t lda, const float* x,
          std::size_t incx, float beta, float* y) {
  cblas_sgemv(CblasRowMajor, flag(t), int(m), int(n), 1.0f, a, int(lda), x, int(incx), beta, y, 1);
}
void gemv(bool t, std::size_t m, std::size_t n, const double* a, std::size_t lda, const double* x,
          std::size_t incx, double beta, double* y) {
  cblas_dgemv(CblasRowMajor, flag(t), int(m), int(n), 1.0, a, int(lda), x, int(incx), beta, y, 1);
}
void gemm_call(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a,
               std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, flag(ta), flag(tb), int(m), int(n), int(k), 1.0f, a, int(lda), b,
              int(ldb), beta, c, int(ldc));
}
void gemm_call(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const double* a,
               std::size_t lda, const double* b, std::size_t ldb, double beta, double* c,
               std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, flag(ta), flag(tb), int(m), int(n), int(k), 1.0, a, int(lda), b,
              int(ldb), beta, c, int(ldc));
}

/// C = op(A)·op(B) + beta·C for a product of at most kTinyProduct multiply-adds, with the loops
/// ordered so that the innermost one walks contiguous memory (the compiler vectorises it): rows
/// of B are added into a row of C when B is not transposed, dot products of contiguous rows
/// otherwise. (One loop with the transposes tested inside it ran ~3× slower: it took a third of
/// the date-translation example's time.)
template <class T>
void tiny_gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* a,
               std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  for (std::size_t i = 0; i < m; ++i) {
    T* c_row = c + i * ldc;
    if (!tb) {  // c_row = beta·c_row + Σ_p op(A)[i, p] · B[p, :]
      for (std::size_t j = 0; j < n; ++j) c_row[j] = beta == T(0) ? T(0) : beta * c_row[j];
      for (std::size_t p = 0; p < k; ++p) {
        const T a_ip = ta ? a[p * lda + i] : a[i * lda + p];
        const T* b_row = b + p * ldb;
        for (std::size_t j = 0; j < n; ++j) c_row[j] += a_ip * b_row[j];
      }
    } else {  // c_row[j] = op(A)[i, :] · B[j, :] (+ beta·c_row[j])
      for (std::size_t j = 0; j < n; ++j) {
        const T* b_row = b + j * ldb;
        T acc = 0;
        if (!ta) {
          const T* a_row = a + i * lda;
          for (std::size_t p = 0; p < k; ++p) acc += a_row[p] * b_row[p];
        } else {
          for (std::size_t p = 0; p < k; ++p) acc += a[p * lda + i] * b_row[p];
        }
        c_row[j] = beta == T(0) ? acc : acc + beta * c_row[j];
      }
    }
  }
}

/// m·n·k saturated: each size fits an int (tensors are at most 2^31 − 1 elements), their
/// product need not fit a size_t.
std::size_t work_of(std::size_t m, std::size_t n, std::size_t k) {
  const std::size_t mn = m * n;
  return k != 0 && mn > SIZE_MAX / k ? SIZE_MAX : mn * k;
}

/// Whether gemm_impl cuts C in two halves for the two cores (blas.hpp): a large product, or a
/// recurrence's per-step product (a few rows of states against a wider weight, k ≤ n). The
/// shape alone decides, so a result never depends on whether the helper was free. (Products
/// with a long k, such as a weight's gradient over B·T rows, stay whole: they are not per-step
/// products, and their rounding is the one the documented outputs were recorded with.)
bool split_in_halves(std::size_t m, std::size_t n, std::size_t k, std::size_t work) {
  if (work >= kSmallProduct || std::max(m, n) < 16 || m == 1) return false;
  return work >= kSplitProduct || (work >= kSplitFewRows && m <= kFewRows && k <= n);
}

// ---- a recurrence's per-step products: B packed once, kept while its bytes stay the same ----------

/// Whether C = A · op(B) runs on PackedGemm (packed_gemm.hpp) rather than BLAS: a few rows of A
/// (a batch of states, 2 to kFewRows) against a B of at most kPackedMaxK rows and
/// kPackedMaxBytes, from kSplitFewRows multiply-adds. The shape alone decides, so the bits of a
/// result never depend on whether B's packed form was found in the cache or made for this call.
template <class T>
bool packs(bool ta, std::size_t m, std::size_t n, std::size_t k, std::size_t work) {
  return PackedGemm<T>::available() && !ta && m >= 2 && m <= kFewRows && k <= kPackedMaxK &&
         n <= kPackedMaxBytes / sizeof(T) / k && work >= kSplitFewRows && work < kSmallProduct;
}

/// Whether C = Aᵀ · op(B) runs on PackedGemm: a weight's per-step gradient gᵀ h, A stored (k × m)
/// with a short k (at most kShortK: a batch of states) and B (k × n, packed at every call: it is
/// a step's states, new each time) of at most kPackedMaxBytes, from kSplitFewRows multiply-adds.
template <class T>
bool packs_transposed_a(bool ta, std::size_t m, std::size_t n, std::size_t k, std::size_t work) {
  return PackedGemm<T>::available() && ta && m >= 2 && k <= kShortK &&
         n <= kPackedMaxBytes / sizeof(T) / k && m * n <= kShortKMaxC / sizeof(T) &&
         work >= kSplitFewRows && work < kSmallProduct;
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <class T>
using Buffer = std::unique_ptr<T[], FreeDeleter>;

/// `count` elements of T, 64-byte aligned (what PackedGemm's panels need).
template <class T>
Buffer<T> aligned_buffer(std::size_t count) {
  const std::size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) throw std::bad_alloc();
  return Buffer<T>(static_cast<T*>(p));
}

/// The packed forms of the B operands this thread multiplied lately. A recurrence multiplies
/// the same weight at each of its T steps, forward and backward: OpenBLAS repacked it at every
/// call (its copy routines took 7 % of the composed GRU's profile at M). An entry keeps B's
/// packed panels and a plain copy of B's bytes; it is used only while B's bytes still equal the
/// copy (memcmp, about a tenth of the product's time), so a weight changed in any way (an
/// optimizer step, a write through data(), a new tensor at the same address) is packed again,
/// never read stale. B is cached from its second product (a weight used once per pass, an MLP's,
/// is never copied), and an entry whose B changed before any reuse twice stops caching.
template <class T>
class PackCache {
 public:
  struct Entry {
    const T* b = nullptr;
    std::size_t k = 0, n = 0, ldb = 0;
    bool tb = false;
    bool cached = false;           // packed and copy hold B's current form
    std::uint32_t hits = 0;        // products served since it was packed
    std::uint32_t demotions = 0;   // times B changed before a single reuse
    std::uint64_t last_use = 0;
    Buffer<T> packed, copy;
    std::size_t bytes() const { return cached ? (PackedGemm<T>::storage_size(k, n) + k * n) * sizeof(T) : 0; }
  };

  /// The packed B for this product: `storage` and whether it must still be packed (panels
  /// written by the caller, possibly by two threads over disjoint panels).
  /// This thread's buffer for a B packed for one call only.
  T* scratch(std::size_t k, std::size_t n) {
    const std::size_t size = PackedGemm<T>::storage_size(k, n);
    if (size > scratch_size_) scratch_ = aligned_buffer<T>(size), scratch_size_ = size;
    return scratch_.get();
  }

  std::pair<T*, bool> find(const T* b, std::size_t ldb, bool tb, std::size_t k, std::size_t n) {
    ++clock_;
    Entry* e = nullptr;
    for (Entry& x : entries_)
      if (x.b == b && x.k == k && x.n == n && x.ldb == ldb && x.tb == tb) e = &x;
    if (e == nullptr) {  // first sight: packed for this call only
      e = &slot();
      *e = Entry();
      e->b = b, e->k = k, e->n = n, e->ldb = ldb, e->tb = tb;
      e->last_use = clock_;
      return {scratch(k, n), true};
    }
    e->last_use = clock_;
    if (e->cached) {
      if (same_bytes(*e)) {
        ++e->hits;
        return {e->packed.get(), false};
      }
      if (e->hits > 0) {  // reused before: pack the new bytes into the entry
        e->hits = 0;
        keep_copy(*e);
        return {e->packed.get(), true};
      }
      e->cached = false, ++e->demotions;  // changed before any reuse: stop keeping it
      e->packed.reset(), e->copy.reset();
      return {scratch(k, n), true};
    }
    if (e->demotions >= 2 || !make_room(*e)) return {scratch(k, n), true};
    e->packed = aligned_buffer<T>(PackedGemm<T>::storage_size(k, n));
    e->copy = aligned_buffer<T>(k * n);
    e->cached = true, e->hits = 0;
    keep_copy(*e);
    return {e->packed.get(), true};
  }

 private:
  static constexpr std::size_t kEntries = 16;
  static constexpr std::size_t kMaxBytes = std::size_t(64) << 20;  // per thread

  // B's rows as stored: n rows of k when transposed, k rows of n otherwise.
  static std::size_t rows(const Entry& e) { return e.tb ? e.n : e.k; }
  static std::size_t cols(const Entry& e) { return e.tb ? e.k : e.n; }

  bool same_bytes(const Entry& e) const {
    const std::size_t r = rows(e), c = cols(e);
    if (e.ldb == c) return std::memcmp(e.copy.get(), e.b, r * c * sizeof(T)) == 0;
    for (std::size_t i = 0; i < r; ++i)
      if (std::memcmp(e.copy.get() + i * c, e.b + i * e.ldb, c * sizeof(T)) != 0) return false;
    return true;
  }
  void keep_copy(Entry& e) {
    const std::size_t r = rows(e), c = cols(e);
    for (std::size_t i = 0; i < r; ++i) std::memcpy(e.copy.get() + i * c, e.b + i * e.ldb, c * sizeof(T));
  }

  /// Frees the least recently used cached entries until `e` fits in kMaxBytes; false if it
  /// cannot fit at all.
  bool make_room(const Entry& e) {
    const std::size_t need = (PackedGemm<T>::storage_size(e.k, e.n) + e.k * e.n) * sizeof(T);
    if (need > kMaxBytes) return false;
    for (;;) {
      std::size_t used = 0;
      Entry* oldest = nullptr;
      for (Entry& x : entries_) {
        used += x.bytes();
        if (x.cached && &x != &e && (!oldest || x.last_use < oldest->last_use)) oldest = &x;
      }
      if (used + need <= kMaxBytes || oldest == nullptr) return used + need <= kMaxBytes;
      oldest->cached = false;
      oldest->packed.reset(), oldest->copy.reset();
    }
  }

  /// A slot for a new entry: a free one, else the least recently used.
  Entry& slot() {
    if (entries_.size() < kEntries) return entries_.emplace_back();
    Entry* oldest = &entries_[0];
    for (Entry& x : entries_)
      if (x.last_use < oldest->last_use) oldest = &x;
    return *oldest;
  }

  std::vector<Entry> entries_;
  Buffer<T> scratch_;
  std::size_t scratch_size_ = 0;
  std::uint64_t clock_ = 0;
};

/// C = A · op(B) + beta · C on PackedGemm, B's packed form from this thread's PackCache. With
/// `split`, the panels are cut in two halves that run on the engine's two threads, each packing
/// (when needed) and multiplying its own panels: the same bits as one thread.
/// With ta, A is given transposed and B is packed for this call only (packs_transposed_a).
template <class T>
void packed_product(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* a,
                    std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc,
                    bool split) {
  thread_local PackCache<T> cache;
  // (no structured binding: a lambda may not capture one before C++20, and clang refuses it)
  const std::pair<T*, bool> found =
      ta ? std::pair<T*, bool>(cache.scratch(k, n), true) : cache.find(b, ldb, tb, k, n);
  T* const storage = found.first;
  const bool pack = found.second;
  const PackedGemm<T> g(storage, k, n);
  const std::size_t panels = PackedGemm<T>::panels(n);
  auto range = [&](std::size_t p0, std::size_t p1) {
    if (pack) PackedGemm<T>::pack_panels(storage, b, ldb, tb, k, n, p0, p1);
    g.multiply_panels(p0, p1, m, a, lda, beta, c, ldc, ta);
  };
  if (!split || panels < 2) return range(0, panels);
  auto half = [&](int h) { h == 0 ? range(0, panels / 2) : range(panels / 2, panels); };
  two_halves(half);
}

/// C = beta · C: a product with k = 0 (an empty sum), C not read when beta = 0.
template <class T>
void empty_sum(std::size_t m, std::size_t n, T beta, T* c, std::size_t ldc) {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}

// ---- large products when OpenBLAS's kernel has narrower vectors than the engine's ----------------

/// The width in bits of the kernel this process uses (0 when it has none: BLAS only).
template <class T>
int engine_bits() {
  return PackedGemm<T>::available() ? gemm_kernel<T>()->bits : 0;
}

/// Whether gemm_impl gives this process's large products to blocked_product (blas.hpp,
/// engine_replaces_blas): decided once, from the kernel OpenBLAS chose when it was loaded.
template <class T>
bool engine_takes_large_products() {
  static const bool yes = engine_replaces_blas(openblas_get_corename(), engine_bits<T>());
  return yes;
}

/// C = op(A) · op(B) + beta · C on PackedGemm for a product of any size (blas.hpp, engine_gemm).
/// Blocked as GEMMs are: kKC rows of op(B) at a time (a longer k is summed block after block,
/// C = partial + C), and kNC columns, so that a packed block of B (512 KiB) stays in L2 while
/// row blocks of kMC rows of A run against it (A read where it is, kMC · kKC elements in L2 too).
/// Two halves on the engine's two threads: rows of C when m ≥ n, else B's panels; each thread
/// packs into a buffer of its own. Each element of C is summed in the same order however the
/// halves and blocks of rows and columns fall: the bits depend on (m, n, k) alone.
template <class T>
void blocked_product(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* a,
                     std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  using P = PackedGemm<T>;
  if (m == 0 || n == 0) return;
  if (k == 0) return empty_sum(m, n, beta, c, ldc);
  constexpr std::size_t kKC = 512, kMC = 128;
  const std::size_t nr = P::panel_width();
  const std::size_t kNC = std::max<std::size_t>((std::size_t(512) << 10) / sizeof(T) / kKC / nr, 1) * nr;
  auto part = [&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
    thread_local Buffer<T> storage;
    if (!storage) storage = aligned_buffer<T>(P::storage_size(kKC, kNC));
    for (std::size_t jc = j0; jc < j1; jc += kNC) {
      const std::size_t nc = std::min(kNC, j1 - jc), panels = P::panels(nc);
      for (std::size_t k0 = 0; k0 < k; k0 += kKC) {
        const std::size_t kc = std::min(kKC, k - k0);
        P::pack_panels(storage.get(), tb ? b + jc * ldb + k0 : b + k0 * ldb + jc, ldb, tb, kc, nc, 0, panels);
        const P g(storage.get(), kc, nc);
        for (std::size_t i = i0; i < i1; i += kMC)
          g.multiply_panels(0, panels, std::min(kMC, i1 - i), ta ? a + k0 * lda + i : a + i * lda + k0, lda,
                            k0 == 0 ? beta : T(1), c + i * ldc + jc, ldc, ta);
      }
    }
  };
  // the halves: rows at a multiple of the kernel's row block, or columns at a panel's edge
  const std::size_t mr = P::block_rows(), mid_row = m / 2 / mr * mr, mid_col = P::panels(n) / 2 * nr;
  auto half = [&](int h) {
    if (m >= n)
      h == 0 ? part(0, mid_row, 0, n) : part(mid_row, m, 0, n);
    else
      h == 0 ? part(0, m, 0, mid_col) : part(0, m, mid_col, n);
  };
  two_halves(half);
}

template <class T>
void gemm_impl(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const T* a,
               std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) {
  // which kernel this process uses, chosen (and TAPEGRAD_GEMM_KERNEL checked) at the first product
  // of any shape, so that a bad setting is reported whatever the shapes (packed_gemm.hpp)
  gemm_kernel<T>();
  if (m == 0 || n == 0) return;
  if (k == 0) return empty_sum(m, n, beta, c, ldc);
  const std::size_t work = work_of(m, n, k);
  if (work <= kTinyProduct) {  // a plain loop: cheaper than BLAS's call and packing
    tiny_gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (m >= 2 && (packs<T>(ta, m, n, k, work) || packs_transposed_a<T>(ta, m, n, k, work)))
    return packed_product(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, split_in_halves(m, n, k, work));
  if (m >= 2 && work >= kSplitProduct && engine_takes_large_products<T>())
    return blocked_product(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
  ProductThreads threads(work);
  if (m == 1) {
    // The row op(A) is contiguous, or a column of A (stride lda) when A is transposed.
    // y = op(B)ᵀ·a, where op(B) is B (k×n) or Bᵀ (B stored n×k).
    if (beta == T(0)) std::fill(c, c + n, T(0));  // gemv reads y even when beta = 0
    if (tb)
      gemv(false, n, k, b, ldb, a, ta ? lda : 1, beta, c);
    else
      gemv(true, k, n, b, ldb, a, ta ? lda : 1, beta, c);
    return;
  }
  if (split_in_halves(m, n, k, work)) {
    // Two halves of C on two cores (framework/parallel.hpp), each one OpenBLAS thread: split
    // the longer side, so that each thread packs half of the larger operand and all of the
    // smaller one. Rows m0.. of op(A) start at a + m0·lda (a + m0 when A is stored transposed);
    // columns n0.. of op(B) at b + n0 (b + n0·ldb when B is stored transposed).
    // The split depends on the shape alone: when the helper is busy (or there is one core) the
    // same two halves run one after the other, so the result never depends on what else runs.
    // (Two halves are not always bit-identical to one call: OpenBLAS's rounding can differ in
    // the last bit for some values, so the split is kept even where it does not pay.)
    OneBlasThread one_blas_thread;
    auto half = [&](int h) {
      if (m >= n) {
        const std::size_t m0 = h == 0 ? 0 : m / 2, rows = h == 0 ? m / 2 : m - m / 2;
        gemm_call(ta, tb, rows, n, k, ta ? a + m0 : a + m0 * lda, lda, b, ldb, beta, c + m0 * ldc, ldc);
      } else {
        const std::size_t n0 = h == 0 ? 0 : n / 2, cols = h == 0 ? n / 2 : n - n / 2;
        gemm_call(ta, tb, m, cols, k, a, lda, tb ? b + n0 * ldb : b + n0, ldb, beta, c + n0, ldc);
      }
    };
    two_halves(half);
    return;
  }
  gemm_call(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

template <class T>
void gemm_args(const GemmArgs<T>& g) {
  gemm_impl(g.ta, g.tb, g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc);
}

template <class T>
void gemm_pair_impl(const GemmArgs<T>& p, const GemmArgs<T>& q) {
  // A product that gemm_impl would split itself is not paired: it runs as its own gemm() call.
  const auto pairs = [](const GemmArgs<T>& g) {
    const std::size_t w = work_of(g.m, g.n, g.k);
    return w >= kPairProduct && w < kSplitProduct && !split_in_halves(g.m, g.n, g.k, w);
  };
  if (!have_two_cores() || !pairs(p) || !pairs(q)) {
    gemm_args(p);
    gemm_args(q);
    return;
  }
  // Below kSplitProduct gemm_impl makes one call on one OpenBLAS thread (or gemv): the same call
  // on either thread gives the same bits. The thread count is lowered here, once, so that the
  // two halves never change OpenBLAS's global setting at the same time.
  OneBlasThread one_blas_thread;
  auto half = [&](int h) { gemm_args(h == 0 ? p : q); };
  two_halves(half);
}

template <class T>
bool runs_apart_impl(const GemmArgs<T>& g) {
  const std::size_t w = work_of(g.m, g.n, g.k);
  return have_two_cores() && w >= kPairProduct && w < kSplitProduct && g.m >= 2 &&
         !split_in_halves(g.m, g.n, g.k, w) &&
         (packs<T>(g.ta, g.m, g.n, g.k, w) || packs_transposed_a<T>(g.ta, g.m, g.n, g.k, w));
}

template <class T>
void gemm_split_impl(const GemmArgs<T>& g) {
  const std::size_t w = work_of(g.m, g.n, g.k);
  if (g.m >= 2 && w > kTinyProduct && packs<T>(g.ta, g.m, g.n, g.k, w))
    return packed_product(g.ta, g.tb, g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc, true);
  gemm_args(g);
}

}  // namespace

int blas_kernel_bits(std::string_view core) {
  std::string name(core);
  for (char& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* x : {"skylakex", "cooperlake", "sapphirerapids"})
    if (name == x) return 512;
  for (const char* x : {"haswell", "zen", "sandybridge"})
    if (name == x) return 256;
  for (const char* x : {"katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn",
                        "dunnington", "nehalem", "athlon", "opteron", "opteron_sse3", "barcelona", "nano",
                        "bobcat"})
    if (name == x) return 128;
  return 0;
}

bool engine_replaces_blas(std::string_view core, int engine_vector_bits) {
  const int blas = blas_kernel_bits(core);
  return blas > 0 && engine_vector_bits > blas;
}

bool engine_replaces_blas() { return engine_takes_large_products<float>(); }

void engine_gemm(const GemmArgs<float>& g) {
  blocked_product(g.ta, g.tb, g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc);
}
void engine_gemm(const GemmArgs<double>& g) {
  blocked_product(g.ta, g.tb, g.m, g.n, g.k, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc);
}

bool gemm_runs_apart(const GemmArgs<float>& g) { return runs_apart_impl(g); }
bool gemm_runs_apart(const GemmArgs<double>& g) { return runs_apart_impl(g); }
void gemm(const GemmArgs<float>& g) { gemm_args(g); }
void gemm(const GemmArgs<double>& g) { gemm_args(g); }
void gemm_split(const GemmArgs<float>& g) { gemm_split_impl(g); }
void gemm_split(const GemmArgs<double>& g) { gemm_split_impl(g); }

void gemm_pair(const GemmArgs<float>& p, const GemmArgs<float>& q) { gemm_pair_impl(p, q); }
void gemm_pair(const GemmArgs<double>& p, const GemmArgs<double>& q) { gemm_pair_impl(p, q); }

OneBlasThread::OneBlasThread() : previous_(openblas_get_num_threads()) {
  one_blas_thread_scopes.fetch_add(1, std::memory_order_relaxed);
  if (previous_ > 1) openblas_set_num_threads(1);
}
OneBlasThread::~OneBlasThread() {
  if (previous_ > 1) openblas_set_num_threads(previous_);
  one_blas_thread_scopes.fetch_sub(1, std::memory_order_relaxed);
}

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* a,
          std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
  gemm_impl(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

void gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const double* a,
          std::size_t lda, const double* b, std::size_t ldb, double beta, double* c, std::size_t ldc) {
  gemm_impl(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace tapegrad::detail
