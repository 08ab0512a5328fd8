// The course kit (docs/assignments.md): every assignment's grader (rnn_bptt, lstm_cell, gru_forms,
// char_lm, gradient_flow_lab) passes its reference solution,
// explains its sample wrong submission and gives the skeleton 0 points; hostile submissions
// (exit in a static initializer, crash, infinite loop, huge allocation, a printed fake score,
// a std::logic_error) fail only the tests they sabotage and never forge a pass; results.json is
// Gradescope's format.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>

namespace {

struct Result {
  int exit_code = -1;
  std::string output;
};

Result run(const std::string& program, const std::string& args = "") {
  std::string cmd = std::string(TAPEGRAD_EXAMPLES_BIN_DIR) + "/" + program + " " + args + " 2>&1";
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

struct Expect {
  const char* name;
  const char* full_score;
  const char* wrong_hint;
};

const Expect kAssignments[] = {
    {"rnn_bptt", "score: 6/6", "hint: dW_hh uses h_t"},
    {"lstm_cell", "score: 5/5", "hint: dL/dc' from the next step (grad[1]) is not added"},
    {"gru_forms", "score: 6/6", "hint: two mistakes at once"},
    {"char_lm", "score: 7/7", "hint: your frequencies are those of softmax(logits): the temperature has no effect"},
    {"gradient_flow_lab", "score: 6/6", "the loss is normalised by N twice"},
};

TEST(Assignments, SolutionPassesWrongIsExplainedSkeletonScoresZero) {
  for (const Expect& a : kAssignments) {
    std::string base = std::string("assignments/") + a.name;
    Result sol = run(base + "_solution");
    EXPECT_EQ(sol.exit_code, 0) << sol.output;
    EXPECT_TRUE(contains(sol.output, a.full_score)) << sol.output;
    Result wrong = run(base + "_wrong");
    EXPECT_EQ(wrong.exit_code, 1) << wrong.output;
    EXPECT_TRUE(contains(wrong.output, a.wrong_hint)) << wrong.output;
    Result skel = run(base + "_skeleton");
    EXPECT_EQ(skel.exit_code, 1) << skel.output;
    EXPECT_TRUE(contains(skel.output, "score: 0/")) << skel.output;
    EXPECT_TRUE(contains(skel.output, "not implemented yet (TODO: part 1")) << skel.output;
  }
}

TEST(Assignments, TemplateSkeletonScoresZeroAndWritesGradescopeJson) {
  std::string json_path = ::testing::TempDir() + "tapegrad_results.json";
  Result r = run("assignment/grade_skeleton", "--results " + json_path);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "score: 0/5")) << r.output;
  std::ifstream in(json_path);
  nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["score"], 0);
  EXPECT_EQ(j["max_score"], 5);
  ASSERT_EQ(j["tests"].size(), 5u);
  for (const auto& t : j["tests"]) {
    EXPECT_TRUE(t.contains("name") && t.contains("score") && t.contains("max_score") &&
                t.contains("output"));
    EXPECT_TRUE(contains(t["output"].get<std::string>(), "not implemented yet")) << t;
  }
  std::remove(json_path.c_str());
  Result ok = run("assignment/grade_solution", "--results " + json_path);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  std::ifstream in2(json_path);
  nlohmann::json j2 = nlohmann::json::parse(in2);
  EXPECT_EQ(j2["score"], 5);
  std::remove(json_path.c_str());
}

TEST(Assignments, GraderFlagsAreCheckedBeforeAnyTestRuns) {
  // A bad flag value is an error naming the flag, exit code 2, before any test runs (no
  // "Grading submission" line): an instructor's typo does not cost a grading run, and no time
  // limit is silently dropped or overflowed.
  const std::string dir = ::testing::TempDir() + "tapegrad_grader_flags";
  ASSERT_EQ(std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str()), 0);
  const std::pair<std::string, std::string> bad[] = {
      {"--time-limit -1", "--time-limit: '-1' is not a number of seconds"},
      {"--time-limit nan", "--time-limit: 'nan'"},
      {"--time-limit 1e300", "--time-limit: '1e300'"},
      {"--time-limit 5x", "--time-limit: '5x'"},
      {"--time-limit 0", "--time-limit: '0'"},
      {"--results " + dir, "--results: '" + dir + "' is a directory"},
      {"--results " + dir + "/missing/r.json", "directory '" + dir + "/missing' does not exist"},
      {"--text " + dir + "/missing/r.txt", "--text: cannot write"},
      {"--results " + dir + "/r.json --text " + dir + "/r.json", "--results and --text both name"},
      {"--fixtures " + dir + "/missing", "--fixtures: '" + dir + "/missing' is not a directory"},
      {"--tests /etc/passwd", "--tests: '/etc/passwd' is not an executable file"},
  };
  for (const auto& [args, message] : bad) {
    Result r = run("assignment/grade_solution", args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "error: ") && contains(r.output, message)) << args << "\n" << r.output;
    EXPECT_FALSE(contains(r.output, "Grading submission")) << args << "\n" << r.output;
  }
  // Good values: both reports written whole, nothing left beside them.
  Result ok = run("assignment/grade_solution", "--time-limit 20 --results " + dir + "/r.json --text " + dir + "/r.txt");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  std::ifstream in(dir + "/r.json");
  EXPECT_EQ(nlohmann::json::parse(in)["score"], 5);
  std::ifstream text(dir + "/r.txt");
  std::string report((std::istreambuf_iterator<char>(text)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(contains(report, "score: 5/5")) << report;
  FILE* p = ::popen(("ls -A '" + dir + "'").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string names;
  char buf[256];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) names.append(buf, n);
  ::pclose(p);
  EXPECT_EQ(names, "r.json\nr.txt\n");
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(Assignments, TestProgramRejectsBadArgumentsWithoutAborting) {
  // The tests program is run by the grader, and by hand with --list or --all: a malformed value is
  // a usage error (exit 2, naming the flag), never an uncaught exception and SIGABRT.
  const std::pair<std::string, std::string> bad[] = {
      {"--run-test abc", "--run-test: 'abc' is not a whole number"},
      {"--run-test 99999999999999999999999", "--run-test: '99999999999999999999999' is not a whole number"},
      {"--run-test -1", "--run-test: '-1' is not a whole number"},
      {"--run-test", "--run-test needs a value"},
      {"--result-fd x --run-test 0 --token-fd 1", "--result-fd: 'x' is not a whole number"},
      {"--bogus", "unknown option '--bogus'"},
  };
  for (const auto& [args, message] : bad) {
    Result r = run("assignment/grade_solution_tests", args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "error: " + message)) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "usage: ")) << args << "\n" << r.output;
  }
  Result list = run("assignment/grade_solution_tests", "--list");
  EXPECT_EQ(list.exit_code, 0) << list.output;
}

TEST(Assignments, HostileSubmissionsCannotForgeAPass) {
  // exit(0) before main, with a printed perfect score: 0 points, exit code 1.
  Result exit_static = run("assignments/hostile_exit_static");
  EXPECT_EQ(exit_static.exit_code, 1) << exit_static.output;
  EXPECT_TRUE(contains(exit_static.output, "\nscore: 0/5")) << exit_static.output;
  EXPECT_TRUE(contains(exit_static.output, "before the test reported a result")) << exit_static.output;
  // Sabotaged gru_cell: the two swish tests still pass, the three gru_cell tests fail, each with
  // the reason; a printed score and forged records on every descriptor count for nothing.
  const std::pair<const char*, const char*> cases[] = {
      {"crash", "segmentation fault"},
      {"loop", "timed out"},
      {"alloc", "ran out of memory"},
      {"fake_output", "does not carry this run's token"},
      {"logic_error", "raised std::out_of_range"},
  };
  for (auto [name, reason] : cases) {
#if defined(__SANITIZE_ADDRESS__)
    // Under AddressSanitizer the grader sets no address-space limit (ASan reserves terabytes), so
    // the memory hog would really take the machine's memory: skip it there.
    if (std::string(name) == "alloc") continue;
#endif
    Result r = run(std::string("assignments/hostile_") + name, "--time-limit 5");  // margin for a loaded CI machine
    EXPECT_EQ(r.exit_code, 1) << name << r.output;
    EXPECT_TRUE(contains(r.output, "\nscore: 2/5\n")) << name << r.output;
#if defined(__SANITIZE_ADDRESS__)
    // Built with ASan + UBSan, the null store is caught by the sanitizer (exit code 1, a report),
    // not by SIGSEGV: the grader names that instead.
    if (std::string(name) == "crash") reason = "a sanitizer stopped it";
#endif
    EXPECT_TRUE(contains(r.output, reason)) << name << r.output;
    EXPECT_FALSE(contains(r.output, "not implemented yet")) << name << r.output;
  }
}

}  // namespace
