// tapegrad — the storage allocator of every tensor (declared in xtensor_config.hpp).
//
// A training step allocates and frees the same sizes again and again: every op's result, every
// gradient. malloc and free (and, for big blocks, the kernel's page faults) took about half of
// the tape's per-op cost. Here a freed block goes to a per-thread cache, one list per size class,
// and the next allocation of that class takes it back: no lock, no system call.
//
//   size classes   64 bytes, then four per power of two (80, 96, 112, 128, 160, ... 256 MiB):
//                  a block wastes at most 25 % of its size
//   not cached     blocks above 256 MiB (malloc serves those with mmap anyway), and any block
//                  that would take the thread's cache above its limit: freed at once
//   limit          64 MiB, or twice the most this thread has had allocated from the pool at
//                  once (its high-water mark) if that is more, up to 1 GiB. A training step of
//                  the composed GRU at H = 512 keeps ~400 MiB of tape values alive until its
//                  backward; with a fixed 64 MiB most of them went back to malloc, and the next
//                  step page-faulted them in again (a tenth of its time). Twice, because the
//                  blocks a step frees are not of the sizes, nor in the order, the next one asks
//                  for them. With one high-water mark, composed L sent ~90 MB a step back to
//                  malloc; since a backward frees values as it goes (tape.cpp), glibc then also
//                  gave pages back, and ~4,000 a step faulted in again (4–8 % slower). With
//                  twice, nothing goes back once training is warm (docs/performance.md, session
//                  26; peak RSS 216 -> 239 MB). The cache stays bounded by the thread's own
//                  peak: it does not grow from step to step.
//   alignment      64 bytes (posix_memalign)
//
// A block freed on another thread than the one that allocated it joins that other thread's
// cache (it is only memory). A thread's cache is freed when the thread ends. A thread that asked
// for no cache (the engine's helper thread) frees every block at once: it lives as long as the
// process and mostly frees blocks the caller allocated, which would otherwise pile up in its
// cache (20,000 demo steps: RSS +9 MB and still growing). Under
// AddressSanitizer nothing is cached, so that a use after free is still caught.
#include "framework/xtensor_config.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>

namespace tapegrad::detail {

namespace {

constexpr std::size_t kAlignment = 64;
constexpr std::size_t kMaxCachedBlock = std::size_t(1) << 28;  // 256 MiB
constexpr std::size_t kMaxCachedBytes = std::size_t(1) << 26;  // 64 MiB per thread, at least
constexpr std::size_t kCacheCeiling = std::size_t(1) << 30;    // 1 GiB per thread, at most
constexpr std::ptrdiff_t kLimitPerPeak = 2;  // the limit: twice the high-water mark (above)
// Class 0 holds ≤ 64 bytes; sizes in (2^(e−1), 2^e] for e = 7 … 28 are split in four.
constexpr std::size_t kClasses = 1 + 4 * (28 - 6);

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCaching = false;
#else
constexpr bool kCaching = true;
#endif

/// The size class of a block of `bytes` (≤ kMaxCachedBlock) and its rounded-up size.
std::size_t size_class(std::size_t bytes, std::size_t* rounded) {
  if (bytes <= 64) {
    *rounded = 64;
    return 0;
  }
  const unsigned e = 64u - static_cast<unsigned>(__builtin_clzll(bytes - 1));  // 2^(e−1) < bytes ≤ 2^e
  const std::size_t step = std::size_t(1) << (e - 3);                        // a quarter of 2^(e−1)
  const std::size_t quarters = (bytes + step - 1) >> (e - 3);                // 5 … 8 (÷ step)
  *rounded = quarters * step;
  return 1 + 4 * (e - 7) + (quarters - 5);
}

void* system_allocate(std::size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, kAlignment, bytes == 0 ? kAlignment : bytes) != 0) throw std::bad_alloc();
  return p;
}

/// A cached block holds the address of the next one in its class: the lists need no memory of
/// their own. (With a std::vector per class, a push_back's capacity check and the try/catch for
/// the vector's own allocation were on every free. bench_ops BM_TapeAdd64 took 216–223 ns per
/// recorded op with the free lists against 236–255 with the vectors in one A/B, and was faster in
/// 3 of 4 rounds in a second: docs/performance.md, session 11.)
struct FreeBlock {
  FreeBlock* next;
};

struct Cache {
  FreeBlock* blocks[kClasses] = {};  // singly linked through the blocks themselves
  std::size_t bytes = 0;               // cached now
  std::ptrdiff_t outstanding = 0;      // allocated here minus freed here (may go below 0)
  std::size_t limit = kMaxCachedBytes;  // max(64 MiB, 2 × the high-water mark of outstanding)
  ~Cache();
};

thread_local bool t_cache_gone = false;  // trivially destructible: readable after ~Cache
thread_local bool t_no_cache = false;    // pool_no_cache_on_this_thread()

Cache::~Cache() {
  for (FreeBlock* b : blocks)
    while (b != nullptr) {
      FreeBlock* next = b->next;
      std::free(b);
      b = next;
    }
  t_cache_gone = true;  // blocks freed after this (static tensors at exit) go straight to free
}

Cache& cache() {
  thread_local Cache c;
  return c;
}

}  // namespace

void* pool_allocate(std::size_t bytes) {
  if (!kCaching || bytes > kMaxCachedBlock || t_cache_gone) return system_allocate(bytes);
  std::size_t rounded;
  const std::size_t k = size_class(bytes, &rounded);
  Cache& c = cache();
  c.outstanding += std::ptrdiff_t(rounded);
  if (kLimitPerPeak * c.outstanding > std::ptrdiff_t(c.limit))
    c.limit = std::min(std::size_t(kLimitPerPeak * c.outstanding), kCacheCeiling);
  if (FreeBlock* b = c.blocks[k]) {
    c.blocks[k] = b->next;
    c.bytes -= rounded;
    return b;
  }
  return system_allocate(rounded);
}

void pool_no_cache_on_this_thread() noexcept { t_no_cache = true; }

void pool_deallocate(void* p, std::size_t bytes) noexcept {
  if (p == nullptr) return;
  if (!kCaching || bytes > kMaxCachedBlock || t_cache_gone || t_no_cache) {
    std::free(p);
    return;
  }
  std::size_t rounded;
  const std::size_t k = size_class(bytes, &rounded);
  Cache& c = cache();
  c.outstanding -= std::ptrdiff_t(rounded);
  if (c.bytes + rounded > c.limit) {
    std::free(p);
    return;
  }
  FreeBlock* b = static_cast<FreeBlock*>(p);  // blocks are at least 64 bytes, 64-byte aligned
  b->next = c.blocks[k];
  c.blocks[k] = b;
  c.bytes += rounded;
}

}  // namespace tapegrad::detail
