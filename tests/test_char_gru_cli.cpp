// The command-line contracts of examples/char_gru and examples/gru_gates, run as a user would:
// JSON shapes, step indexing, conventions, a PyTorch-made checkpoint, training that learns,
// deterministic resume, Ctrl-C, and every error path (clear message, exit code 1 or 2).
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "framework/npz.hpp"

using json = nlohmann::json;
using namespace tapegrad;

namespace {

const std::string kBin = TAPEGRAD_EXAMPLES_BIN_DIR;
const std::string kFixtures = TAPEGRAD_FIXTURE_DIR;

struct Result {
  int code;
  std::string out, err;
};

std::string temp_dir() {
  static std::string dir = [] {
    char tmpl[] = "/tmp/tapegrad_cli_XXXXXX";
    return std::string(mkdtemp(tmpl));
  }();
  return dir;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Runs `args` (already shell-quoted) through the shell; captures stdout, stderr, exit code.
Result run(const std::string& args) {
  static int counter = 0;
  std::string out = temp_dir() + "/out" + std::to_string(counter), err = temp_dir() + "/err" + std::to_string(counter++);
  int status = std::system((args + " >" + out + " 2>" + err).c_str());
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, slurp(out), slurp(err)};
}

std::string q(const std::string& s) {  // single-quote for the shell
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

/// A small corpus of repeating words: learnable in a few hundred steps.
std::string corpus_file() {
  static std::string path = [] {
    std::string p = temp_dir() + "/corpus.txt";
    const char* words[] = {"gate", "update", "reset", "candidate", "hidden", "state", "grad", "tape"};
    std::ofstream out(p);
    unsigned x = 12345;
    for (int i = 0; i < 4000; ++i) {
      x = x * 1103515245u + 12345u;
      out << words[(x >> 16) % 8] << '\n';
    }
    return p;
  }();
  return path;
}

std::string small_train(const std::string& extra) {
  return kBin + "/char_gru train --corpus " + q(corpus_file()) +
         " --hidden 32 --batch 8 --seq-len 16 --lr 1e-2 --seed 3 " + extra;
}

/// A checkpoint trained once and shared by the tests below.
std::string trained_checkpoint() {
  static std::string path = [] {
    std::string p = temp_dir() + "/model.npz";
    Result r = run(small_train("--steps 300 --json --checkpoint " + p));
    EXPECT_EQ(r.code, 0) << r.err;
    return p;
  }();
  return path;
}

const std::string kText = "gate\nupdate\nreset\ncandidate\nhidden\nstate\n";  // 39 characters

}  // namespace

TEST(CharGruCli, TrainJsonContractAndLearning) {
  Result r = run(small_train("--steps 300 --json --checkpoint " + temp_dir() + "/t.npz"));
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  for (const char* key : {"train_loss", "heldout_loss", "chars_per_s", "seconds", "steps", "vocab_size"})
    EXPECT_TRUE(j.contains(key)) << key << " missing in " << r.out;
  EXPECT_EQ(j["steps"], 300);
  int V = j["vocab_size"];
  EXPECT_EQ(V, 14);  // the 13 distinct letters of the eight words, and '\n'
  // Well below uniform guessing, log(V) = 2.94 nats.
  EXPECT_LT(j["train_loss"].get<double>(), 0.5 * std::log(double(V))) << r.out;
  EXPECT_LT(j["heldout_loss"].get<double>(), 0.5 * std::log(double(V))) << r.out;
  EXPECT_GT(j["chars_per_s"].get<double>(), 0.0);
  EXPECT_NE(r.err.find("chars/s"), std::string::npos) << "progress bar on stderr";
}

TEST(CharGruCli, SameSeedGivesBitIdenticalLosses) {
  Result a = run(small_train("--steps 40 --json --checkpoint ''"));
  Result b = run(small_train("--steps 40 --json --checkpoint ''"));
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(json::parse(a.out)["train_loss"], json::parse(b.out)["train_loss"]);
  EXPECT_EQ(json::parse(a.out)["heldout_loss"], json::parse(b.out)["heldout_loss"]);
}

TEST(CharGruCli, ResumeMatchesAnUninterruptedRunExactly) {
  std::string full = temp_dir() + "/full.npz", half = temp_dir() + "/half.npz";
  ASSERT_EQ(run(small_train("--steps 60 --json --checkpoint " + full)).code, 0);
  ASSERT_EQ(run(small_train("--steps 25 --json --checkpoint " + half)).code, 0);
  Result r = run(small_train("--steps 60 --json --resume " + half + " --checkpoint " + half));
  ASSERT_EQ(r.code, 0) << r.err;
  npz::Archive a = npz::load_npz(full), b = npz::load_npz(half);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.data, b[i].second.data) << "entry " << a[i].first << " differs after resume";
  }
}

TEST(CharGruCli, ScoreJson) {
  Result r = run(kBin + "/char_gru score --checkpoint " + trained_checkpoint() + " --text " + q(kText) + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  auto lp = j["log_probs"].get<std::vector<double>>();
  ASSERT_EQ(lp.size(), kText.size() - 1);  // text[0] is not predicted
  double mean = 0;
  for (double v : lp) mean -= v / double(lp.size());
  EXPECT_NEAR(j["loss"].get<double>(), mean, 1e-9);
}

TEST(CharGruCli, SampleIsReproducibleAndHonoursPrefix) {
  std::string cmd = kBin + "/char_gru sample --checkpoint " + trained_checkpoint() + " --n 4 --seed 5 --prefix up --max-len 20";
  Result a = run(cmd), b = run(cmd);
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  std::istringstream lines(a.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    EXPECT_EQ(line.rfind("up", 0), 0u) << line;
    EXPECT_LE(line.size(), 22u);
  }
  EXPECT_EQ(n, 4);
  EXPECT_EQ(run(kBin + "/char_gru sample --checkpoint " + trained_checkpoint() + " --temperature 0").code, 2);
}

TEST(GruGatesCli, JsonStepIndexingAndStateChain) {
  Result r = run(kBin + "/gru_gates --checkpoint " + trained_checkpoint() + " --text " + q(kText) + " --steps 1,2,33,34 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["hidden_size"], 32);
  ASSERT_EQ(j["steps"].size(), 4u);
  EXPECT_EQ(j["steps"][0]["t"], 1);
  EXPECT_EQ(j["steps"][0]["char"], std::string(1, kText[0]));   // step t reads text[t-1]
  EXPECT_EQ(j["steps"][2]["char"], std::string(1, kText[32]));
  for (const auto& s : j["steps"])
    for (const char* k : {"h_prev", "r", "z", "n", "h"}) ASSERT_EQ(s[k].size(), 32u) << k;
  for (double v : j["steps"][0]["h_prev"].get<std::vector<double>>()) EXPECT_EQ(v, 0.0);  // h_0 = 0
  EXPECT_EQ(j["steps"][1]["h_prev"], j["steps"][0]["h"]);  // h_prev of step 2 is h_1
  EXPECT_EQ(j["steps"][3]["h_prev"], j["steps"][2]["h"]);
  // h = (1 − z) n + z h_prev, unit by unit (PyTorch's convention).
  const auto& s = j["steps"][3];
  for (std::size_t u = 0; u < 32; ++u) {
    double z = s["z"][u], n = s["n"][u], hp = s["h_prev"][u], h = s["h"][u];
    EXPECT_NEAR(h, (1 - z) * n + z * hp, 1e-6);
  }
}

TEST(GruGatesCli, TablesInBothConventions) {
  std::string base = kBin + "/gru_gates --checkpoint " + trained_checkpoint() + " --text " + q(kText) + " --units 0:4";
  Result py = run(base);
  ASSERT_EQ(py.code, 0) << py.err;
  EXPECT_NE(py.out.find("step 33 reads"), std::string::npos) << py.out;
  EXPECT_NE(py.out.find("step 34 reads"), std::string::npos);
  EXPECT_NE(py.out.find("h_prev"), std::string::npos);
  Result course = run(base + " --convention course");
  ASSERT_EQ(course.code, 0) << course.err;
  EXPECT_NE(course.out.find("Γu=1-z"), std::string::npos) << course.out;
  EXPECT_NE(course.out.find("c~"), std::string::npos);
  // The course's Γu column is 1 − z of the PyTorch table: compare unit 0 of step 33.
  json j = json::parse(run(base + " --json").out);
  double z = j["steps"][0]["z"][0];
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", 1 - z);
  EXPECT_NE(course.out.find(buf), std::string::npos) << "expected Γu = " << buf << " in\n" << course.out;
}

TEST(GruGatesCli, PyTorchCheckpointGivesPyTorchsGatesAndScore) {
  npz::Archive ex = npz::load_npz(kFixtures + "/char_gru_torch_expected.npz");
  auto text_cp = npz::find(ex, "text", "expected").to_vector<std::int64_t>();
  std::string text;
  for (auto c : text_cp) text += static_cast<char>(c);
  std::string ck = kFixtures + "/char_gru_torch.npz";
  for (int layer : {0, 1}) {
    Result r = run(kBin + "/gru_gates --checkpoint " + ck + " --text " + q(text) + " --layer " + std::to_string(layer) +
                " --json --steps 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16");
    ASSERT_EQ(r.code, 0) << r.err;
    json j = json::parse(r.out);
    std::size_t H = j["hidden_size"];
    for (const char* key : {"h_prev", "r", "z", "n", "h"}) {
      auto expected = npz::find(ex, std::string(key) + "_l" + std::to_string(layer), "expected").to_vector<double>();
      for (std::size_t t = 0; t < text.size(); ++t)
        for (std::size_t u = 0; u < H; ++u)
          ASSERT_NEAR(j["steps"][t][key][u].get<double>(), expected[t * H + u], 2e-6)
              << key << " layer " << layer << " step " << t + 1 << " unit " << u;
    }
  }
  Result s = run(kBin + "/char_gru score --checkpoint " + ck + " --text " + q(text) + " --json");
  ASSERT_EQ(s.code, 0) << s.err;
  json j = json::parse(s.out);
  auto lp = npz::find(ex, "log_probs_f32", "expected").to_vector<double>();
  ASSERT_EQ(j["log_probs"].size(), lp.size());
  for (std::size_t i = 0; i < lp.size(); ++i) EXPECT_NEAR(j["log_probs"][i].get<double>(), lp[i], 1e-5);
  EXPECT_NEAR(j["loss"].get<double>(), npz::find(ex, "score_loss", "expected").to_vector<double>()[0], 1e-5);
  // And the checkpoint with an Embedding in front.
  npz::Archive ee = npz::load_npz(kFixtures + "/char_gru_torch_embed_expected.npz");
  Result se = run(kBin + "/char_gru score --checkpoint " + kFixtures + "/char_gru_torch_embed.npz --text " + q(text) + " --json");
  ASSERT_EQ(se.code, 0) << se.err;
  EXPECT_NEAR(json::parse(se.out)["loss"].get<double>(), npz::find(ee, "score_loss", "expected").to_vector<double>()[0], 1e-5);
}

TEST(CliErrors, ClearMessagesAndExitCodes) {
  std::string ck = trained_checkpoint();
  struct Case {
    std::string cmd;
    int code;
    std::string needle;
  };
  std::string empty = temp_dir() + "/empty.txt";
  std::ofstream(empty).close();
  std::string bad_ck = temp_dir() + "/bad.npz";
  {  // a checkpoint without head.weight
    npz::Archive a = npz::load_npz(ck);
    a.erase(std::remove_if(a.begin(), a.end(), [](const auto& e) { return e.first == "head.weight"; }), a.end());
    npz::save_npz(bad_ck, a);
  }
  std::string novocab_ck = temp_dir() + "/novocab.npz";
  {  // a checkpoint without its vocabulary
    npz::Archive a = npz::load_npz(ck);
    a.erase(std::remove_if(a.begin(), a.end(), [](const auto& e) { return e.first == "vocab"; }), a.end());
    npz::save_npz(novocab_ck, a);
  }
  std::string shape_ck = temp_dir() + "/shape.npz";
  {  // inconsistent shapes: gru.weight_hh_l0 with a wrong width
    npz::Archive a = npz::load_npz(ck);
    for (auto& [name, arr] : a)
      if (name == "gru.weight_hh_l0") {
        arr.shape = {arr.shape[0] * arr.shape[1] / 16, 16};
      }
    npz::save_npz(shape_ck, a);
  }
  std::vector<Case> cases = {
      {kBin + "/gru_gates --checkpoint " + ck + " --text 'gate XYZ'", 1, "not in the model's vocabulary"},
      {kBin + "/char_gru score --checkpoint " + ck + " --text 'Q'", 1, "not in the model's vocabulary"},
      {kBin + "/char_gru train --corpus " + empty + " --steps 2", 1, "empty"},
      {kBin + "/char_gru train --corpus /nonexistent/corpus.txt --steps 2", 1, "/nonexistent/corpus.txt"},
      {kBin + "/gru_gates --checkpoint " + bad_ck + " --text gate", 1, "head.weight"},
      {kBin + "/char_gru sample --checkpoint " + novocab_ck, 1, "vocab"},
      {kBin + "/gru_gates --checkpoint " + shape_ck + " --text gate", 1, "gru.weight_hh_l0"},
      {kBin + "/gru_gates --checkpoint /nonexistent.npz --text gate", 1, "/nonexistent.npz"},
      {kBin + "/gru_gates --checkpoint " + ck + " --text gate --steps 5", 1, "past the end"},
      {kBin + "/gru_gates --checkpoint " + ck + " --text gate --steps 0", 1, "1-based"},
      {kBin + "/gru_gates --checkpoint " + ck + " --text gate --steps 1 --layer 3", 1, "layer"},
      {kBin + "/gru_gates --checkpoint " + ck + " --text gate --steps 1 --units 40:50", 1, "--units"},
      {kBin + "/gru_gates --checkpoint " + ck + " --text gate --convention keras", 2, "convention"},
      {kBin + "/char_gru train --hidden -3", 2, "hidden"},
      {kBin + "/char_gru train --bogus", 2, "bogus"},
      {kBin + "/char_gru", 2, "subcommand"},
  };
  for (const auto& c : cases) {
    Result r = run(c.cmd);
    EXPECT_EQ(r.code, c.code) << c.cmd << "\nstderr: " << r.err;
    EXPECT_NE((r.err + r.out).find(c.needle), std::string::npos) << c.cmd << "\nstderr: " << r.err;
    EXPECT_LT(r.code, 128) << "killed by a signal: " << c.cmd;
  }
}

TEST(CharGruCli, CtrlCLeavesAValidCheckpoint) {
  std::string ck = temp_dir() + "/interrupted.npz";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    std::string corpus = corpus_file();
    execl((kBin + "/char_gru").c_str(), "char_gru", "train", "--corpus", corpus.c_str(), "--hidden", "32",
          "--batch", "8", "--seq-len", "16", "--steps", "1000000", "--checkpoint", ck.c_str(), (char*)nullptr);
    _exit(127);
  }
  sleep(2);
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  Result r = run(kBin + "/char_gru score --checkpoint " + ck + " --text gate --json");
  EXPECT_EQ(r.code, 0) << r.err;
  npz::Archive a = npz::load_npz(ck);
  std::int64_t step = npz::find(a, "train.step", ck).to_vector<std::int64_t>()[0];
  EXPECT_GT(step, 0);
}
