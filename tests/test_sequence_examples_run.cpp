// Runs the two sequence examples (examples/adding_problem, examples/date_translation) with a
// small --steps: exit codes, the --json contract, determinism under --seed, and bad flags
// (exit 2). Their accuracy at the default budgets is measured, not asserted here, except one
// cheap check that the date model learns (200 steps reach 97–99.9 % in ~8 s on an idle machine).
// The programs are built first (tests/CMakeLists: *examples_run depends on all_examples).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace {

const std::string kBin = TAPEGRAD_EXAMPLES_BIN_DIR;

struct Result {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

Result run(const std::string& program, const std::string& args) {
  std::string base = testing::TempDir() + "seq_example_" + std::to_string(::getpid());
  int status = std::system((kBin + "/" + program + " " + args + " > " + base + ".out 2> " + base + ".err").c_str());
  Result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  for (auto [suffix, target] : {std::pair{".out", &r.out}, std::pair{".err", &r.err}}) {
    std::ifstream in(base + suffix);
    std::stringstream ss;
    ss << in.rdbuf();
    *target = ss.str();
    std::filesystem::remove(base + suffix);
  }
  return r;
}

class SequenceExamplesRun : public testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kBin + "/adding_problem") || !std::filesystem::exists(kBin + "/date_translation"))
      GTEST_SKIP() << "examples are not built";
  }
};

}  // namespace

TEST_F(SequenceExamplesRun, AddingProblemJsonHasEveryModelAndTheBaseline) {
  Result r = run("adding_problem", "--steps 5 --seed 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_NEAR(j.at("baseline_mse").get<double>(), 1.0 / 6.0, 0.02);
  for (const char* model : {"gru", "lstm", "rnn"}) {
    SCOPED_TRACE(model);
    EXPECT_TRUE(std::isfinite(j.at(model).at("test_mse").get<double>()));
    EXPECT_GT(j.at(model).at("seconds").get<double>(), 0.0);
    EXPECT_EQ(j.at(model).size(), 2u);
  }
  EXPECT_EQ(j.size(), 4u);
  Result again = run("adding_problem", "--steps 5 --seed 3 --json");  // deterministic given --seed
  auto k = nlohmann::json::parse(again.out);
  for (const char* model : {"gru", "lstm", "rnn"})
    EXPECT_EQ(j[model]["test_mse"], k[model]["test_mse"]) << model;
}

TEST_F(SequenceExamplesRun, DateTranslationJsonContractAndDeterminism) {
  Result r = run("date_translation", "--steps 3 --seed 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.size(), 3u) << r.out;  // exactly {"accuracy", "steps", "seconds"}
  EXPECT_EQ(j.at("steps").get<int>(), 3);
  EXPECT_GE(j.at("accuracy").get<double>(), 0.0);
  EXPECT_LE(j.at("accuracy").get<double>(), 1.0);
  EXPECT_GT(j.at("seconds").get<double>(), 0.0);
  Result again = run("date_translation", "--steps 3 --seed 1 --json");
  EXPECT_EQ(j["accuracy"], nlohmann::json::parse(again.out)["accuracy"]);
}

TEST_F(SequenceExamplesRun, DateTranslationLearnsAndPrintsAttentionMaps) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "too slow under the sanitizers";
#endif
  Result r = run("date_translation", "--steps 200");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto pos = r.out.find("test exact-match accuracy ");
  ASSERT_NE(pos, std::string::npos) << r.out;
  EXPECT_GE(std::stod(r.out.substr(pos + 26)), 90.0) << r.out;  // 99.9 % measured with seed 0
  EXPECT_NE(r.out.find(" → "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("█"), std::string::npos) << r.out;
}

TEST_F(SequenceExamplesRun, BadFlagsExitTwo) {
  for (const char* program : {"adding_problem", "date_translation"})
    for (const char* args : {"--steps 0", "--steps -5", "--steps abc", "--seed -1", "--seed 1e3", "--bogus"}) {
      SCOPED_TRACE(std::string(program) + " " + args);
      Result r = run(program, args);
      EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
      EXPECT_TRUE(r.out.empty()) << r.out;  // stopped before any work
    }
}
