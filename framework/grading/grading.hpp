// tapegrad grading — the library behind the course's graders (docs/assignments.md).
//
// An assignment is graded by two programs that share one manifest (the tests' names and points):
//
//   <grader>        built from the manifest only, never from the submission. For each test it
//                   starts the test program as a child (fork + exec, own process group, limits
//                   on address space, CPU time and wall-clock time), hands it a fresh random
//                   token over a pipe, and accepts a result only from the result pipe, only with
//                   that token. It computes the score from its own manifest and writes it (text on
//                   stdout, Gradescope's results.json with --results). Exit 0 only when every test
//                   passed.
//   <grader>_tests  the hidden tests compiled with the student's header (#include
//                   TAPEGRAD_SUBMISSION). Runs exactly one test per process (--run-test N).
//
// So a crash, a hang, a huge allocation or exit() in the submission fails that test only, and an
// `_Exit(0)` in a static initializer, a printed "score: 5/5" or a forged exit code cannot make a
// test pass: the grader never runs the submission's code, and a test passes only when the test
// program reports it on the pipe with the token. (Limit: code that deliberately reads the
// harness's protocol out of its own process could still forge a record; keep the test sources
// private, and read the outputs of suspicious submissions.)
//
// CMake: tapegrad_add_grader(<name> TESTS tests.cpp SUBMISSION header.hpp FIXTURE_DIR dir)
// (framework/grading/tapegrad_assignment.cmake, loaded by find_package(tapegrad)).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "framework/gradcheck.hpp"
#include "framework/grading/not_implemented.hpp"
#include "framework/npz.hpp"
#include "framework/tensor.hpp"

namespace tapegrad::grading {

// ---- the manifest: shared by the grader and the test program -------------------------------------
struct TestSpec {
  std::string name;                   ///< "1. gru_cell: h' matches PyTorch's nn.GRUCell"
  double points = 1;                  ///< max_score of this test
  double time_limit_s = 30;           ///< wall clock; the CPU-time limit is this + 1 s
  std::size_t memory_limit_mb = 2048; ///< address-space limit of the test process
};

struct Manifest {
  std::string title;                  ///< "GRU cell forward and swish backward"
  std::vector<TestSpec> tests;
};

// ---- writing tests ---------------------------------------------------------------------------------
/// What a test reports: passed or not, and the lines the student reads.
struct Outcome {
  bool passed = false;
  std::vector<std::string> lines;
  /// Adds a line and returns the outcome, for `return o.add(...)`.
  Outcome& add(std::string line);
};

/// What a test may use besides the submission.
struct Context {
  std::string fixture_dir;
  /// fixture_dir + "/" + file.
  std::string fixture(const std::string& file) const;
};

using TestFn = std::function<Outcome(const Context&)>;
struct TestImpl {
  std::string name;  ///< must equal the manifest's name of the test
  TestFn fn;
};

/// The test program's main: `--run-test N --result-fd R --token-fd T [--fixtures DIR]` (what the
/// grader runs), `--list`, or `--all` (every test in this process, for the instructor's
/// debugging: no isolation, no score). Checks that the implementations match the manifest.
int test_main(int argc, char** argv, const Manifest& manifest, const std::vector<TestImpl>& tests);

struct GraderConfig {
  std::string test_program;  ///< path of the compiled <grader>_tests
  std::string fixture_dir;   ///< default for --fixtures
  std::string submission;    ///< shown in the header line
};
/// The grader's main: [--results results.json] [--text FILE] [--fixtures DIR] [--tests PROGRAM]
/// [--time-limit S] [--no-memory-limit]. Exit 0 when every test passed, 1 when one failed, 2 on a usage error.
int grader_main(int argc, char** argv, const Manifest& manifest, const GraderConfig& config);

// ---- comparing tensors -----------------------------------------------------------------------------
/// How the rows of a stacked parameter are labelled: gates r, z, n (GRU), i, f, g, o (LSTM), or
/// none. A row of a (k·H, ·) weight or a (k·H) bias is described as "the z gate (rows 4..7)".
struct Layout {
  std::vector<std::string> labels;  ///< empty: no labels
  std::string kind = "gate";
  static Layout none() { return {}; }
  static Layout gates(std::vector<std::string> labels) { return {std::move(labels), "gate"}; }
  /// " — the z gate (rows 4..7)" for `row` of a dimension of size `rows`; "" without labels or
  /// when rows does not split into the labels.
  std::string describe_row(std::size_t row, std::size_t rows) const;
};

struct Position {
  std::vector<std::size_t> index;
  double yours = 0, expected = 0;
};

struct Diff {
  bool same_shape = true;
  std::string shape_message;  ///< when the shapes differ
  double max_abs = 0;         ///< inf when a NaN is involved
  std::vector<Position> worst;  ///< the largest differences, largest first
  bool within(double tol) const { return same_shape && max_abs < tol; }
};

/// Element-wise comparison (any dtype, read as double); keeps the `keep` worst positions.
Diff compare(const Tensor& yours, const Tensor& expected, std::size_t keep = 3);

/// "(1, 0)"
std::string index_str(const std::vector<std::size_t>& index);

/// "h' differs by up to 1.9e-01 at (1, 0): yours -0.17996526, PyTorch 0.00813625; also at ..."
/// With a layout and `rows` (the size of dimension 0), the first index is described as a gate
/// row ("— the z gate (rows 4..7)").
std::string describe(const std::string& what, const Diff& d, const Layout& layout = {},
                     const std::string& expected_label = "expected", std::size_t rows = 0);

/// Compares and, when they differ, marks `o` failed and adds describe(...). Returns whether equal.
/// An undefined `yours` ("no gradient reached it") fails too.
bool check_close(Outcome& o, const std::string& what, const Tensor& yours, const Tensor& expected,
                 double tol, const Layout& layout = {},
                 const std::string& expected_label = "expected");

// ---- explaining: known mistakes ----------------------------------------------------------------
/// A mistake the reference can make on purpose (bit k of the mask = mistakes[k]).
struct Mistake {
  std::string hint;
};
using MistakeReference = std::function<std::vector<Tensor>(unsigned mask)>;

/// Finds the set of known mistakes (one, or up to max_combined at once) with which the
/// reference reproduces `yours` (every tensor within tol). Returns the hint lines
/// ("hint: ..." or "hint: two mistakes at once: ..."), or nothing.
std::optional<std::vector<std::string>> diagnose(const std::vector<Tensor>& yours,
                                                 const std::vector<Mistake>& mistakes,
                                                 const MistakeReference& reference, double tol,
                                                 int max_combined = 2);

// ---- helpers ---------------------------------------------------------------------------------------
/// Fresh leaves (detached copies of the values) with requires_grad set as asked.
std::vector<Tensor> leaves(const std::vector<Tensor>& in, bool requires_grad);

/// A PyTorch fixture (tests/fixtures/*.npz, installed in tapegrad_FIXTURE_DIR).
class Fixture {
 public:
  explicit Fixture(std::string path);
  Tensor operator[](const std::string& key) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::shared_ptr<const npz::Archive> archive_;
};

/// One line for a failed gradcheck input: "relative error 1.0e-01; worst element x(0, 1) = -1.5:
/// your backward gives ..., central differences ..." (x is the checked input's value).
std::string gradcheck_line(const InputCheck& c, const Tensor& x);

}  // namespace tapegrad::grading
