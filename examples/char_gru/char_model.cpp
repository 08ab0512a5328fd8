// The character-level GRU language model: text handling, model, checkpoints, scoring, gates.
#include "char_model.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <sys/stat.h>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "cli/cli.hpp"

namespace char_model {

using namespace tapegrad;

// ---- text ---------------------------------------------------------------------------------------

std::u32string utf8_decode(const std::string& s, const std::string& what) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size())
      throw ValueError(fmt::format("{}: invalid UTF-8 at byte {}", what, i));
    char32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (std::size_t k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) throw ValueError(fmt::format("{}: invalid UTF-8 at byte {}", what, i + k));
      cp = (cp << 6) | (cc & 0x3F);
    }
    bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      throw ValueError(fmt::format("{}: invalid UTF-8 at byte {}", what, i));
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string utf8_encode(char32_t c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    s += static_cast<char>(0xE0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (c >> 18));
    s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
  return s;
}

std::string utf8_encode(const std::u32string& text) {
  std::string s;
  for (char32_t c : text) s += utf8_encode(c);
  return s;
}

namespace {

std::string rot13(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = char('a' + (c - 'a' + 13) % 26);
  return s;
}

}  // namespace

bool is_offensive(const std::u32string& text) {
  static const std::vector<std::string> words = [] {
    std::vector<std::string> w;
    std::istringstream in(
        "shpx fuvg phag ovgpu onfgneq nffubyr qvpx pbpx chffl juber fyhg avttre avttn snttbg snt ergneq "
        "gjng jnax jnaxre cvff gvgf qvyqb encr encvfg xvxr fcvp puvax qlxr genaal phz wvmm cbea "
        "obyybpxf cevpx fxnax pbba tbbx zbgureshpxre ohyyfuvg tbqqnza frk frkl ubeal obbof cravf "
        "intvan nany nahf fuvgurnq wnpxnff qhzonff");
    for (std::string x; in >> x;) w.push_back(rot13(x));
    return w;
  }();
  static const std::vector<std::string> stems = [] {
    std::vector<std::string> w;
    std::istringstream in("shpx fuvg phag avtt sntt juber ovgpu encvfg qvyqb wvmm");
    for (std::string x; in >> x;) w.push_back(rot13(x));
    return w;
  }();
  std::string lower;  // ASCII letters lowercased; anything else separates words
  for (char32_t c : text) lower += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : (c >= 'a' && c <= 'z') ? char(c) : ' ';
  for (const std::string& stem : stems)
    if (lower.find(stem) != std::string::npos) return true;
  std::istringstream in(lower);
  for (std::string w; in >> w;)
    if (std::find(words.begin(), words.end(), w) != words.end()) return true;
  return false;
}

std::string show_char(char32_t c) {
  if (c == U'\n') return "\\n";
  if (c == U'\t') return "\\t";
  if (c == U' ') return "␠";
  if (c < 0x20) return fmt::format("\\x{:02x}", static_cast<unsigned>(c));
  return utf8_encode(c);
}

std::int64_t Vocab::find(char32_t c) const {
  if (index_.size() != chars.size()) const_cast<Vocab*>(this)->build_index();
  auto it = std::lower_bound(index_.begin(), index_.end(), std::make_pair(c, std::int64_t(-1)));
  return it != index_.end() && it->first == c ? it->second : -1;
}

void Vocab::build_index() {
  index_.clear();
  index_.reserve(chars.size());
  for (std::size_t i = 0; i < chars.size(); ++i) index_.emplace_back(chars[i], std::int64_t(i));
  std::sort(index_.begin(), index_.end());
}

std::vector<std::int64_t> Vocab::encode(const std::u32string& text, const std::string& what) const {
  std::vector<std::int64_t> ids;
  ids.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    std::int64_t id = find(text[i]);
    if (id < 0)
      throw ValueError(fmt::format("{}: character '{}' (U+{:04X}) at position {} is not in the "
                                   "model's vocabulary of {} characters",
                                   what, show_char(text[i]), static_cast<unsigned>(text[i]), i, size()));
    ids.push_back(id);
  }
  return ids;
}

Vocab Vocab::from_text(const std::u32string& text) {
  Vocab v;
  v.chars.assign(text.begin(), text.end());
  std::sort(v.chars.begin(), v.chars.end());
  v.chars.erase(std::unique(v.chars.begin(), v.chars.end()), v.chars.end());
  v.build_index();
  return v;
}

Vocab Vocab::from_chars(std::vector<char32_t> chars, const std::string& what) {
  if (chars.empty()) throw ValueError(what + ": the vocabulary is empty");
  for (std::size_t i = 0; i < chars.size(); ++i) {
    char32_t c = chars[i];
    if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
      throw ValueError(fmt::format("{}: entry {} ({}) is not a Unicode scalar value "
                                   "(0..0x10FFFF without the surrogates D800..DFFF)",
                                   what, i, static_cast<std::uint32_t>(c)));
  }
  Vocab v;
  v.chars = std::move(chars);
  v.build_index();
  for (std::size_t k = 1; k < v.index_.size(); ++k)
    if (v.index_[k].first == v.index_[k - 1].first)
      throw ValueError(fmt::format("{}: code point U+{:04X} appears twice (one-hot indices {} and {})",
                                   what, static_cast<std::uint32_t>(v.index_[k].first),
                                   v.index_[k - 1].second, v.index_[k].second));
  return v;
}

std::u32string read_corpus(const std::string& path) {
  // A regular file of at most 256 MiB, read once: never a directory, FIFO or /dev/zero.
  std::string bytes = cli::read_file(path, "corpus");
  if (bytes.empty()) throw FileError(fmt::format("corpus '{}': file is empty", path));
  try {
    return utf8_decode(bytes, fmt::format("corpus '{}'", path));
  } catch (const ValueError& e) {
    throw FileError(e.what());
  }
}

std::u32string default_corpus(std::string& source) {
  const char* words = "/usr/share/dict/words";
  if (std::ifstream(words).good()) {
    source = words;
    return read_corpus(words);
  }
  // Pronounceable pseudo-words: consonant-vowel syllables with a fixed seed.
  source = "generated pseudo-words (install wamerican for /usr/share/dict/words)";
  Generator gen(2024);
  const std::string cons = "bcdfghklmnprstvz", vow = "aeiou";
  std::u32string text;
  for (int w = 0; w < 40000; ++w) {
    std::size_t syll = 1 + gen.integer(3);
    for (std::size_t s = 0; s < syll; ++s) {
      text += static_cast<char32_t>(cons[gen.integer(cons.size())]);
      text += static_cast<char32_t>(vow[gen.integer(vow.size())]);
      if (gen.uniform() < 0.3) text += static_cast<char32_t>(cons[gen.integer(cons.size())]);
    }
    text += U'\n';
  }
  return text;
}

// ---- the model ----------------------------------------------------------------------------------

CharGRU::CharGRU(const Config& c, Generator& gen) : config(c) {
  std::size_t in = c.embed_dim ? c.embed_dim : c.vocab_size;
  // Registration order = PyTorch's state-dict order: embed, gru, head.
  if (c.embed_dim) embed = register_module("embed", std::make_shared<Embedding>(c.vocab_size, c.embed_dim, gen));
  gru = register_module("gru", std::make_shared<GRU>(
                                   GRUOptions(in, c.hidden).num_layers(c.layers).reset_after(!c.reset_before), gen));
  head = register_module("head", std::make_shared<Linear>(c.hidden, c.vocab_size, gen));
}

CharGRU::Output CharGRU::forward(const std::vector<std::int64_t>& ids, std::size_t B, std::size_t T,
                                 const Tensor& h0) {
  // One-hot inputs never materialise: layer 0 gathers columns of weight_ih_l0. The GRU runs its
  // fused kernel unless its path was set to Composed (char_gru train --composed).
  GRU::Output g = embed ? gru->forward(embed->forward(ids, Shape{B, T}), h0)
                        : gru->forward_ids(ids, B, T, config.vocab_size, h0);
  // The head reads the (B, T, H) output in place (one GEMM over its B·T rows); only the
  // (B, T, V) logits are reshaped.
  Tensor logits = head->forward(g.output);                                 // (B, T, V)
  return {reshape(logits, Shape{B * T, config.vocab_size}), g.h_n};  // (B·T, V)
}

// ---- checkpoints ----------------------------------------------------------------------------------

namespace {

/// Every value finite? Else the flat index of the first that is not.
std::optional<std::size_t> first_non_finite(const Tensor& t) {
  auto scan = [&](const auto& a) -> std::optional<std::size_t> {
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!std::isfinite(a.data()[i])) return i;
    return std::nullopt;
  };
  return t.dtype() == DType::Float32 ? scan(t.data<float>()) : scan(t.data<double>());
}

}  // namespace

void save_checkpoint(const std::string& path, const CharGRU& model, const Vocab& vocab) {
  for (const auto& [name, p] : model.named_parameters())
    if (auto bad = first_non_finite(p))
      throw ValueError(fmt::format("checkpoint '{}' not written: parameter '{}' holds a non-finite "
                                   "value at flat index {} (the run diverged)", path, name, *bad));
  std::vector<std::int32_t> cps(vocab.chars.begin(), vocab.chars.end());
  npz::Archive extra = {{"vocab", npz::Array::from_i32({cps.size()}, cps.data())}};
  const std::int32_t one = 1;
  if (model.config.reset_before) extra.emplace_back("reset_before", npz::Array::from_i32({}, &one));
  save_state(path, model, extra);
}

std::int64_t weights_hash(const CharGRU& model) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* data, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (const auto& [name, p] : model.named_parameters()) {
    mix(name.data(), name.size());
    if (p.dtype() == DType::Float32) mix(p.data<float>().data(), p.numel() * sizeof(float));
    else mix(p.data<double>().data(), p.numel() * sizeof(double));
  }
  return static_cast<std::int64_t>(h >> 1);
}

Checkpoint load_checkpoint(const std::string& path) {
  // Bounded reading: a real checkpoint inflates to about its own size (float weights hardly
  // compress); allow 64× plus 64 MiB, at most the reader's 2 GiB.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw FileError(fmt::format("checkpoint '{}': cannot open: {}", path, std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) throw FileError(fmt::format("checkpoint '{}': not a regular file", path));
  const std::uint64_t limit =
      std::min<std::uint64_t>(npz::kDefaultMaxTotalBytes, 64 * std::uint64_t(st.st_size) + (64ull << 20));
  const npz::Archive archive = npz::load_npz(path, limit);

  std::map<std::string, const npz::Array*> entries;  // one index: every look-up is O(log n)
  for (const auto& [name, array] : archive) entries[name] = &array;
  auto fail = [&](const std::string& name, const std::string& why) {
    return FileError(fmt::format("checkpoint '{}': entry '{}': {}", path, name, why));
  };
  auto field = [&](const std::string& name) -> const npz::Array& {
    auto it = entries.find(name);
    if (it == entries.end())
      throw FileError(fmt::format("checkpoint '{}': missing entry '{}' (a char_gru checkpoint is the "
                                  "state dict of CharGRU — embed.*, gru.*, head.* — plus vocab)",
                                  path, name));
    return *it->second;
  };
  auto shape_of = [&](const std::string& name, std::size_t rank) {
    const npz::Array& a = field(name);
    if (a.shape.size() != rank)
      throw fail(name, fmt::format("expected a {}-D array, got {} dimensions", rank, a.shape.size()));
    return a.shape;
  };

  // ---- the vocabulary: int32 or int64 code points, unique, in one-hot order ----
  Checkpoint ck;
  const npz::Array& vocab = field("vocab");
  if (vocab.dtype != npz::DType::Int32 && vocab.dtype != npz::DType::Int64)
    throw fail("vocab", fmt::format("dtype {}, expected int32 (or int64) Unicode code points",
                                    npz::dtype_name(vocab.dtype)));
  if (vocab.shape.size() != 1 || vocab.shape[0] == 0)
    throw fail("vocab", "expected a non-empty 1-D array of code points");
  std::vector<char32_t> chars;
  for (std::int64_t cp : vocab.to_vector<std::int64_t>()) {
    if (cp < 0 || cp > 0x10FFFF)
      throw fail("vocab", fmt::format("{} (entry {}) is not a Unicode code point", cp, chars.size()));
    chars.push_back(static_cast<char32_t>(cp));
  }
  try {
    ck.vocab = Vocab::from_chars(std::move(chars), "vocab");
  } catch (const ValueError& e) {
    throw fail("vocab", std::string(e.what()).substr(7));  // drop "vocab: "
  }

  // ---- every other entry: known names only, one dtype, finite ----
  Config c;
  c.vocab_size = ck.vocab.size();
  std::size_t max_layer = 0;
  bool any_gru = false;
  std::optional<npz::DType> dtype;
  if (auto it = entries.find("reset_before"); it != entries.end()) {
    const npz::Array& rb = *it->second;
    if ((rb.dtype != npz::DType::Int32 && rb.dtype != npz::DType::Int64 && rb.dtype != npz::DType::Bool &&
         rb.dtype != npz::DType::UInt8) || !rb.shape.empty())
      throw fail("reset_before", "expected a single integer 0 or 1");
    std::int64_t v = rb.to_vector<std::int64_t>()[0];
    if (v != 0 && v != 1) throw fail("reset_before", fmt::format("{} is not 0 or 1", v));
    c.reset_before = v == 1;
  }
  for (const auto& [name, array] : archive) {
    if (name == "vocab" || name == "reset_before") continue;
    std::size_t layer = 0;
    bool known = name == "head.weight" || name == "head.bias" || name == "embed.weight";
    for (const char* stem : {"gru.weight_ih_l", "gru.weight_hh_l", "gru.bias_ih_l", "gru.bias_hh_l"}) {
      std::string s0 = stem;
      if (name.compare(0, s0.size(), s0) != 0) continue;
      std::string rest = name.substr(s0.size());
      bool digits = !rest.empty() && rest.size() <= 4 && std::all_of(rest.begin(), rest.end(), ::isdigit);
      if (digits && (rest == "0" || rest[0] != '0')) {
        known = true, any_gru = true;
        layer = std::stoul(rest);
        max_layer = std::max(max_layer, layer);
      }
    }
    if (!known) {
      std::string hint;
      if (name.rfind("optim.", 0) == 0 || name.rfind("train.", 0) == 0)
        hint = " (training state belongs in the resume-state file beside the checkpoint: an older "
               "tapegrad wrote it here; drop the optim.* and train.* entries)";
      else if (name.find("_reverse") != std::string::npos)
        hint = " (a bidirectional GRU is not a character language model)";
      else
        hint = " (a char_gru checkpoint holds only vocab, embed.weight, gru.*_l<k>, head.weight, head.bias)";
      throw fail(name, "not part of a CharGRU state dict" + hint);
    }
    if (array.dtype != npz::DType::Float32 && array.dtype != npz::DType::Float64)
      throw fail(name, fmt::format("dtype {} is not float32 or float64", npz::dtype_name(array.dtype)));
    if (dtype && *dtype != array.dtype)
      throw fail(name, fmt::format("is {} but other weights are {}", npz::dtype_name(array.dtype),
                                   npz::dtype_name(*dtype)));
    dtype = array.dtype;
    std::vector<double> values = array.to_vector<double>();
    for (std::size_t i = 0; i < values.size(); ++i)
      if (!std::isfinite(values[i]))
        throw fail(name, fmt::format("holds {} at flat index {}; weights must be finite", values[i], i));
  }
  if (!any_gru) field("gru.weight_ih_l0");  // "missing entry" with the layout hint
  c.layers = max_layer + 1;
  for (std::size_t l = 0; l < c.layers; ++l)  // complete and contiguous: l0 .. l(L−1)
    for (const char* stem : {"gru.weight_ih_l", "gru.weight_hh_l", "gru.bias_ih_l", "gru.bias_hh_l"})
      if (!entries.count(fmt::format("{}{}", stem, l)))
        throw FileError(fmt::format("checkpoint '{}': missing entry '{}{}': the file has GRU layers up to "
                                    "l{}, so every tensor of l0..l{} must be present", path, stem, l,
                                    max_layer, max_layer));

  auto head_w = shape_of("head.weight", 2);  // (V, H)
  if (head_w[0] != c.vocab_size)
    throw fail("head.weight", fmt::format("has {} rows but the vocab has {} characters", head_w[0], c.vocab_size));
  c.hidden = head_w[1];
  if (c.hidden == 0) throw fail("head.weight", "hidden size 0 (shape (V, 0))");
  if (entries.count("embed.weight")) {
    auto e = shape_of("embed.weight", 2);
    if (e[0] != c.vocab_size)
      throw fail("embed.weight", fmt::format("has {} rows but the vocab has {} characters", e[0], c.vocab_size));
    if (e[1] == 0) throw fail("embed.weight", "embedding width 0");
    c.embed_dim = e[1];
  }
  std::size_t in0 = shape_of("gru.weight_ih_l0", 2)[1];
  if (in0 != (c.embed_dim ? c.embed_dim : c.vocab_size))
    throw fail("gru.weight_ih_l0", fmt::format("has input size {}, expected {} ({})", in0,
                                               c.embed_dim ? c.embed_dim : c.vocab_size,
                                               c.embed_dim ? "embed.weight's width" : "the vocab size"));

  Generator gen(0);
  ck.model = std::make_shared<CharGRU>(c, gen);
  ck.model->to(*dtype == npz::DType::Float64 ? DType::Float64 : DType::Float32);
  load_state(archive, path, *ck.model, true);  // checks every remaining shape; vocab (and
                                               // reset_before) are the extras
  return ck;
}

// ---- evaluation ---------------------------------------------------------------------------------

double score(CharGRU& model, const std::vector<std::int64_t>& ids, std::vector<double>* log_probs,
             std::size_t chunk) {
  if (ids.size() < 2) throw ValueError("score: the text needs at least 2 characters (the first is not predicted)");
  NoGradGuard no_grad;
  Tensor h;
  double total = 0;
  std::size_t n = ids.size() - 1;
  for (std::size_t s = 0; s < n; s += chunk) {
    std::size_t e = std::min(s + chunk, n);
    std::vector<std::int64_t> in(ids.begin() + std::ptrdiff_t(s), ids.begin() + std::ptrdiff_t(e));
    std::vector<std::int64_t> target(ids.begin() + std::ptrdiff_t(s) + 1, ids.begin() + std::ptrdiff_t(e) + 1);
    CharGRU::Output out = model.forward(in, 1, in.size(), h);
    h = out.h_n;
    Tensor lp = log_softmax(out.logits, 1);  // (len, V)
    std::size_t V = model.config.vocab_size;
    for (std::size_t i = 0; i < target.size(); ++i) {
      double v = lp.at(i * V + static_cast<std::size_t>(target[i]));
      total -= v;
      if (log_probs) log_probs->push_back(v);
    }
  }
  return total / static_cast<double>(n);
}

std::vector<GRU::GateRecord> gate_trace(CharGRU& model, const std::vector<std::int64_t>& ids,
                                        std::size_t layer) {
  if (layer >= model.config.layers)
    throw ValueError(fmt::format("layer {} does not exist: the model has {} layer(s)", layer, model.config.layers));
  NoGradGuard no_grad;
  model.gru->set_record_gates(true);  // recording runs the composed GRU
  model.forward(ids, 1, ids.size());
  model.gru->set_record_gates(false);
  return model.gru->gate_records().at(layer);
}

}  // namespace char_model

namespace char_model {

std::string candidate_formula(bool reset_before, bool course) {
  if (course)
    return reset_before ? "c~ = tanh(W_c [Γr ⊙ c<t-1>, x] + b_c)  (the course's candidate)"
                        : "c~ = tanh(W_cx x + b_cx + Γr ⊙ (W_cc c<t-1> + b_cc))  (PyTorch's reset-after "
                          "candidate: Γr acts after the matmul, NOT the course's formula)";
  return reset_before ? "n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)  (reset before: the course's/Cho's candidate)"
                      : "n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))  (reset after: PyTorch's nn.GRU)";
}

std::string gate_table(const std::vector<GRU::GateRecord>& records, const std::u32string& text,
                       std::size_t t, std::size_t unit_begin, std::size_t unit_end, bool course) {
  if (t < 1 || t > records.size())
    throw ValueError(fmt::format("step {} is out of range: the text has {} characters (steps 1..{})",
                                 t, text.size(), text.size()));
  const GRU::GateRecord& rec = records[t - 1];
  std::string out = fmt::format(
      "step {} reads '{}' (text[{}]){}\n", t, show_char(text[t - 1]), t - 1,
      t < text.size() ? fmt::format(" and predicts '{}'", show_char(text[t])) : "");
  if (course)
    out += fmt::format("{:>5} {:>9} {:>9} {:>9} {:>9} {:>9}  {}\n", "unit", "c<t-1>", "Γr", "Γu=1-z",
                       "c~", "c<t>", "remark");
  else
    out += fmt::format("{:>5} {:>9} {:>9} {:>9} {:>9} {:>9}  {}\n", "unit", "h_prev", "r", "z", "n",
                       "h", "remark");
  for (std::size_t u = unit_begin; u < unit_end; ++u) {
    double hp = rec.h_prev.at(u), r = rec.r.at(u), z = rec.z.at(u), n = rec.n.at(u), h = rec.h.at(u);
    std::string remark;
    if (z < 0.05)
      remark = course ? fmt::format("Γu≈1: takes the candidate (c = c~ = {:.2f}, was {:.2f})", n, hp)
                      : fmt::format("z≈0: takes the candidate (h = n = {:.2f}, was {:.2f})", n, hp);
    else if (z > 0.95)
      remark = course ? fmt::format("Γu≈0: keeps its old state ({:.2f} → {:.2f})", hp, h)
                      : fmt::format("z≈1: keeps its old state ({:.2f} → {:.2f})", hp, h);
    out += fmt::format("{:>5} {:>9.4f} {:>9.4f} {:>9.4f} {:>9.4f} {:>9.4f}  {}\n", u, hp, r,
                       course ? 1.0 - z : z, n, h, remark);
  }
  return out;
}

}  // namespace char_model
