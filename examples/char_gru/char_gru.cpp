// char_gru — a character-level GRU language model: train, sample, score, and the demo.
//
//   char_gru train  [--corpus PATH] [--hidden 128] [--steps N] ... [--checkpoint OUT.npz] [--json]
//   char_gru sample --checkpoint CK [--n 10] [--temperature 1.0] [--prefix TEXT]
//   char_gru score  --checkpoint CK --text TEXT [--json]
//   char_gru demo   (train on the default corpus, sample, then show the gates of steps 33 and 34)
//
// Training (the same pipeline as tools/torch_char_gru.py, its PyTorch twin):
//   text → vocab (sorted code points); the last 10% is held out.
//   The training text is cut into B streams of L = len/B characters. Each step reads the next
//   T characters of every stream (targets: the same shifted by one), carrying the hidden state,
//   detached, from the previous step; when a stream would run past its end, every stream
//   restarts at 0 with h = 0. Loss: mean cross-entropy over the B·T predictions; Adam;
//   --clip clips the global gradient norm (clip_grad_norm_), --clip-value each element.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "char_model.hpp"
#include "framework/optim.hpp"

using namespace tapegrad;
using namespace char_model;
using json = nlohmann::json;

namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted = true; }

struct TrainArgs {
  std::string corpus;
  std::size_t hidden = 128, layers = 1, seq_len = 32, batch = 32, steps = 2000, embed_dim = 0;
  double lr = 2e-3, clip = 5.0, clip_value = 0.0;
  std::uint64_t seed = 0;
  std::string dtype = "float32";
  std::string checkpoint = "char_gru.npz";
  std::string resume;
  std::size_t sample_every = 0;
  bool embed = false, json = false, quiet = false;
  bool composed = false;  // train through the composed GRU instead of the fused one
};

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

std::string clock_str(double seconds) {
  auto s = static_cast<long>(std::max(0.0, seconds));
  return fmt::format("{:02d}:{:02d}", s / 60, s % 60);
}

/// FNV-1a of the corpus: a resumed run must train on the same text.
std::int64_t corpus_hash(const std::u32string& text) {
  std::uint64_t h = 1469598103934665603ull;
  for (char32_t c : text) h = (h ^ static_cast<std::uint64_t>(c)) * 1099511628211ull;
  return static_cast<std::int64_t>(h >> 1);
}

/// One sample: feed `prefix` (or '\n' as a start token), then draw characters until '\n'.
std::u32string sample_text(CharGRU& model, const Vocab& vocab, const std::u32string& prefix,
                           double temperature, std::size_t max_len, Generator& gen) {
  NoGradGuard no_grad;
  std::vector<std::int64_t> context;
  std::u32string out = prefix;
  if (!prefix.empty()) {
    context = vocab.encode(prefix, "--prefix");
  } else if (vocab.find(U'\n') >= 0) {
    context = {vocab.find(U'\n')};
  } else {
    context = {static_cast<std::int64_t>(gen.integer(vocab.size()))};
    out += vocab.chars[static_cast<std::size_t>(context[0])];
  }
  Tensor h;
  std::size_t V = vocab.size();
  for (std::size_t n = 0; n < max_len; ++n) {
    CharGRU::Output o = model.forward(context, 1, context.size(), h);
    h = o.h_n;
    // p ∝ exp(logit / temperature), from the last position's logits.
    std::vector<double> logits(V);
    std::size_t last = (context.size() - 1) * V;
    for (std::size_t k = 0; k < V; ++k) logits[k] = o.logits.at(last + k) / temperature;
    double mx = *std::max_element(logits.begin(), logits.end()), z = 0;
    for (double& l : logits) z += (l = std::exp(l - mx));
    double u = gen.uniform() * z;
    std::size_t next = 0;
    for (double acc = logits[0]; acc < u && next + 1 < V;) acc += logits[++next];
    if (vocab.chars[next] == U'\n') break;
    out += vocab.chars[next];
    context = {static_cast<std::int64_t>(next)};
  }
  return out;
}

/// Batches of the training text, exactly as the file comment describes.
class Streams {
 public:
  Streams(const std::vector<std::int64_t>& train, std::size_t B, std::size_t T) : B_(B), T_(T) {
    L_ = train.size() / B;
    if (L_ < T + 1)
      throw ValueError(fmt::format("the training text ({} characters) is too short for {} streams of "
                                   "{}+1 characters: lower --batch or --seq-len",
                                   train.size(), B, T));
    data_.assign(train.begin(), train.begin() + std::ptrdiff_t(B * L_));
  }
  /// Fills inputs/targets (B·T each); returns true when the hidden state must be reset.
  bool next(std::vector<std::int64_t>& x, std::vector<std::int64_t>& y) {
    bool reset = first_;
    first_ = false;
    if (p_ + T_ + 1 > L_) p_ = 0, reset = true;
    x.resize(B_ * T_);
    y.resize(B_ * T_);
    for (std::size_t b = 0; b < B_; ++b)
      for (std::size_t t = 0; t < T_; ++t) {
        x[b * T_ + t] = data_[b * L_ + p_ + t];
        y[b * T_ + t] = data_[b * L_ + p_ + t + 1];
      }
    p_ += T_;
    return reset;
  }
  std::size_t position() const { return p_; }
  void restore(std::size_t p) { p_ = p, first_ = false; }

 private:
  std::vector<std::int64_t> data_;
  std::size_t B_, T_, L_ = 0, p_ = 0;
  bool first_ = true;
};

npz::Array scalar_i64(std::int64_t v) { return npz::Array::from_i64({}, &v); }
std::int64_t get_i64(const npz::Archive& a, const std::string& name, const std::string& path) {
  const npz::Array& arr = npz::find(a, name, path);
  if (arr.numel() != 1) throw FileError(fmt::format("checkpoint '{}': entry '{}': expected one value", path, name));
  return arr.to_vector<std::int64_t>()[0];
}

struct TrainResult {
  double train_loss, heldout_loss, chars_per_s, seconds;
  std::size_t steps, vocab_size;
  bool interrupted;
  std::shared_ptr<CharGRU> model;
  Vocab vocab;
};

TrainResult train(TrainArgs a) {
  std::string source = a.corpus;
  std::u32string text = a.corpus.empty() ? default_corpus(source) : read_corpus(a.corpus);
  Vocab vocab = Vocab::from_text(text);
  std::vector<std::int64_t> ids = vocab.encode(text, "corpus");
  std::size_t split = static_cast<std::size_t>(std::floor(0.9 * double(ids.size())));
  std::vector<std::int64_t> train_ids(ids.begin(), ids.begin() + std::ptrdiff_t(split));
  std::vector<std::int64_t> held_ids(ids.begin() + std::ptrdiff_t(split), ids.end());

  // ---- model and optimizer: fresh, or from --resume ----
  std::shared_ptr<CharGRU> model;
  std::size_t start_step = 0;
  std::deque<double> recent;  // the last ≤ 100 losses (train_loss)
  Tensor h;                   // carried hidden state (L, B, H)
  npz::Archive resume_extras;
  if (!a.resume.empty()) {
    Checkpoint ck = load_checkpoint(a.resume);
    if (ck.vocab.chars != vocab.chars)
      throw ValueError(fmt::format("--resume: checkpoint '{}' was trained on a corpus with another "
                                   "vocabulary; pass the same --corpus", a.resume));
    resume_extras = ck.extras;
    if (get_i64(resume_extras, "train.corpus_hash", a.resume) != corpus_hash(text))
      throw ValueError(fmt::format("--resume: checkpoint '{}' was trained on another corpus text", a.resume));
    model = ck.model;
    a.hidden = model->config.hidden, a.layers = model->config.layers, a.embed_dim = model->config.embed_dim;
    a.seq_len = std::size_t(get_i64(resume_extras, "train.seq_len", a.resume));
    a.batch = std::size_t(get_i64(resume_extras, "train.batch", a.resume));
    start_step = std::size_t(get_i64(resume_extras, "train.step", a.resume));
    a.dtype = model->parameters()[0].dtype() == DType::Float64 ? "float64" : "float32";
  } else {
    Config c;
    c.vocab_size = vocab.size(), c.hidden = a.hidden, c.layers = a.layers;
    c.embed_dim = a.embed ? (a.embed_dim ? a.embed_dim : std::min<std::size_t>(64, vocab.size())) : 0;
    Generator gen(a.seed);
    model = std::make_shared<CharGRU>(c, gen);
    model->to(a.dtype == "float64" ? DType::Float64 : DType::Float32);
  }
  model->fused = !a.composed;
  DType dtype = a.dtype == "float64" ? DType::Float64 : DType::Float32;
  Adam opt(model->parameters(), AdamOptions().lr(a.lr));
  Streams streams(train_ids, a.batch, a.seq_len);
  if (!a.resume.empty()) {
    NamedTensors state;
    for (const auto& [name, arr] : resume_extras)
      if (name.rfind("optim.", 0) == 0) state.emplace_back(name, from_npz_array(arr, a.resume + ": " + name));
    opt.load_state(state);
    streams.restore(std::size_t(get_i64(resume_extras, "train.position", a.resume)));
    h = from_npz_array(npz::find(resume_extras, "train.hidden", a.resume), a.resume + ": train.hidden");
    for (double v : npz::find(resume_extras, "train.recent_losses", a.resume).to_vector<double>()) recent.push_back(v);
  }

  auto checkpoint_extras = [&](std::size_t step) {
    npz::Archive ex;
    for (const auto& [name, t] : opt.state()) ex.emplace_back(name, to_npz_array(t));
    ex.emplace_back("train.step", scalar_i64(std::int64_t(step)));
    ex.emplace_back("train.position", scalar_i64(std::int64_t(streams.position())));
    ex.emplace_back("train.seq_len", scalar_i64(std::int64_t(a.seq_len)));
    ex.emplace_back("train.batch", scalar_i64(std::int64_t(a.batch)));
    ex.emplace_back("train.corpus_hash", scalar_i64(corpus_hash(text)));
    std::vector<double> rl(recent.begin(), recent.end());
    ex.emplace_back("train.recent_losses", npz::Array::from_f64({rl.size()}, rl.data()));
    Tensor hs = h.defined() ? h : zeros(Shape{a.layers, a.batch, a.hidden}, dtype);
    ex.emplace_back("train.hidden", to_npz_array(hs));
    return ex;
  };

  std::vector<Tensor> params = model->parameters();
  std::size_t n_params = 0;
  for (const Tensor& p : params) n_params += p.numel();
  if (!a.json && !a.quiet)
    fmt::print("corpus: {} ({} characters, vocabulary {}), {} train / {} held out\n"
               "model: {}GRU(V={}, H={}, layers={}) + Linear, {} parameters, {}\n",
               source, text.size(), vocab.size(), train_ids.size(), held_ids.size(),
               model->embed ? fmt::format("Embedding(E={}) + ", model->config.embed_dim) : "",
               vocab.size(), a.hidden, a.layers,
               n_params, a.dtype);

  std::signal(SIGINT, on_sigint);
  bool tty = isatty(STDERR_FILENO);
  Generator sample_gen(a.seed + 1);
  std::vector<std::int64_t> x, y;
  double smooth = std::log(double(vocab.size()));
  auto t0 = std::chrono::steady_clock::now();
  auto last_print = t0;
  std::size_t step = start_step, done_here = 0;
  bool interrupted = false;
  for (; step < a.steps; ++step) {
    if (g_interrupted) {
      interrupted = true;
      break;
    }
    if (streams.next(x, y)) h = zeros(Shape{a.layers, a.batch, a.hidden}, dtype);
    CharGRU::Output out = model->forward(x, a.batch, a.seq_len, h);
    h = out.h_n.detach();
    Tensor loss = cross_entropy(out.logits, y);
    opt.zero_grad();
    loss.backward();
    if (a.clip > 0) clip_grad_norm(params, a.clip);
    if (a.clip_value > 0) clip_grad_value(params, a.clip_value);
    opt.step();
    double l = loss.item();
    recent.push_back(l);
    if (recent.size() > 100) recent.pop_front();
    smooth = step == start_step ? l : 0.98 * smooth + 0.02 * l;
    ++done_here;

    auto now = std::chrono::steady_clock::now();
    double elapsed = std::chrono::duration<double>(now - t0).count();
    bool report = tty ? std::chrono::duration<double>(now - last_print).count() > 0.2
                      : (step + 1) % std::max<std::size_t>(1, a.steps / 10) == 0;
    if (report || step + 1 == a.steps) {
      last_print = now;
      double cps = double(done_here * a.batch * a.seq_len) / std::max(elapsed, 1e-9);
      double eta = elapsed / double(done_here) * double(a.steps - step - 1);
      std::size_t width = 24, fill = width * (step + 1) / a.steps;
      fmt::print(stderr, "{}step {:>6}/{} [{}{}] loss {:.4f} | {:.1f}k chars/s | ETA {}{}", tty ? "\r" : "",
                 step + 1, a.steps, std::string(fill, '#'), std::string(width - fill, '.'), smooth,
                 cps / 1000, clock_str(eta), tty ? "   " : "\n");
    }
    if (a.sample_every && (step + 1) % a.sample_every == 0 && !a.json) {
      if (tty) fmt::print(stderr, "\n");
      for (int k = 0; k < 3; ++k)
        fmt::print(stderr, "  sample: {}\n", utf8_encode(sample_text(*model, vocab, U"", 1.0, 60, sample_gen)));
    }
  }
  if (tty) fmt::print(stderr, "\n");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::signal(SIGINT, SIG_DFL);

  if (!a.checkpoint.empty()) save_checkpoint(a.checkpoint, *model, vocab, checkpoint_extras(step));
  if (interrupted) {
    fmt::print(stderr, "interrupted: saved step {} to {}\n", step, a.checkpoint);
    return {NAN, NAN, 0, seconds, step, vocab.size(), true, model, vocab};
  }
  double heldout = held_ids.size() >= 2 ? score(*model, held_ids) : NAN;
  double train_loss = recent.empty() ? NAN : std::accumulate(recent.begin(), recent.end(), 0.0) / double(recent.size());
  double cps = seconds > 0 ? double(done_here * a.batch * a.seq_len) / seconds : 0;
  return {train_loss, heldout, cps, seconds, step, vocab.size(), false, model, vocab};
}

void add_train_flags(CLI::App* cmd, TrainArgs& a) {
  cmd->add_option("--corpus", a.corpus, "UTF-8 text file (default: /usr/share/dict/words, else a generated corpus)");
  cmd->add_option("--hidden", a.hidden, "GRU hidden size H")->capture_default_str()->check(CLI::Range(1, 8192));
  cmd->add_option("--layers", a.layers, "number of stacked GRU layers")->capture_default_str()->check(CLI::Range(1, 16));
  cmd->add_option("--seq-len", a.seq_len, "characters per stream per step (truncated BPTT length T)")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--batch", a.batch, "parallel streams B")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--steps", a.steps, "training steps (in total, when resuming)")->capture_default_str()->check(CLI::Range(1, 100000000));
  cmd->add_option("--lr", a.lr, "Adam learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--clip", a.clip, "clip the global gradient norm to this (0: off), like clip_grad_norm_")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--clip-value", a.clip_value, "clip every gradient element to [-C, C] (0: off), the course's clipping")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", a.seed, "seed of the initialisation (and of the samples)")->capture_default_str();
  cmd->add_option("--dtype", a.dtype, "float32 or float64")->capture_default_str()->check(CLI::IsMember({"float32", "float64"}));
  cmd->add_option("--checkpoint", a.checkpoint, "where to write the model (.npz; '' for none)")->capture_default_str();
  cmd->add_option("--resume", a.resume, "continue training from a checkpoint written by train (optimizer state, step and data position included)");
  cmd->add_option("--sample-every", a.sample_every, "print a few samples every K steps (0: never)")->capture_default_str();
  cmd->add_flag("--embed", a.embed, "learn an Embedding instead of one-hot inputs");
  cmd->add_option("--embed-dim", a.embed_dim, "embedding width with --embed (default min(64, V))");
  cmd->add_flag("--json", a.json, "print one JSON object with the results on stdout");
  cmd->add_flag("--composed", a.composed,
                "train through the composed GRU (every gate op on the tape) instead of the fused fast path");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"char_gru: a character-level GRU language model built with tapegrad"};
  app.require_subcommand(1);

  TrainArgs ta;
  CLI::App* train_cmd = app.add_subcommand("train", "train a model and write a checkpoint");
  add_train_flags(train_cmd, ta);

  std::string ck, prefix, text;
  std::size_t n = 10, max_len = 80;
  double temperature = 1.0;
  std::uint64_t seed = 0;
  bool json_out = false;
  CLI::App* sample_cmd = app.add_subcommand("sample", "generate text from a checkpoint");
  sample_cmd->add_option("--checkpoint", ck, "model checkpoint (.npz)")->required();
  sample_cmd->add_option("--n", n, "number of samples")->capture_default_str()->check(CLI::Range(1, 100000));
  sample_cmd->add_option("--temperature", temperature, "divides the logits: < 1 sharper, > 1 flatter")->capture_default_str()->check(CLI::PositiveNumber);
  sample_cmd->add_option("--seed", seed, "sampling seed")->capture_default_str();
  sample_cmd->add_option("--prefix", prefix, "text each sample starts with (default: after a newline)");
  sample_cmd->add_option("--max-len", max_len, "stop after this many generated characters")->capture_default_str()->check(CLI::Range(1, 1000000));

  CLI::App* score_cmd = app.add_subcommand("score", "mean cross-entropy (nats/char) of a text under a checkpoint");
  score_cmd->add_option("--checkpoint", ck, "model checkpoint (.npz)")->required();
  score_cmd->add_option("--text", text, "the text; its first character is context only")->required();
  score_cmd->add_flag("--json", json_out, "print {\"loss\": L, \"log_probs\": [...]} on stdout");

  TrainArgs da;
  da.steps = 20000;
  da.sample_every = 0;
  std::string demo_text = "the\ngated\nrecurrent\nunit\nkeeps\nits\nstate\nwhen\nits\nupdate\ngate\nis\nclosed\n";
  CLI::App* demo_cmd = app.add_subcommand("demo", "train on the default corpus, sample, and show the gates of steps 33 and 34");
  demo_cmd->add_option("--steps", da.steps, "training steps")->capture_default_str()->check(CLI::Range(1, 100000000));
  demo_cmd->add_option("--checkpoint", da.checkpoint, "where to write the model")->capture_default_str();
  demo_cmd->add_option("--corpus", da.corpus, "UTF-8 text file (default: /usr/share/dict/words, else a generated corpus)");
  demo_cmd->add_option("--text", demo_text, "text whose steps 33 and 34 are shown")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the help text, or the error with a hint
    return e.get_exit_code() == 0 ? 0 : 2;
  }

  try {
    if (*train_cmd) {
      TrainResult r = train(ta);
      if (r.interrupted) return 130;
      if (ta.json) {
        json j = {{"train_loss", r.train_loss}, {"heldout_loss", r.heldout_loss}, {"chars_per_s", r.chars_per_s},
                  {"seconds", r.seconds}, {"steps", r.steps}, {"vocab_size", r.vocab_size},
                  {"peak_rss_mb", peak_rss_mb()}};
        std::cout << j.dump() << std::endl;
      } else {
        fmt::print("train loss {:.4f}, held-out loss {:.4f} nats/char, {:.0f} chars/s, {:.1f} s, peak RSS {:.0f} MB\n",
                   r.train_loss, r.heldout_loss, r.chars_per_s, r.seconds, peak_rss_mb());
        Generator gen(ta.seed + 2);
        for (int k = 0; k < 5; ++k) fmt::print("  {}\n", utf8_encode(sample_text(*r.model, r.vocab, U"", 1.0, 60, gen)));
        if (!ta.checkpoint.empty()) fmt::print("checkpoint: {}\n", ta.checkpoint);
      }
    } else if (*sample_cmd) {
      Checkpoint c = load_checkpoint(ck);
      std::u32string pre = utf8_decode(prefix, "--prefix");
      c.vocab.encode(pre, "--prefix");  // unknown characters fail before sampling
      Generator gen(seed);
      for (std::size_t k = 0; k < n; ++k)
        fmt::print("{}\n", utf8_encode(sample_text(*c.model, c.vocab, pre, temperature, max_len, gen)));
    } else if (*score_cmd) {
      Checkpoint c = load_checkpoint(ck);
      std::vector<std::int64_t> ids = c.vocab.encode(utf8_decode(text, "--text"), "--text");
      std::vector<double> lp;
      double loss = score(*c.model, ids, &lp);
      if (json_out)
        std::cout << json{{"loss", loss}, {"log_probs", lp}}.dump() << std::endl;
      else
        fmt::print("{:.6f} nats/char over {} predicted characters\n", loss, lp.size());
    } else if (*demo_cmd) {
      fmt::print("== 1. training a character-level GRU on the default corpus ({} steps)\n", da.steps);
      TrainResult r = train(da);
      if (r.interrupted) return 130;
      fmt::print("train loss {:.4f}, held-out loss {:.4f} nats/char (uniform guessing: {:.4f}), {:.0f} chars/s, {:.1f} s\n",
                 r.train_loss, r.heldout_loss, std::log(double(r.vocab_size)), r.chars_per_s, r.seconds);
      fmt::print("\n== 2. samples (temperature 0.8)\n");
      Generator gen(7);
      for (int k = 0; k < 8; ++k) fmt::print("  {}\n", utf8_encode(sample_text(*r.model, r.vocab, U"", 0.8, 40, gen)));
      std::u32string t32 = utf8_decode(demo_text, "--text");
      std::vector<std::int64_t> ids = r.vocab.encode(t32, "--text");
      auto records = gate_trace(*r.model, ids, 0);
      std::size_t H = r.model->config.hidden, units = std::min<std::size_t>(H, 16);
      std::string shown;
      for (char32_t ch : t32) shown += show_char(ch);
      fmt::print("\n== 3. the gates at steps 33 and 34 of \"{}\" (layer 0, units 0..{})\n"
                 "   z≈1 keeps the old state (h ≈ h_prev); z≈0 takes the candidate (h ≈ n).\n\n",
                 shown, units - 1);
      for (std::size_t t : {33u, 34u}) fmt::print("{}\n", gate_table(records, t32, t, 0, units, false));
      std::string gates = (std::filesystem::path(argv[0]).parent_path() / "gru_gates").string();
      fmt::print("Next: {} --checkpoint {} --text $'{}' --steps 33,34 --convention course\n", gates,
                 da.checkpoint, shown);
    }
  } catch (const tapegrad::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
