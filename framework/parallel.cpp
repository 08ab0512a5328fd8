// tapegrad — the engine's helper thread (see parallel.hpp).
#include "framework/parallel.hpp"

#include "framework/xtensor_config.hpp"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TAPEGRAD_PAUSE() _mm_pause()
#else
#define TAPEGRAD_PAUSE() std::this_thread::yield()
#endif

namespace tapegrad::detail {

namespace {

/// How long the helper polls for the next task before it sleeps. The composed GRU's per-step
/// products come 50–300 µs apart; waking a sleeping thread costs 10–50 µs.
constexpr auto kPoll = std::chrono::microseconds(200);

class Helper {
 public:
  /// The process's helper, started on first use; nullptr on a one-core machine.
  static Helper* get() {
    static Helper* const helper = have_two_cores() ? new Helper() : nullptr;  // never destroyed:
    return helper;  // it may be needed until exit, and a detached thread outlives statics
  }

  /// Runs f(0) on the helper and f(1) here; false (nothing run) when the helper is not free.
  /// If the helper has not taken f(0) by the time f(1) is done (it was asleep, or the system
  /// had descheduled it), the caller claims f(0) and runs it too instead of waiting.
  bool run(HalfFn f) {
    if (!start(f)) return false;
    std::exception_ptr mine;
    run_guarded(f, 1, mine);
    std::exception_ptr theirs = finish_task();
    if (theirs) std::rethrow_exception(theirs);
    if (mine) std::rethrow_exception(mine);
    return true;
  }

  /// Posts f(0) to the helper and returns at once; false (nothing posted) when the helper is
  /// not free. The helper stays taken (busy) until finish_task(): f must live until then.
  bool start(const HalfFn& f) {
    if (forked_child() || std::this_thread::get_id() == id_) return false;
    bool expected = false;
    if (!busy_.compare_exchange_strong(expected, true, std::memory_order_acquire)) return false;
    task_ = &f;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ticket_ = posted_.load(std::memory_order_relaxed) + 1;
      posted_.store(ticket_, std::memory_order_release);
    }
    wake_.notify_one();
    return true;
  }

  /// Whether the helper has finished what start() posted (finish_task() would not wait).
  bool finished_task() const { return finished_.load(std::memory_order_acquire) == ticket_; }

  /// Ends what start() posted: runs f(0) here if the helper has not taken it yet, else waits
  /// for the helper to finish it; frees the helper and returns what f(0) threw.
  std::exception_ptr finish_task() {
    const unsigned ticket = ticket_;
    std::exception_ptr theirs;
    unsigned unclaimed = ticket - 1;
    if (claimed_.compare_exchange_strong(unclaimed, ticket, std::memory_order_acq_rel)) {
      run_guarded(*task_, 0, theirs);  // the helper will see the ticket taken and leave f alone
    } else {
      for (unsigned spins = 0; finished_.load(std::memory_order_acquire) != ticket; ++spins) {
        if (spins < 4096)
          TAPEGRAD_PAUSE();
        else
          std::this_thread::yield();  // the helper was descheduled: give it the core
      }
      theirs = std::move(helper_error_);
      helper_error_ = nullptr;
    }
    busy_.store(false, std::memory_order_release);
    return theirs;
  }

 private:
  Helper() {
    // A child of fork() has only the forking thread: the helper does not exist there.
    ::pthread_atfork(nullptr, nullptr, [] { forked_child() = true; });
    std::thread thread([this] { loop(); });
    id_ = thread.get_id();
    thread.detach();
  }

  /// f(half), keeping an exception for the caller to rethrow once both halves are done.
  static void run_guarded(HalfFn f, int half, std::exception_ptr& error) noexcept {
    try {
      f(half);
    } catch (...) {
      error = std::current_exception();
    }
  }

  void loop() {
    pool_no_cache_on_this_thread();  // framework/memory_pool.cpp: it frees what callers allocated
    unsigned seen = 0;
    for (;;) {
      const auto start = std::chrono::steady_clock::now();
      unsigned spins = 0;
      while (posted_.load(std::memory_order_acquire) == seen) {
        TAPEGRAD_PAUSE();
        if (++spins % 256 == 0 && std::chrono::steady_clock::now() - start > kPoll) {
          std::unique_lock<std::mutex> lock(mutex_);
          wake_.wait(lock, [&] { return posted_.load(std::memory_order_acquire) != seen; });
          break;
        }
      }
      seen = posted_.load(std::memory_order_acquire);
      // Take f(0) unless the caller already has (then task_ may be gone, or be the next task's,
      // which the caller has not posted yet: wait for that).
      unsigned unclaimed = seen - 1;
      if (!claimed_.compare_exchange_strong(unclaimed, seen, std::memory_order_acq_rel)) continue;
      run_guarded(*task_, 0, helper_error_);
      finished_.store(seen, std::memory_order_release);
    }
  }

  static bool& forked_child() {
    static bool forked = false;  // set in the child by the pthread_atfork handler
    return forked;
  }

  std::thread::id id_;
  std::atomic<bool> busy_{false};  // one caller at a time
  unsigned ticket_ = 0;            // the busy caller's task (written and read by that caller)
  const HalfFn* task_ = nullptr;   // written before posted_ is raised, read after it is seen
  std::exception_ptr helper_error_;  // what f(0) threw, read after finished_ is seen
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<unsigned> posted_{0}, finished_{0};
  std::atomic<unsigned> claimed_{0};  // the last ticket whose f(0) someone took (helper or caller)
};

}  // namespace

bool have_two_cores() {
  static const bool two = std::thread::hardware_concurrency() >= 2;
  return two;
}

void two_halves(HalfFn f) {
  Helper* helper = Helper::get();
  if (helper != nullptr && helper->run(f)) return;
  f(0);
  f(1);
}

bool start_on_helper(const HalfFn& f) {
  Helper* helper = Helper::get();
  return helper != nullptr && helper->start(f);
}

bool finished_on_helper() { return Helper::get()->finished_task(); }

void finish_on_helper() {
  std::exception_ptr error = Helper::get()->finish_task();
  if (error) std::rethrow_exception(error);
}

}  // namespace tapegrad::detail
