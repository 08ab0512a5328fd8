// tapegrad grading — NotImplemented: what a skeleton's TODO throws.
//
//   throw tapegrad::grading::NotImplemented("TODO: part 1, gru_cell");
//
// Deliberately NOT derived from std::exception (nor from any standard exception): a student's
// `catch (const std::exception&)` does not swallow it, and a std::logic_error raised by the
// student's own code (`.at()` out of range, a failed precondition) is reported by the grader as
// the bug it is, never as "not implemented yet". Header-only: a student can compile the skeleton
// without linking the grading library.
#pragma once

#include <string>
#include <utility>

namespace tapegrad::grading {

class NotImplemented {
 public:
  explicit NotImplemented(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept { return what_.c_str(); }

 private:
  std::string what_;
};

}  // namespace tapegrad::grading
