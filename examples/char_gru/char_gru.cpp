// char_gru — a character-level GRU language model: train, sample, score, and the demo.
//
//   char_gru train  [--corpus PATH] [--hidden 128] [--steps N] ... [--checkpoint OUT.npz]
//                   [--save-every N] [--resume CK.npz] [--json]
//   char_gru sample --checkpoint CK [--n 10] [--temperature 1.0] [--prefix TEXT] [--json]
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
// Files: --checkpoint model.npz is exactly the state dict of the PyTorch CharGRU (char_model.hpp)
// plus `vocab`; what --resume needs (Adam's state, step, data position, hidden state, recent
// losses) goes to model.resume.npz beside it (train_state.hpp). Both are written atomically, with
// SIGINT/SIGTERM/SIGHUP deferred, at the end, every --save-every steps and when a stop signal
// arrives. The targets are checked before the first step. Exit codes: 0 ok, 1 error, 2 usage,
// 3 diverged (non-finite loss: nothing is written over the last good checkpoint), 130 stopped by
// a signal (after saving).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <set>
#include <tuple>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "char_model.hpp"
#include "cli/cli.hpp"
#include "framework/optim.hpp"
#include "framework/packed_gemm.hpp"
#include "train_state.hpp"

using namespace tapegrad;
using namespace char_model;
using json = nlohmann::json;

namespace {

struct TrainArgs {
  std::string corpus;
  std::size_t hidden = 128, layers = 1, seq_len = 32, batch = 32, steps = 2000, embed_dim = 0;
  double lr = 2e-3, clip = 5.0, clip_value = 0.0;
  std::uint64_t seed = 0;
  std::string dtype = "float32";
  std::string checkpoint = "char_gru.npz";
  std::string resume;
  std::size_t sample_every = 0, save_every = 0;
  bool embed = false, json = false, quiet = false, reset_before = false;
  bool composed = false;  // train through the composed GRU instead of the fused one
  std::set<std::string> given;  // size flags given on the command line (checked against --resume)
};

/// FNV-1a of the corpus: a resumed run must train on the same text.
std::int64_t corpus_hash(const std::u32string& text) {
  std::uint64_t h = 1469598103934665603ull;
  for (char32_t c : text) h = (h ^ static_cast<std::uint64_t>(c)) * 1099511628211ull;
  return static_cast<std::int64_t>(h >> 1);
}

/// One sample: feed `prefix` (or '\n' as a start token), then draw characters until '\n'.
/// Each character drawn (the closing '\n' too) is counted in *draws when given.
std::u32string sample_text(CharGRU& model, const Vocab& vocab, const std::u32string& prefix,
                           double temperature, std::size_t max_len, Generator& gen,
                           std::size_t* draws = nullptr) {
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
    if (draws) ++*draws;
    if (vocab.chars[next] == U'\n') break;
    out += vocab.chars[next];
    context = {static_cast<std::int64_t>(next)};
  }
  return out;
}

/// How many times clean_sample draws a sample before it gives up.
constexpr int kFilterTries = 20;

/// A sample fit for a classroom: one containing an offensive word (is_offensive) is drawn again,
/// up to kFilterTries times, and then replaced by prefix + "[filtered]" (*filtered set). A prefix
/// that itself holds such a word is replaced at once: no draw could pass.
std::u32string clean_sample(CharGRU& model, const Vocab& vocab, const std::u32string& prefix,
                            double temperature, std::size_t max_len, Generator& gen,
                            std::size_t* draws = nullptr, bool* filtered = nullptr) {
  if (filtered) *filtered = false;
  std::u32string s;
  if (!is_offensive(prefix))
    for (int tries = 0; tries < kFilterTries; ++tries)
      if (!is_offensive(s = sample_text(model, vocab, prefix, temperature, max_len, gen, draws))) return s;
  if (filtered) *filtered = true;
  return prefix + U"[filtered]";
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
  std::size_t length() const { return L_; }
  void restore(std::size_t p) { p_ = p, first_ = false; }

 private:
  std::vector<std::int64_t> data_;
  std::size_t B_, T_, L_ = 0, p_ = 0;
  bool first_ = true;
};

/// The corpus, its vocabulary and the 90/10 split.
struct Corpus {
  std::string source;
  std::u32string text;
  Vocab vocab;
  std::vector<std::int64_t> train_ids, held_ids;
};

Corpus load_corpus(const std::string& path) {
  Corpus c;
  c.source = path;
  c.text = path.empty() ? default_corpus(c.source) : read_corpus(path);
  c.vocab = Vocab::from_text(c.text);
  std::vector<std::int64_t> ids = c.vocab.encode(c.text, "corpus");
  std::size_t split = static_cast<std::size_t>(std::floor(0.9 * double(ids.size())));
  c.train_ids.assign(ids.begin(), ids.begin() + std::ptrdiff_t(split));
  c.held_ids.assign(ids.begin() + std::ptrdiff_t(split), ids.end());
  return c;
}

struct TrainResult {
  double train_loss, heldout_loss, chars_per_s, seconds;
  std::size_t steps, vocab_size;
  int exit_code;  // cli::kOk, kInterrupted or kDiverged
  std::shared_ptr<CharGRU> model;
  Vocab vocab;
};

/// Where a model goes when its --checkpoint cannot be written at the end: a new file in the
/// temporary directory.
std::string rescue_path() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "char_gru_rescue_XXXXXX.npz").string();
  int fd = ::mkstemps(tmpl.data(), 4);
  if (fd < 0) return {};
  ::close(fd);
  return tmpl;
}

TrainResult train(const TrainArgs& args, const Corpus& corpus) {
  TrainArgs a = args;
  const Vocab& vocab = corpus.vocab;

  // ---- model and optimizer: fresh, or from --resume (checkpoint + its resume state) ----
  std::shared_ptr<CharGRU> model;
  TrainState resumed;
  if (!a.resume.empty()) {
    Checkpoint ck = load_checkpoint(a.resume);
    if (ck.vocab.chars != vocab.chars)
      throw ValueError(fmt::format("--resume: checkpoint '{}' was trained on a corpus with another "
                                   "vocabulary; pass the same --corpus", a.resume));
    std::string state_path = resume_state_path(a.resume);
    resumed = load_train_state(state_path, *ck.model);
    if (resumed.corpus_hash != corpus_hash(corpus.text))
      throw ValueError(fmt::format("--resume: resume state '{}' (entry 'train.corpus_hash') was "
                                   "trained on another corpus text; pass the same --corpus", state_path));
    if (std::size_t(resumed.step) >= a.steps)
      throw cli::UsageError(fmt::format("--steps: '{}' has already trained {} steps; --steps is the total, "
                                        "so pass more than {}", a.resume, resumed.step, resumed.step));
    model = ck.model;
    // With --resume the sizes come from the files; a size flag given anyway must agree with them.
    const std::string file_dtype = model->parameters()[0].dtype() == DType::Float64 ? "float64" : "float32";
    const std::vector<std::tuple<const char*, std::string, std::string>> sizes = {
        {"--hidden", std::to_string(a.hidden), std::to_string(model->config.hidden)},
        {"--layers", std::to_string(a.layers), std::to_string(model->config.layers)},
        {"--seq-len", std::to_string(a.seq_len), std::to_string(resumed.seq_len)},
        {"--batch", std::to_string(a.batch), std::to_string(resumed.batch)},
        {"--dtype", a.dtype, file_dtype},
        {"--embed", a.embed ? "on" : "off", model->config.embed_dim ? "on" : "off"},
        {"--embed-dim", std::to_string(a.embed_dim), std::to_string(model->config.embed_dim)},
        {"--reset-before", a.reset_before ? "on" : "off", model->config.reset_before ? "on" : "off"}};
    for (const auto& [flag, mine, theirs] : sizes)
      if (a.given.count(flag) && mine != theirs)
        throw cli::UsageError(fmt::format("{}: {} differs from the resumed run's {} (with --resume the sizes "
                                          "come from '{}' and its resume state; leave the flag out)",
                                          flag, mine, theirs, a.resume));
    a.hidden = model->config.hidden, a.layers = model->config.layers, a.embed_dim = model->config.embed_dim;
    a.seq_len = std::size_t(resumed.seq_len), a.batch = std::size_t(resumed.batch);
    a.dtype = model->parameters()[0].dtype() == DType::Float64 ? "float64" : "float32";
  } else {
    Config c;
    c.vocab_size = vocab.size(), c.hidden = a.hidden, c.layers = a.layers;
    c.embed_dim = a.embed ? (a.embed_dim ? a.embed_dim : std::min<std::size_t>(64, vocab.size())) : 0;
    c.reset_before = a.reset_before;
    Generator gen(a.seed);
    model = std::make_shared<CharGRU>(c, gen);
    model->to(a.dtype == "float64" ? DType::Float64 : DType::Float32);
  }
  if (a.composed) model->gru->set_path(GRU::Path::Composed);  // else the fused kernel (Path::Auto)
  const DType dtype = a.dtype == "float64" ? DType::Float64 : DType::Float32;
  Adam opt(model->parameters(), AdamOptions().lr(a.lr));
  Streams streams(corpus.train_ids, a.batch, a.seq_len);
  std::size_t start_step = 0;
  std::deque<double> recent;  // the last ≤ 100 losses (train_loss)
  Tensor h;                   // carried hidden state (L, B, H)
  if (!a.resume.empty()) {
    opt.load_state(resumed.optim);
    if (std::size_t(resumed.position) > streams.length())
      throw FileError(fmt::format("resume state '{}': entry 'train.position': {} is past the end of the "
                                  "streams ({} characters each)", resume_state_path(a.resume),
                                  resumed.position, streams.length()));
    streams.restore(std::size_t(resumed.position));
    h = resumed.hidden;
    recent.assign(resumed.recent_losses.begin(), resumed.recent_losses.end());
    start_step = std::size_t(resumed.step);
  }

  // ---- saving: the checkpoint, then its resume state; stop signals wait until both are done ----
  std::size_t saved_step = 0;
  auto save_to = [&](const std::string& path, std::size_t step) {
    cli::SignalBlock defer_signals;
    save_checkpoint(path, *model, vocab);
    TrainState st;
    st.step = std::int64_t(step), st.position = std::int64_t(streams.position());
    st.seq_len = std::int64_t(a.seq_len), st.batch = std::int64_t(a.batch);
    st.corpus_hash = corpus_hash(corpus.text), st.weights_hash = weights_hash(*model);
    st.recent_losses.assign(recent.begin(), recent.end());
    st.hidden = h.defined() ? h : zeros(Shape{a.layers, a.batch, a.hidden}, dtype);
    st.optim = opt.state();
    save_train_state(resume_state_path(path), st);
  };
  auto final_save = [&](std::size_t step) {
    if (a.checkpoint.empty()) return;
    try {
      save_to(a.checkpoint, step);
    } catch (const std::exception& e) {
      std::string rescue = rescue_path();
      if (!rescue.empty()) {
        try {
          save_to(rescue, step);
        } catch (const std::exception&) {
          rescue.clear();
        }
      }
      throw FileError(fmt::format("could not write --checkpoint '{}': {}; {}", a.checkpoint, e.what(),
                                  rescue.empty() ? std::string("the model could not be saved anywhere")
                                                 : fmt::format("the trained model was saved to '{}' (resume "
                                                               "state '{}')", rescue, resume_state_path(rescue))));
    }
  };

  std::vector<Tensor> params = model->parameters();
  std::size_t n_params = 0;
  for (const Tensor& p : params) n_params += p.numel();
  if (!a.json && !a.quiet)
    fmt::print("corpus: {} ({} characters, vocabulary {}), {} train / {} held out\n"
               "model: {}GRU(V={}, H={}, layers={}{}) + Linear, {} parameters, {}\n",
               corpus.source, corpus.text.size(), vocab.size(), corpus.train_ids.size(), corpus.held_ids.size(),
               model->embed ? fmt::format("Embedding(E={}) + ", model->config.embed_dim) : "",
               vocab.size(), a.hidden, a.layers, model->config.reset_before ? ", reset before: the course's GRU, composed" : "",
               n_params, a.dtype);

  // ---- the loop ----
  cli::StopSignals stop;  // SIGINT, SIGTERM, SIGHUP: finish the step, save, exit 130
  cli::Progress progress(start_step, a.steps, double(a.batch * a.seq_len));
  Generator sample_gen(a.seed + 1);
  std::vector<std::int64_t> x, y;
  double smooth = std::log(double(vocab.size()));
  const double t0 = cli::now_seconds();
  std::size_t step = start_step, done_here = 0;
  int exit_code = cli::kOk;
  for (; step < a.steps; ++step) {
    if (cli::StopSignals::requested()) {
      exit_code = cli::kInterrupted;
      break;
    }
    if (streams.next(x, y)) h = zeros(Shape{a.layers, a.batch, a.hidden}, dtype);
    CharGRU::Output out = model->forward(x, a.batch, a.seq_len, h);
    Tensor loss = cross_entropy(out.logits, y);
    double l = loss.item();
    if (!std::isfinite(l)) {  // diverged: stop before the update, write nothing
      exit_code = cli::kDiverged;
      break;
    }
    h = out.h_n.detach();
    opt.zero_grad();
    loss.backward();
    if (a.clip > 0) clip_grad_norm(params, a.clip);
    if (a.clip_value > 0) clip_grad_value(params, a.clip_value);
    opt.step();
    recent.push_back(l);
    if (recent.size() > 100) recent.pop_front();
    smooth = step == start_step ? l : 0.98 * smooth + 0.02 * l;
    ++done_here;
    progress.update(step, smooth);
    if (a.sample_every && (step + 1) % a.sample_every == 0 && !a.json) {
      if (progress.tty()) fmt::print(stderr, "\n");
      for (int k = 0; k < 3; ++k)
        fmt::print(stderr, "  sample: {}\n", utf8_encode(clean_sample(*model, vocab, U"", 1.0, 60, sample_gen)));
    }
    if (a.save_every && (step + 1) % a.save_every == 0 && step + 1 < a.steps && !a.checkpoint.empty()) {
      try {
        save_to(a.checkpoint, step + 1);
        saved_step = step + 1;
      } catch (const std::exception& e) {
        fmt::print(stderr, "\nwarning: --save-every: {}\n", e.what());
      }
    }
  }
  progress.finish();
  const double seconds = cli::now_seconds() - t0;

  if (exit_code == cli::kDiverged) {
    fmt::print(stderr, "error: training diverged at step {}: the loss is not finite; lower --lr or set --clip. {}\n",
               step + 1,
               saved_step ? fmt::format("The last good checkpoint is '{}' (step {}).", a.checkpoint, saved_step)
                          : std::string("Nothing was written over --checkpoint."));
    return {NAN, NAN, 0, seconds, step, vocab.size(), exit_code, model, vocab};
  }
  final_save(step);
  if (exit_code == cli::kInterrupted) {
    fmt::print(stderr, "stopped by {}: {}\n", cli::StopSignals::name(),
               a.checkpoint.empty() ? fmt::format("step {} (no --checkpoint to save to)", step)
                                    : fmt::format("saved step {} to {} (resume state {})", step, a.checkpoint,
                                                  resume_state_path(a.checkpoint)));
    return {NAN, NAN, 0, seconds, step, vocab.size(), exit_code, model, vocab};
  }
  double heldout = corpus.held_ids.size() >= 2 ? score(*model, corpus.held_ids) : NAN;
  double train_loss = recent.empty() ? NAN : std::accumulate(recent.begin(), recent.end(), 0.0) / double(recent.size());
  double cps = seconds > 0 ? double(done_here * a.batch * a.seq_len) / seconds : 0;
  return {train_loss, heldout, cps, seconds, step, vocab.size(), cli::kOk, model, vocab};
}

void add_train_flags(CLI::App* cmd, TrainArgs& a) {
  cmd->add_option("--corpus", a.corpus, "UTF-8 text file, at most 256 MiB (default: /usr/share/dict/words, else a generated corpus)");
  cmd->add_option("--hidden", a.hidden, "GRU hidden size H")->capture_default_str()->check(cli::IntRange(1, 8192));
  cmd->add_option("--layers", a.layers, "number of stacked GRU layers")->capture_default_str()->check(cli::IntRange(1, 16));
  cmd->add_option("--seq-len", a.seq_len, "characters per stream per step (truncated BPTT length T)")->capture_default_str()->check(cli::IntRange(1, 100000));
  cmd->add_option("--batch", a.batch, "parallel streams B")->capture_default_str()->check(cli::IntRange(1, 100000));
  cmd->add_option("--steps", a.steps, "training steps (in total, when resuming)")->capture_default_str()->check(cli::IntRange(1, 100000000));
  cmd->add_option("--lr", a.lr, "Adam learning rate")->capture_default_str()->check(cli::PositiveFinite);
  cmd->add_option("--clip", a.clip, "clip the global gradient norm to this (0: off), like clip_grad_norm_")->capture_default_str()->check(cli::NonNegativeFinite);
  cmd->add_option("--clip-value", a.clip_value, "clip every gradient element to [-C, C] (0: off), the course's clipping")->capture_default_str()->check(cli::NonNegativeFinite);
  cmd->add_option("--seed", a.seed, "seed of the initialisation (and of the samples)")->capture_default_str()->check(cli::UInt64);
  cmd->add_option("--dtype", a.dtype, "float32 or float64")->capture_default_str()->check(CLI::IsMember({"float32", "float64"}));
  cmd->add_option("--checkpoint", a.checkpoint,
                  "where to write the model (.npz, a PyTorch state dict + vocab; '' for none); what --resume "
                  "needs goes beside it, model.npz -> model.resume.npz")->capture_default_str();
  cmd->add_option("--save-every", a.save_every, "also write the checkpoint every N steps (0: only at the end)")
      ->capture_default_str()->check(cli::IntRange(0, 100000000));
  cmd->add_option("--resume", a.resume,
                  "continue training from CK.npz and its resume state CK.resume.npz (optimizer state, step, data "
                  "position); the model's sizes come from the files");
  cmd->add_option("--sample-every", a.sample_every, "print a few samples every K steps (0: never)")->capture_default_str()->check(cli::IntRange(0, 100000000));
  cmd->add_flag("--embed", a.embed, "learn an Embedding instead of one-hot inputs");
  cmd->add_option("--embed-dim", a.embed_dim, "embedding width with --embed (default min(64, V))")->check(cli::IntRange(1, 8192));
  cmd->add_flag("--json", a.json, "print one JSON object with the results on stdout");
  cmd->add_flag("--reset-before", a.reset_before,
                "the course's (Cho et al.'s) GRU: the reset gate acts before the hidden matmul, "
                "n = tanh(W_in x + b_in + W_hn (r*h) + b_hn); PyTorch's nn.GRU cannot load it (trains on the composed path)");
  cmd->add_flag("--composed", a.composed,
                "train through the composed GRU (every gate op on the tape) instead of the fused fast path");
}

/// Conflicts between flags and unusable paths: exit 2 before any work.
void check_train_flags(CLI::App* cmd, TrainArgs& a) {
  auto given = [cmd](const char* flag) {
    const CLI::Option* o = cmd->get_option_no_throw(flag);
    return o != nullptr && o->count() > 0;
  };
  for (const char* f : {"--hidden", "--layers", "--seq-len", "--batch", "--dtype", "--embed", "--embed-dim",
                        "--reset-before"})
    if (given(f)) a.given.insert(f);
  if (given("--embed-dim") && !a.embed) throw cli::UsageError("--embed-dim: needs --embed");
  if (!a.resume.empty()) cli::check_input_file(a.resume, "--resume", 4ull << 30);
  if (!a.corpus.empty()) cli::check_input_file(a.corpus, "--corpus");
  if (!a.checkpoint.empty()) {
    cli::check_output_path(a.checkpoint, "--checkpoint", {a.corpus});
    cli::check_output_path(resume_state_path(a.checkpoint), "--checkpoint (its resume state)", {a.corpus, a.resume});
  }
  if (a.save_every && a.checkpoint.empty()) throw cli::UsageError("--save-every: needs a --checkpoint");
}

json train_json(const TrainResult& r) {
  return {{"train_loss", r.train_loss}, {"heldout_loss", r.heldout_loss}, {"chars_per_s", r.chars_per_s},
          {"seconds", r.seconds}, {"steps", r.steps}, {"vocab_size", r.vocab_size},
          {"peak_rss_mb", cli::peak_rss_mb()}, {"gemm_kernel", gemm_kernel_name()}};
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
  bool json_out = false, no_filter = false;
  CLI::App* sample_cmd = app.add_subcommand(
      "sample", "generate text from a checkpoint (a sample with an offensive word is drawn again, unless --no-filter)");
  sample_cmd->add_option("--checkpoint", ck, "model checkpoint (.npz)")->required();
  sample_cmd->add_option("--n", n, "number of samples")->capture_default_str()->check(cli::IntRange(1, 100000));
  sample_cmd->add_option("--temperature", temperature, "divides the logits: < 1 sharper, > 1 flatter")->capture_default_str()->check(cli::PositiveFinite);
  sample_cmd->add_option("--seed", seed, "sampling seed")->capture_default_str()->check(cli::UInt64);
  sample_cmd->add_option("--prefix", prefix, "text each sample starts with (default: after a newline)");
  sample_cmd->add_option("--max-len", max_len, "stop after this many generated characters")->capture_default_str()->check(cli::IntRange(1, 1000000));
  sample_cmd->add_flag("--no-filter", no_filter,
                       "print every sample as drawn; by default a sample holding a word of the classroom word list "
                       "(profanities, slurs, sexual terms) is drawn again, up to 20 times, and then printed as "
                       "PREFIX[filtered], with a note on stderr");
  sample_cmd->add_flag("--json", json_out, "print {\"samples\": [...], \"characters\": N, \"seconds\": S, \"chars_per_s\": R, \"filtered\": F} on stdout (N: characters drawn, S: time of the sampling alone, F: samples printed as [filtered])");

  CLI::App* score_cmd = app.add_subcommand("score", "mean cross-entropy (nats/char) of a text under a checkpoint");
  score_cmd->add_option("--checkpoint", ck, "model checkpoint (.npz)")->required();
  score_cmd->add_option("--text", text, "the text; its first character is context only")->required();
  score_cmd->add_flag("--json", json_out, "print {\"loss\": L, \"log_probs\": [...]} on stdout");

  TrainArgs da;
  da.steps = 20000;
  std::string demo_text = "the\ngated\nrecurrent\nunit\nkeeps\nits\nstate\nwhen\nits\nupdate\ngate\nis\nclosed\n";
  CLI::App* demo_cmd = app.add_subcommand("demo", "train on the default corpus, sample, and show the gates of steps 33 and 34");
  demo_cmd->add_option("--steps", da.steps, "training steps")->capture_default_str()->check(cli::IntRange(1, 100000000));
  demo_cmd->add_option("--checkpoint", da.checkpoint, "where to write the model (and its .resume.npz)")->capture_default_str();
  demo_cmd->add_option("--corpus", da.corpus, "UTF-8 text file (default: /usr/share/dict/words, else a generated corpus)");
  demo_cmd->add_option("--text", demo_text, "text whose steps 33 and 34 are shown (at least 34 characters of the corpus)")->capture_default_str();

  return cli::run(app, argc, argv, [&]() -> int {
    if (*train_cmd) {
      check_train_flags(train_cmd, ta);
      TrainResult r = train(ta, load_corpus(ta.corpus));
      if (r.exit_code != cli::kOk) return r.exit_code;
      if (ta.json) {
        std::cout << train_json(r).dump() << std::endl;
      } else {
        fmt::print("train loss {:.4f}, held-out loss {:.4f} nats/char, {:.0f} chars/s, {:.1f} s, peak RSS {:.0f} MB\n",
                   r.train_loss, r.heldout_loss, r.chars_per_s, r.seconds, cli::peak_rss_mb());
        Generator gen(ta.seed + 2);
        for (int k = 0; k < 5; ++k) fmt::print("  {}\n", utf8_encode(clean_sample(*r.model, r.vocab, U"", 1.0, 60, gen)));
        if (!ta.checkpoint.empty())
          fmt::print("checkpoint: {} (resume state: {})\n", ta.checkpoint, resume_state_path(ta.checkpoint));
      }
    } else if (*sample_cmd) {
      std::u32string pre = utf8_decode(prefix, "--prefix");
      cli::check_input_file(ck, "--checkpoint", 4ull << 30);
      Checkpoint c = load_checkpoint(ck);
      c.vocab.encode(pre, "--prefix");  // unknown characters fail before sampling
      Generator gen(seed);
      std::vector<std::string> samples;
      std::size_t draws = 0, filtered = 0;
      const std::string why_filtered =
          is_offensive(pre) ? "starts with a --prefix that holds a word of the classroom word list"
                            : fmt::format("held a word of the classroom word list in all {} draws", kFilterTries);
      const auto t0 = std::chrono::steady_clock::now();
      for (std::size_t k = 0; k < n; ++k) {
        bool was_filtered = false;
        samples.push_back(utf8_encode(
            no_filter ? sample_text(*c.model, c.vocab, pre, temperature, max_len, gen, &draws)
                      : clean_sample(*c.model, c.vocab, pre, temperature, max_len, gen, &draws, &was_filtered)));
        if (!json_out) fmt::print("{}\n", samples.back());
        if (was_filtered) {
          ++filtered;
          fmt::print(stderr, "char_gru sample: sample {} {}; printed as '[filtered]' (--no-filter prints samples as drawn)\n",
                     k + 1, why_filtered);
        }
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (json_out)
        std::cout << json{{"samples", samples}, {"characters", draws}, {"seconds", seconds},
                          {"chars_per_s", seconds > 0 ? double(draws) / seconds : 0.0},
                          {"filtered", filtered}}.dump() << std::endl;
    } else if (*score_cmd) {
      std::u32string t32 = utf8_decode(text, "--text");
      cli::check_input_file(ck, "--checkpoint", 4ull << 30);
      Checkpoint c = load_checkpoint(ck);
      std::vector<std::int64_t> ids = c.vocab.encode(t32, "--text");
      if (t32.size() < 2) throw cli::UsageError("--text: needs at least 2 characters (the first is context only)");
      std::vector<double> lp;
      double loss = score(*c.model, ids, &lp);
      if (json_out)
        std::cout << json{{"loss", loss}, {"log_probs", lp}}.dump() << std::endl;
      else
        fmt::print("{:.6f} nats/char over {} predicted characters\n", loss, lp.size());
    } else if (*demo_cmd) {
      // Everything that can be checked is checked before 20,000 steps of training.
      check_train_flags(demo_cmd, da);
      std::u32string t32 = utf8_decode(demo_text, "--text");
      if (t32.size() < 34) throw cli::UsageError(fmt::format("--text: {} characters; the demo shows steps 33 and 34, so it needs at least 34", t32.size()));
      Corpus corpus = load_corpus(da.corpus);
      try {
        corpus.vocab.encode(t32, "--text");
      } catch (const ValueError& e) {
        throw cli::UsageError(std::string(e.what()) + " (the corpus's)");
      }
      fmt::print("== 1. training a character-level GRU on the default corpus ({} steps)\n", da.steps);
      TrainResult r = train(da, corpus);
      if (r.exit_code != cli::kOk) return r.exit_code;
      fmt::print("train loss {:.4f}, held-out loss {:.4f} nats/char (uniform guessing: {:.4f}), {:.0f} chars/s, {:.1f} s\n",
                 r.train_loss, r.heldout_loss, std::log(double(r.vocab_size)), r.chars_per_s, r.seconds);
      fmt::print("\n== 2. samples (temperature 0.8)\n");
      Generator gen(7);
      for (int k = 0; k < 8; ++k) fmt::print("  {}\n", utf8_encode(clean_sample(*r.model, r.vocab, U"", 0.8, 40, gen)));
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
    return cli::kOk;
  });
}
