// The command-line contracts of examples/char_gru and examples/gru_gates, run as a user would:
// JSON shapes, step indexing, conventions, a PyTorch-made checkpoint, training that learns,
// deterministic resume, Ctrl-C, and every error path (clear message, exit code 1 or 2).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "framework/npz.hpp"
#include "process_support.hpp"

using json = nlohmann::json;
using namespace tapegrad;

namespace {

const std::string kBin = TAPEGRAD_EXAMPLES_BIN_DIR;
const std::string kFixtures = TAPEGRAD_FIXTURE_DIR;

struct Result {
  int code;
  std::string out, err;
};

/// This process's scratch directory, removed with everything in it when the process exits (each
/// test runs as its own process under ctest: a directory left behind by each would pile up).
const std::string& temp_dir() {
  static const process::ScratchDir dir("tapegrad_cli");
  return dir.path;
}

using process::slurp;  // the whole file

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
  // which build of the engine's GEMM kernel the run multiplied on (framework/packed_gemm.hpp)
  ASSERT_TRUE(j.contains("gemm_kernel")) << r.out;
  const std::string kernel = j["gemm_kernel"];
  EXPECT_TRUE(kernel == "native" || kernel == "avx512" || kernel == "avx2" || kernel == "blas") << kernel;
}

TEST(CharGruCli, TheGemmKernelCanBeChosenAndABadChoiceIsAClearError) {
  // TAPEGRAD_GEMM_KERNEL=blas: every product on BLAS, reported as such; a name that is not a
  // kernel: exit status 1 and one line naming the variable and the choices, no checkpoint written.
  Result r = run("TAPEGRAD_GEMM_KERNEL=blas " + small_train("--steps 20 --json"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["gemm_kernel"], "blas") << r.out;
  const std::string ck = temp_dir() + "/bad_kernel.npz";
  r = run("TAPEGRAD_GEMM_KERNEL='avx9; touch " + temp_dir() + "/pwned' " + small_train("--steps 20 --checkpoint " + ck));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("error: TAPEGRAD_GEMM_KERNEL=\"avx9; touch"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("blas"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(ck));
  EXPECT_FALSE(std::filesystem::exists(temp_dir() + "/pwned"));
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
  for (const char* suffix : {".npz", ".resume.npz"}) {  // the model and its resume state
    std::string fa = full.substr(0, full.size() - 4) + suffix, fb = half.substr(0, half.size() - 4) + suffix;
    npz::Archive a = npz::load_npz(fa), b = npz::load_npz(fb);
    ASSERT_EQ(a.size(), b.size()) << suffix;
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].first, b[i].first);
      EXPECT_EQ(a[i].second.data, b[i].second.data) << "entry " << a[i].first << " differs after resume";
    }
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

TEST(CharGruCli, SampleJsonHasTheSamplesAndCountsEveryDraw) {
  // --json: the same samples as the plain output, and "characters" counts every character drawn:
  // each sample draws its characters after the prefix, plus its closing newline if it ended early.
  // (With --max-len 3 after "up" no sample can hold a filtered word, so none is drawn again and
  // the count is exact on any machine's weights.)
  const std::string base = kBin + "/char_gru sample --checkpoint " + trained_checkpoint() + " --n 5 --seed 9 --prefix up --max-len 3";
  Result plain = run(base), js = run(base + " --json");
  ASSERT_EQ(plain.code, 0) << plain.err;
  ASSERT_EQ(js.code, 0) << js.err;
  json j = json::parse(js.out);
  auto samples = j["samples"].get<std::vector<std::string>>();
  std::string joined;
  for (const std::string& s : samples) joined += s + "\n";
  EXPECT_EQ(joined, plain.out);
  std::size_t expected = 0;
  for (const std::string& s : samples) {
    ASSERT_EQ(s.rfind("up", 0), 0u) << s;
    const std::size_t drawn = s.size() - 2;  // ASCII corpus: one byte per character
    expected += drawn == 3 ? 3 : drawn + 1;  // max_len reached, or a newline drawn
  }
  EXPECT_EQ(j["characters"].get<std::size_t>(), expected);
  EXPECT_GT(j["seconds"].get<double>(), 0.0);
  EXPECT_NEAR(j["chars_per_s"].get<double>(), double(j["characters"].get<std::size_t>()) / j["seconds"].get<double>(),
              1e-6 * j["chars_per_s"].get<double>());
}

TEST(CharGruCli, SampleFilterIsReportedAndCanBeTurnedOff) {
  // A --prefix that holds a word of the classroom word list can never give a clean sample: each
  // is printed as PREFIX[filtered] at once (no draws), with a note on stderr naming the flag that
  // turns the filter off, and counted in --json's "filtered"; --no-filter prints samples as drawn.
  // (The word is spelled in ROT13 here, as the list in char_model.cpp is, and uses only letters
  // of the test corpus's vocabulary.)
  std::string word = "fuvg";
  for (char& c : word) c = char('a' + (c - 'a' + 13) % 26);
  const std::string base = kBin + "/char_gru sample --checkpoint " + trained_checkpoint() +
                           " --n 2 --seed 4 --max-len 5 --prefix " + word;
  Result r = run(base);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, word + "[filtered]\n" + word + "[filtered]\n");
  EXPECT_NE(r.err.find("sample 1 starts with a --prefix"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("sample 2 starts with a --prefix"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--no-filter"), std::string::npos) << r.err;
  Result js = run(base + " --json");
  ASSERT_EQ(js.code, 0) << js.err;
  json j = json::parse(js.out);
  EXPECT_EQ(j["filtered"], 2);
  EXPECT_EQ(j["characters"], 0);

  Result raw = run(base + " --no-filter");
  ASSERT_EQ(raw.code, 0) << raw.err;
  EXPECT_EQ(raw.err, "");
  std::istringstream lines(raw.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    EXPECT_EQ(line.rfind(word, 0), 0u) << line;
    EXPECT_EQ(line.find("[filtered]"), std::string::npos) << line;
    EXPECT_LE(line.size(), word.size() + 5);
  }
  EXPECT_EQ(n, 2);
  Result raw_js = run(base + " --no-filter --json");
  ASSERT_EQ(raw_js.code, 0) << raw_js.err;
  json k = json::parse(raw_js.out);
  EXPECT_EQ(k["filtered"], 0);
  EXPECT_GT(k["characters"].get<std::size_t>(), 0u);
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
      {kBin + "/char_gru train --corpus /nonexistent/corpus.txt --steps 2", 2, "/nonexistent/corpus.txt"},
      {kBin + "/gru_gates --checkpoint " + bad_ck + " --text gate", 1, "head.weight"},
      {kBin + "/char_gru sample --checkpoint " + novocab_ck, 1, "vocab"},
      {kBin + "/gru_gates --checkpoint " + shape_ck + " --text gate", 1, "gru.weight_hh_l0"},
      {kBin + "/gru_gates --checkpoint /nonexistent.npz --text gate", 2, "/nonexistent.npz"},
      {kBin + "/gru_gates --checkpoint " + ck + " --text gate --steps 5", 2, "past the end"},
      {kBin + "/gru_gates --checkpoint " + ck + " --text gate --steps 0", 2, "1-based"},
      {kBin + "/gru_gates --checkpoint " + ck + " --text gate --steps 1 --layer 3", 2, "layer"},
      {kBin + "/gru_gates --checkpoint " + ck + " --text gate --steps 1 --units 40:50", 2, "--units"},
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
  std::string state = ck.substr(0, ck.size() - 4) + ".resume.npz";
  npz::Archive a = npz::load_npz(state);
  std::int64_t step = npz::find(a, "train.step", state).to_vector<std::int64_t>()[0];
  EXPECT_GT(step, 0);
}

// ---- hostile input and interrupted work -----------------------------------------------------------

namespace {

std::string state_of(const std::string& ck) { return ck.substr(0, ck.size() - 4) + ".resume.npz"; }

/// A 2-layer model trained a few steps: the base of the broken-file variants below.
std::string two_layer_checkpoint() {
  static std::string path = [] {
    std::string p = temp_dir() + "/two_layer.npz";
    Result r = run(kBin + "/char_gru train --corpus " + q(corpus_file()) +
                   " --layers 2 --hidden 8 --batch 8 --seq-len 16 --steps 5 --json --checkpoint " + p);
    EXPECT_EQ(r.code, 0) << r.err;
    return p;
  }();
  return path;
}

/// Writes `a` after `edit` to a new file and returns its path.
template <class F>
std::string variant(const std::string& base, const std::string& name, F edit) {
  npz::Archive a = npz::load_npz(base);
  edit(a);
  std::string p = temp_dir() + "/" + name + ".npz";
  npz::save_npz(p, a);
  return p;
}

void erase(npz::Archive& a, const std::string& name) {
  a.erase(std::remove_if(a.begin(), a.end(), [&](const auto& e) { return e.first == name; }), a.end());
}

npz::Array& entry(npz::Archive& a, const std::string& name) {
  for (auto& [n, arr] : a)
    if (n == name) return arr;
  throw std::runtime_error("no entry " + name);
}

bool has_temporaries(const std::string& dir) {
  Result r = run("(ls -a " + q(dir) + " | grep -c '\\.tmp\\.' || true)");
  return std::stoi(r.out) != 0;
}

pid_t spawn_train(const std::vector<std::string>& extra, bool ignore_hangup = false) {
  pid_t pid = fork();
  if (pid == 0) {
    if (ignore_hangup) std::signal(SIGHUP, SIG_IGN);  // as `nohup` starts it
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    std::vector<std::string> args = {"char_gru", "train", "--corpus", corpus_file(), "--batch", "8",
                                     "--seq-len", "16", "--steps", "1000000"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv((kBin + "/char_gru").c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int wait_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST(CharGruCheckpoint, IsExactlyTheStateDictPlusVocab) {
  npz::Archive a = npz::load_npz(trained_checkpoint());
  std::vector<std::string> names;
  for (const auto& e : a) names.push_back(e.first);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"gru.bias_hh_l0", "gru.bias_ih_l0", "gru.weight_hh_l0",
                                             "gru.weight_ih_l0", "head.bias", "head.weight", "vocab"}));
  // What --resume needs is beside it, and only there.
  npz::Archive s = npz::load_npz(state_of(trained_checkpoint()));
  for (const auto& e : s) EXPECT_TRUE(e.first.rfind("optim.", 0) == 0 || e.first.rfind("train.", 0) == 0) << e.first;
}

TEST(CharGruCheckpoint, AnyVocabularyOrderGivesTheSameNumbers) {
  // Reverse the one-hot order: vocab, head rows and bias, and weight_ih_l0's columns together.
  std::string ck = trained_checkpoint();
  std::string rev = variant(ck, "reversed_vocab", [](npz::Archive& a) {
    npz::Array& v = entry(a, "vocab");
    auto cps = v.to_vector<std::int32_t>();
    std::size_t V = cps.size();
    std::reverse(cps.begin(), cps.end());
    v = npz::Array::from_i32({V}, cps.data());
    auto permute_rows = [&](npz::Array& w) {
      std::size_t cols = w.shape.size() == 2 ? w.shape[1] : 1;
      auto x = w.to_vector<float>(), y = x;
      for (std::size_t r = 0; r < V; ++r)
        for (std::size_t c = 0; c < cols; ++c) y[r * cols + c] = x[(V - 1 - r) * cols + c];
      w = npz::Array::from_f32(w.shape, y.data());
    };
    permute_rows(entry(a, "head.weight"));
    permute_rows(entry(a, "head.bias"));
    npz::Array& wih = entry(a, "gru.weight_ih_l0");  // (3H, V): permute columns
    auto x = wih.to_vector<float>(), y = x;
    for (std::size_t r = 0; r < wih.shape[0]; ++r)
      for (std::size_t c = 0; c < V; ++c) y[r * V + c] = x[r * V + (V - 1 - c)];
    wih = npz::Array::from_f32(wih.shape, y.data());
  });
  Result a = run(kBin + "/char_gru score --json --checkpoint " + ck + " --text " + q(kText));
  Result b = run(kBin + "/char_gru score --json --checkpoint " + rev + " --text " + q(kText));
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_NEAR(json::parse(a.out)["loss"].get<double>(), json::parse(b.out)["loss"].get<double>(), 1e-6);
  Result g = run(kBin + "/gru_gates --json --steps 5 --checkpoint " + rev + " --text " + q(kText));
  Result h = run(kBin + "/gru_gates --json --steps 5 --checkpoint " + ck + " --text " + q(kText));
  ASSERT_EQ(g.code, 0) << g.err;
  auto za = json::parse(g.out)["steps"][0]["z"].get<std::vector<double>>();
  auto zb = json::parse(h.out)["steps"][0]["z"].get<std::vector<double>>();
  for (std::size_t i = 0; i < za.size(); ++i) EXPECT_NEAR(za[i], zb[i], 1e-6);
}

TEST(CharGruCheckpoint, BrokenFilesNameTheFileAndEntry) {
  std::string two = two_layer_checkpoint();
  struct Case {
    std::string file, needle;
  };
  std::vector<Case> cases = {
      {variant(two, "no_l1", [](npz::Archive& a) { erase(a, "gru.weight_ih_l1"); }), "gru.weight_ih_l1"},
      {variant(two, "l0_l2", [](npz::Archive& a) {
         for (auto& [n, arr] : a)
           if (n.size() > 3 && n.compare(n.size() - 3, 3, "_l1") == 0) n = n.substr(0, n.size() - 1) + "2";
       }), "l1"},
      {variant(two, "nan", [](npz::Archive& a) {
         npz::Array& w = entry(a, "head.weight");
         auto v = w.to_vector<float>();
         v[3] = NAN;
         w = npz::Array::from_f32(w.shape, v.data());
       }), "head.weight"},
      {variant(two, "surrogate", [](npz::Archive& a) {
         npz::Array& v = entry(a, "vocab");
         auto cps = v.to_vector<std::int32_t>();
         cps[0] = 0xD800;
         v = npz::Array::from_i32(v.shape, cps.data());
       }), "vocab"},
      {variant(two, "duplicate", [](npz::Archive& a) {
         npz::Array& v = entry(a, "vocab");
         auto cps = v.to_vector<std::int32_t>();
         cps[1] = cps[0];
         v = npz::Array::from_i32(v.shape, cps.data());
       }), "appears twice"},
      {variant(two, "float_vocab", [](npz::Archive& a) {
         npz::Array& v = entry(a, "vocab");
         auto cps = v.to_vector<double>();
         v = npz::Array::from_f64(v.shape, cps.data());
       }), "entry 'vocab'"},
      {variant(two, "extra", [](npz::Archive& a) {
         float x = 1;
         a.emplace_back("optim.state.0.step", npz::Array::from_f32({}, &x));
       }), "optim.state.0.step"},
      {variant(two, "plain_gru", [](npz::Archive& a) {  // a plain GRU's state dict
         erase(a, "head.weight");
         erase(a, "head.bias");
       }), "head.weight"},
  };
  for (const auto& c : cases) {
    Result r = run(kBin + "/char_gru score --checkpoint " + c.file + " --text gate --json");
    EXPECT_EQ(r.code, 1) << c.file << "\n" << r.err;
    EXPECT_NE(r.err.find(c.file), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.needle << " not in: " << r.err;
  }
}

TEST(CharGruCheckpoint, ZipBombIsRefusedBeforeInflating) {
  // 160 MB of zeros deflate to about 160 KB: far more than such a file can honestly hold.
  std::vector<float> zeros(40u << 20, 0.0f);
  npz::Archive a = npz::load_npz(trained_checkpoint());
  a.emplace_back("junk", npz::Array::from_f32({zeros.size()}, zeros.data()));
  std::string bomb = temp_dir() + "/bomb.npz";
  npz::save_npz(bomb, a, /*compress=*/true);
#if defined(__SANITIZE_ADDRESS__)
  const std::string limit;  // ASan reserves terabytes of address space: no ulimit -v there
#else
  const std::string limit = "ulimit -v 1000000; ";  // 1 GB: inflating the bomb would need more
#endif
  Result r = run(limit + kBin + "/char_gru score --checkpoint " + bomb + " --text gate");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("zip bomb"), std::string::npos) << r.err;
}

TEST(CharGruResume, StateIsValidatedEntryByEntry) {
  std::string ck = temp_dir() + "/rs.npz";
  ASSERT_EQ(run(small_train("--steps 5 --json --checkpoint " + ck)).code, 0);
  std::string state = state_of(ck);
  auto with_state = [&](const std::string& name, auto edit) {
    std::string dir = temp_dir() + "/" + name;
    mkdir(dir.c_str(), 0755);
    std::string c2 = dir + "/m.npz";
    run("cp " + ck + " " + c2);
    npz::Archive a = npz::load_npz(state);
    edit(a);
    npz::save_npz(state_of(c2), a);
    return run(small_train("--steps 20 --json --resume " + c2 + " --checkpoint " + dir + "/out.npz"));
  };
  auto set_i64 = [](std::int64_t v) { return [v](npz::Archive& a) { entry(a, "train.batch") = npz::Array::from_i64({}, &v); }; };
  struct Case {
    Result r;
    std::string needle;
  };
  std::vector<double> many(1000000, 1.0);
  std::vector<Case> cases = {
      {with_state("batch0", set_i64(0)), "train.batch"},
      {with_state("step_neg", [](npz::Archive& a) { std::int64_t v = -1; entry(a, "train.step") = npz::Array::from_i64({}, &v); }), "train.step"},
      {with_state("losses", [&](npz::Archive& a) { entry(a, "train.recent_losses") = npz::Array::from_f64({many.size()}, many.data()); }), "train.recent_losses"},
      {with_state("no_optim", [](npz::Archive& a) { erase(a, "optim.state.0.exp_avg"); }), "optimizer state"},
      {with_state("other_ck", [](npz::Archive& a) { std::int64_t v = 42; entry(a, "train.weights_hash") = npz::Array::from_i64({}, &v); }), "another checkpoint"},
      {with_state("float_step", [](npz::Archive& a) { double v = 3; entry(a, "train.step") = npz::Array::from_f64({}, &v); }), "train.step"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(c.r.code, 1) << c.r.err;
    EXPECT_NE(c.r.err.find(c.needle), std::string::npos) << c.needle << " not in: " << c.r.err;
    EXPECT_NE(c.r.err.find(".resume.npz"), std::string::npos) << "names the file: " << c.r.err;
  }
  // The resume state missing altogether.
  std::string lone = temp_dir() + "/lone.npz";
  run("cp " + ck + " " + lone);
  Result r = run(small_train("--steps 20 --resume " + lone + " --checkpoint ''"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("lone.resume.npz"), std::string::npos) << r.err;
  // Another corpus.
  std::string other = temp_dir() + "/other_corpus.txt";
  std::ofstream(other) << slurp(corpus_file()).substr(7);
  r = run(kBin + "/char_gru train --corpus " + other + " --steps 20 --resume " + ck + " --checkpoint ''");
  EXPECT_NE(r.code, 0);
}

TEST(CharGruTraining, SigtermAndSighupSaveLikeCtrlC) {
  for (int sig : {SIGTERM, SIGHUP}) {
    std::string dir = temp_dir() + "/sig" + std::to_string(sig);
    mkdir(dir.c_str(), 0755);
    std::string ck = dir + "/m.npz";
    pid_t pid = spawn_train({"--checkpoint", ck, "--hidden", "32"});
    sleep(2);
    kill(pid, sig);
    EXPECT_EQ(wait_code(pid), 130) << "signal " << sig;
    EXPECT_EQ(run(kBin + "/char_gru score --checkpoint " + ck + " --text gate").code, 0);
    npz::Archive s = npz::load_npz(state_of(ck));
    EXPECT_GT(npz::find(s, "train.step", ck).to_vector<std::int64_t>()[0], 0);
    EXPECT_FALSE(has_temporaries(dir));
  }
}

// `nohup char_gru train ... &`: a hangup ignored at start stays ignored (the run outlives the
// terminal); SIGTERM still saves and stops it.
TEST(CharGruTraining, NohupOutlivesTheHangup) {
  std::string dir = temp_dir() + "/nohup";
  mkdir(dir.c_str(), 0755);
  std::string ck = dir + "/m.npz";
  pid_t pid = spawn_train({"--checkpoint", ck, "--hidden", "32"}, /*ignore_hangup=*/true);
  sleep(2);
  kill(pid, SIGHUP);
  sleep(1);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, WNOHANG), 0) << "the run stopped on a hangup it was started to ignore";
  kill(pid, SIGTERM);
  EXPECT_EQ(wait_code(pid), 130);
  EXPECT_EQ(run(kBin + "/char_gru score --checkpoint " + ck + " --text gate").code, 0);
  EXPECT_FALSE(has_temporaries(dir));
}

TEST(CharGruTraining, SecondSignalDuringTheSaveLosesNothing) {
  std::string dir = temp_dir() + "/double";
  mkdir(dir.c_str(), 0755);
  std::string ck = dir + "/m.npz";
  pid_t pid = spawn_train({"--checkpoint", ck, "--hidden", "600"});  // a save of ~20 MB
  sleep(3);
  kill(pid, SIGINT);
  for (int i = 0; i < 20; ++i) {
    usleep(2000);
    kill(pid, SIGINT);
  }
  EXPECT_EQ(wait_code(pid), 130);
  EXPECT_EQ(run(kBin + "/char_gru score --checkpoint " + ck + " --text gate").code, 0);
  EXPECT_FALSE(has_temporaries(dir));
}

TEST(CharGruTraining, SaveEveryBoundsTheLoss) {
  std::string dir = temp_dir() + "/every";
  mkdir(dir.c_str(), 0755);
  std::string ck = dir + "/m.npz";
  pid_t pid = spawn_train({"--checkpoint", ck, "--hidden", "32", "--save-every", "20"});
  sleep(3);
  kill(pid, SIGKILL);  // a crash: no handler runs
  wait_code(pid);
  npz::Archive s = npz::load_npz(state_of(ck));
  std::int64_t step = npz::find(s, "train.step", ck).to_vector<std::int64_t>()[0];
  EXPECT_GT(step, 0);
  EXPECT_EQ(step % 20, 0);
  EXPECT_EQ(run(kBin + "/char_gru score --checkpoint " + ck + " --text gate").code, 0);
}

TEST(CharGruTraining, DivergingRunNeverOverwritesAGoodCheckpoint) {
  std::string ck = temp_dir() + "/good.npz";
  ASSERT_EQ(run(small_train("--steps 5 --json --checkpoint " + ck)).code, 0);
  std::string before = slurp(ck);
  Result r = run(kBin + "/char_gru train --corpus " + q(corpus_file()) +
                 " --hidden 32 --batch 8 --seq-len 16 --lr 1e308 --steps 50 --json --checkpoint " + ck);
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("diverged"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(ck), before);
}

TEST(CharGruTraining, OutputsAreCheckedBeforeTheFirstStep) {
  std::string corpus_copy = temp_dir() + "/corpus_copy.txt";
  run("cp " + corpus_file() + " " + corpus_copy);
  std::string before = slurp(corpus_copy);
  struct Case {
    std::string cmd, needle;
  };
  std::vector<Case> cases = {
      {"--checkpoint /nonexistent/dir/m.npz", "does not exist"},
      {"--checkpoint /dev/null", "character device"},
      {"--checkpoint " + temp_dir(), "directory"},
  };
  for (const auto& c : cases) {
    Result r = run(small_train("--steps 1000000 " + c.cmd));
    EXPECT_EQ(r.code, 2) << c.cmd << "\n" << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--checkpoint"), std::string::npos) << r.err;
  }
  Result r = run(kBin + "/char_gru train --corpus " + corpus_copy + " --steps 1000000 --checkpoint " + corpus_copy);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(slurp(corpus_copy), before);
}

TEST(CharGruFlags, BadValuesAreUsageErrorsNamingTheFlag) {
  std::string ck = trained_checkpoint();
  std::string fifo = temp_dir() + "/fifo";
  mkfifo(fifo.c_str(), 0600);
  struct Case {
    std::string cmd, flag;
  };
  std::vector<Case> cases = {
      {"/char_gru sample --checkpoint " + ck + " --temperature nan", "--temperature"},
      {"/char_gru train --clip nan", "--clip"},
      {"/char_gru train --clip-value nan", "--clip-value"},
      {"/char_gru train --lr inf", "--lr"},
      {"/char_gru train --seed 18446744073709551616", "--seed"},
      {"/char_gru train --hidden -1", "--hidden"},
      {"/char_gru train --embed-dim -1 --embed", "--embed-dim"},
      {"/char_gru train --embed-dim 8", "--embed-dim"},
      {"/char_gru train --corpus " + corpus_file() + " --steps 900 --resume " + ck + " --hidden 8", "--hidden"},
      {"/char_gru train --corpus " + corpus_file() + " --steps 900 --resume " + ck + " --batch 9", "--batch"},
      {"/char_gru train --corpus " + corpus_file() + " --steps 900 --resume " + ck + " --dtype float64", "--dtype"},
      {"/char_gru demo --text ab", "--text"},
      {"/char_gru train --corpus " + temp_dir(), "--corpus"},
      {"/char_gru train --corpus /dev/zero", "--corpus"},
      {"/char_gru train --corpus " + fifo, "--corpus"},
      {"/gru_gates --checkpoint " + ck + " --text gate --steps 1 --units 0:-1", "--units"},
      {"/gru_gates --checkpoint " + ck + " --text gate --steps 1 --layer -1", "--layer"},
      {"/gru_gates --checkpoint " + ck + " --text gate --steps 1 --plot x.jpg", "--plot"},
  };
  for (const auto& c : cases) {
    Result r = run("timeout 20 " + kBin + c.cmd);
    EXPECT_EQ(r.code, 2) << c.cmd << "\n" << r.err;
    EXPECT_NE(r.err.find(c.flag), std::string::npos) << c.cmd << "\n" << r.err;
    EXPECT_EQ(r.err.find("18446744073709551615 "), std::string::npos) << r.err;
  }
}

TEST(GruGatesPlot, NoInputBecomesGnuplotSyntax) {
  std::string dir = temp_dir() + "/plot";
  mkdir(dir.c_str(), 0755);
  std::string ck = trained_checkpoint();
  // A text of the vocabulary's own characters cannot carry quotes; the path can (relative to
  // the working directory, so that the directory part exists).
  std::vector<std::string> paths = {
      "a.png'; system 'touch PWNED'; set output 'b.png",
      "c`touch PWNED`.png",
      "d\nsystem 'touch PWNED'\n.png",
      "e\"; system(\"touch PWNED\"); \".svg",
      "f$(touch PWNED);.png",
  };
  for (const auto& p : paths) {
    Result r = run("cd " + q(dir) + " && " + kBin + "/gru_gates --checkpoint " + ck + " --text " + q(kText) +
                   " --plot " + q(p));
    EXPECT_EQ(r.code, 0) << p << "\n" << r.err;
    std::ifstream written(dir + "/" + p);
    EXPECT_TRUE(written.good()) << "the picture goes exactly where the user said: " << p;
  }
  EXPECT_FALSE(std::ifstream(dir + "/PWNED").good()) << "a command ran";
  EXPECT_FALSE(has_temporaries(dir));
}

TEST(CourseGru, ResetBeforeTrainsAndGatesUseTheCoursesCandidate) {
  std::string ck = temp_dir() + "/reset_before.npz";
  Result tr = run(small_train("--steps 40 --reset-before --json --checkpoint " + ck));
  ASSERT_EQ(tr.code, 0) << tr.err;
  npz::Archive a = npz::load_npz(ck);
  EXPECT_EQ(npz::find(a, "reset_before", ck).to_vector<std::int64_t>()[0], 1);  // the variant is recorded
  Result g = run(kBin + "/gru_gates --checkpoint " + ck + " --text " + q(kText) + " --steps 2 --json --convention course");
  ASSERT_EQ(g.code, 0) << g.err;
  json j = json::parse(g.out);
  EXPECT_EQ(j["convention"], "course");
  EXPECT_EQ(j["variant"], "reset_before");
  const json& s = j["steps"][0];
  for (const char* k : {"c_prev", "gamma_r", "gamma_u", "c_tilde", "c"}) ASSERT_TRUE(s.contains(k)) << k;
  // c~ = tanh(W_in x + b_in + W_hn (Γr ⊙ c_prev) + b_hn) with x the one-hot of text[1].
  auto vocab = npz::find(a, "vocab", ck).to_vector<std::int64_t>();
  auto W_ih = npz::find(a, "gru.weight_ih_l0", ck).to_vector<double>();
  auto W_hh = npz::find(a, "gru.weight_hh_l0", ck).to_vector<double>();
  auto b_ih = npz::find(a, "gru.bias_ih_l0", ck).to_vector<double>();
  auto b_hh = npz::find(a, "gru.bias_hh_l0", ck).to_vector<double>();
  const std::size_t H = 32, V = vocab.size();
  std::size_t x = std::find(vocab.begin(), vocab.end(), std::int64_t(kText[1])) - vocab.begin();
  auto hp = s["c_prev"].get<std::vector<double>>(), r = s["gamma_r"].get<std::vector<double>>();
  auto gu = s["gamma_u"].get<std::vector<double>>(), ct = s["c_tilde"].get<std::vector<double>>();
  auto c = s["c"].get<std::vector<double>>();
  for (std::size_t u = 0; u < H; ++u) {
    double acc = W_ih[(2 * H + u) * V + x] + b_ih[2 * H + u] + b_hh[2 * H + u];
    for (std::size_t k = 0; k < H; ++k) acc += W_hh[(2 * H + u) * H + k] * r[k] * hp[k];
    EXPECT_NEAR(ct[u], std::tanh(acc), 1e-5) << "unit " << u;
    EXPECT_NEAR(c[u], gu[u] * ct[u] + (1 - gu[u]) * hp[u], 1e-6) << "unit " << u;  // Γu weights c~
  }
  // The table says which candidate it shows, for either variant.
  Result t = run(kBin + "/gru_gates --checkpoint " + ck + " --text " + q(kText) + " --convention course");
  EXPECT_NE(t.out.find("the course's candidate"), std::string::npos) << t.out;
  Result p = run(kBin + "/gru_gates --checkpoint " + trained_checkpoint() + " --text " + q(kText) + " --convention course");
  EXPECT_NE(p.out.find("NOT the course's formula"), std::string::npos) << p.out;
  json pj = json::parse(run(kBin + "/gru_gates --checkpoint " + trained_checkpoint() + " --text " + q(kText) + " --json").out);
  EXPECT_EQ(pj["convention"], "pytorch");
  EXPECT_EQ(pj["variant"], "reset_after");
}
