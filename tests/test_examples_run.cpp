// Runs the teaching example programs (docs/tutorial.md snippets, custom_op, manual_backprop,
// hvp, the assignment's graders) and checks their exit codes and key lines of their output:
// this is how CI compiles and runs the snippets. The programs are built first (tests/CMakeLists:
// test_examples_run depends on all_examples).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

const std::string kBin = TAPEGRAD_EXAMPLES_BIN_DIR;

#if defined(__SANITIZE_ADDRESS__)
constexpr double kMaxSeconds = 60;  // sanitized builds run several times slower
#else
constexpr double kMaxSeconds = 5;  // the tutorial's promise
#endif

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr
  double seconds = 0;
};

/// Runs `program args` from the examples build directory, capturing its output.
Result run(const std::string& program, const std::string& args = "") {
  std::string exe = kBin + "/" + program;
  std::string log = testing::TempDir() + "example_" + std::to_string(::getpid()) + ".log";
  auto t0 = std::chrono::steady_clock::now();
  int status = std::system((exe + " " + args + " > " + log + " 2>&1").c_str());
  Result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  std::filesystem::remove(log);
  return r;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

class ExamplesRun : public testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kBin))
      GTEST_SKIP() << "examples are not built (TAPEGRAD_BUILD_EXAMPLES=OFF)";
  }
};

}  // namespace

TEST_F(ExamplesRun, TutorialSnippetsExitZeroQuickly) {
  for (const char* name : {"tutorial_01_scalar", "tutorial_02_tensors", "tutorial_03_gradcheck",
                           "tutorial_04_module", "tutorial_05_train"}) {
    SCOPED_TRACE(name);
    Result r = run(name);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_LT(r.seconds, kMaxSeconds) << r.output;
  }
}

TEST_F(ExamplesRun, CustomOpPassesAndTheBuggyVariantIsCaught) {
  Result ok = run("custom_op");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_TRUE(contains(ok.output, "PASSED")) << ok.output;
  Result buggy = run("custom_op", "--buggy");
  EXPECT_EQ(buggy.exit_code, 0) << buggy.output;  // 0 = the bug was caught, as expected
  EXPECT_TRUE(contains(buggy.output, "FAILED")) << buggy.output;
  EXPECT_TRUE(contains(buggy.output, "worst element x[")) << buggy.output;
}

TEST_F(ExamplesRun, ManualBackpropAndHvpAgree) {
  Result m = run("manual_backprop");
  EXPECT_EQ(m.exit_code, 0) << m.output;
  EXPECT_TRUE(contains(m.output, "dL/dh_prev")) << m.output;
  EXPECT_TRUE(contains(m.output, "BPTT")) << m.output;
  Result h = run("hvp");
  EXPECT_EQ(h.exit_code, 0) << h.output;
  EXPECT_TRUE(contains(h.output, "total")) << h.output;
}

TEST_F(ExamplesRun, UsageErrorsExitWith2BeforeAnyWork) {
  // One exit-code contract (examples/cli): a bad flag is exit 2, named, before any output.
  for (const char* cmd : {"tape_graph --bogus", "tape_graph stray", "custom_op --bogus", "custom_op --buggy=maybe",
                          "manual_backprop --bogus", "manual_backprop stray", "hvp --bogus", "hvp stray"}) {
    SCOPED_TRACE(cmd);
    std::string c = cmd, program = c.substr(0, c.find(' ')), args = c.substr(c.find(' ') + 1);
    Result r = run(program, args);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_FALSE(contains(r.output, "Hessian") || contains(r.output, "tape")) << r.output;
  }
  for (const char* program : {"tape_graph", "custom_op", "manual_backprop", "hvp"}) {
    Result help = run(program, "--help");
    EXPECT_EQ(help.exit_code, 0) << program << help.output;
  }
}

TEST_F(ExamplesRun, TapeGraphChecksAndWritesItsDotFile) {
  Result missing = run("tape_graph", "--dot /nonexistent/x.dot");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_TRUE(contains(missing.output, "--dot")) << missing.output;
  EXPECT_FALSE(contains(missing.output, "wrote")) << missing.output;
  EXPECT_EQ(run("tape_graph", "--dot /dev/null").exit_code, 2);
  EXPECT_EQ(run("tape_graph", "--dot .").exit_code, 2);

  std::string dir = (std::filesystem::temp_directory_path() / "tapegrad_tape_graph_XXXXXX").string();
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  Result ok = run("tape_graph", "--dot " + dir + "/step.dot");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_TRUE(contains(ok.output, "wrote " + dir + "/step.dot")) << ok.output;
  std::ifstream in(dir + "/step.dot");
  std::stringstream dot;
  dot << in.rdbuf();
  EXPECT_TRUE(contains(dot.str(), "digraph")) << dot.str();
  auto files = std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator());
  EXPECT_EQ(files, 1) << "no temporary left beside the DOT file";
  std::filesystem::remove_all(dir);
}

TEST_F(ExamplesRun, AssignmentSolutionPasses) {
  Result r = run("assignment/grade_solution");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "score: 5/5")) << r.output;
}

TEST_F(ExamplesRun, AssignmentWrongSolutionFailsWithHelpfulMessages) {
  Result r = run("assignment/grade_wrong");
  EXPECT_NE(r.exit_code, 0) << r.output;
  // Part 1: names the output, the place, the gate and the convention.
  EXPECT_TRUE(contains(r.output, "[FAIL] 1.")) << r.output;
  EXPECT_TRUE(contains(r.output, "hint: the update gate is used the other way round")) << r.output;
  EXPECT_TRUE(contains(r.output, "dL/dweight_hh differs")) << r.output;
  EXPECT_TRUE(contains(r.output, "the z gate (rows 4..7)")) << r.output;
  // Part 2: the custom op's backward, with the worst element and the missing term.
  EXPECT_TRUE(contains(r.output, "[FAIL] 5.")) << r.output;
  EXPECT_TRUE(contains(r.output, "worst element x(")) << r.output;
  EXPECT_TRUE(contains(r.output, "product rule's second term")) << r.output;
}

TEST_F(ExamplesRun, AssignmentSkeletonSaysNotImplemented) {
  Result r = run("assignment/grade_skeleton");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "not implemented yet (TODO: part 1")) << r.output;
  EXPECT_TRUE(contains(r.output, "not implemented yet (TODO: part 2")) << r.output;
}

TEST_F(ExamplesRun, ReadableCharGruTrainingLearnsAndSamples) {
  Result r = run("train_char_gru", "400");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The loss printed at step 400 is well below uniform guessing (ln V).
  auto at = r.output.find("step   400  loss ");
  ASSERT_NE(at, std::string::npos) << r.output;
  double loss = std::stod(r.output.substr(at + 17));
  auto u = r.output.find("uniform guessing: ", at);
  double uniform = std::stod(r.output.substr(u + 18));
  EXPECT_LT(loss, 0.7 * uniform) << r.output;
  EXPECT_TRUE(contains(r.output, "sample: ")) << r.output;
  EXPECT_EQ(run("train_char_gru", "-5").exit_code, 2);
  EXPECT_EQ(run("train_char_gru", "10 20").exit_code, 2);
}

TEST_F(ExamplesRun, MlpSeparatesTheSpirals) {
  Result r = run("mlp_spirals", "--json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto at = r.output.find("\"test_accuracy\":");
  ASSERT_NE(at, std::string::npos) << r.output;
  EXPECT_GE(std::stod(r.output.substr(at + 16)), 0.95) << r.output;
  EXPECT_EQ(run("mlp_spirals", "--epochs 0").exit_code, 2);
  EXPECT_EQ(run("mlp_spirals", "--epochs nan").exit_code, 2);
}
