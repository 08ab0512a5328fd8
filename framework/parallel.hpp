// tapegrad — the engine's second core: run two halves of one piece of work at once.
//
// A training step of the composed GRU at H = 512 is mostly per-step products of a few hundred
// microseconds each (64×512 by 512×1536). Starting a thread per product costs tens of
// microseconds; OpenBLAS's own pool measured no faster than one thread on some machines and
// leaves its threads spinning in sched_yield afterwards (blas.hpp). So the engine keeps one
// helper thread of its own: `two_halves(f)` runs f(0) on the helper and f(1) on the caller and
// returns when both are done. After a task the helper polls for the next one for a short while
// (the next product usually follows within microseconds), then sleeps on a condition variable.
// If the caller finishes f(1) before the helper has taken f(0) (it was asleep, or the system had
// descheduled it), the caller runs f(0) too rather than wait: each half is claimed exactly once.
//
// Falls back to running f(0) then f(1) on the caller when one core is all there is, when the
// helper is busy with another thread's work (two user threads each training a model), when
// called from the helper itself, or in a child process after fork (the helper thread does not
// exist there). An exception thrown by either half is rethrown by two_halves once both are done
// (the helper's first).
// Not part of the public API (not included by tapegrad.hpp).
#pragma once

#include <cstddef>
#include <type_traits>

namespace tapegrad::detail {

/// A borrowed callable void(int half): no allocation, no ownership.
class HalfFn {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, HalfFn>>>
  HalfFn(F& f) : object_(&f), call_([](void* o, int half) { (*static_cast<F*>(o))(half); }) {}
  void operator()(int half) const { call_(object_, half); }

 private:
  void* object_;
  void (*call_)(void*, int);
};

/// True when two_halves can use a second core (at least two hardware threads).
bool have_two_cores();

/// Runs f(0) and f(1), on two threads when it can; returns when both have run.
void two_halves(HalfFn f);

/// Starts f(0) on the helper and returns at once, for work the caller does not need until later
/// (a weight's gradient during the backward, tape.cpp): false, with nothing started, when the
/// helper is not free (one core, another thread's work, inside the helper, after fork). Until
/// finish_on_helper() the helper stays taken, so two_halves meanwhile runs both halves on the
/// caller; f must live until then, and each start_on_helper needs its finish_on_helper.
bool start_on_helper(const HalfFn& f);

/// Whether the helper has finished the work start_on_helper started (finish_on_helper would
/// return at once).
bool finished_on_helper();

/// Waits for the work start_on_helper started (or runs it here, when the helper has not taken it
/// yet) and frees the helper; rethrows what it threw.
void finish_on_helper();

/// An elementwise result of at least this many elements is computed as two halves on two cores:
/// a GRU step at H = 512, B = 64 has 32,768. Below it, handing half to the other core costs more
/// than it saves.
constexpr std::size_t kParallelElements = std::size_t(1) << 15;

/// body(e0, e1) over the elements [0, total), where body takes any range that starts at a
/// multiple of `unit`: as two halves on two cores, split at such a multiple, from
/// kParallelElements elements on; else one call.
template <class Body>
void split_elements(std::size_t total, std::size_t unit, Body& body) {
  const std::size_t mid = total / unit / 2 * unit;
  if (total < kParallelElements || mid == 0 || !have_two_cores()) return body(0, total);
  auto half = [&](int h) { h == 0 ? body(0, mid) : body(mid, total); };
  two_halves(half);
}

}  // namespace tapegrad::detail
