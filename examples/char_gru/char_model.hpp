// The character-level GRU language model shared by char_gru and gru_gates.
//
//   CharGRU: [Embedding(V, E)] → GRU(V or E → H, num_layers, batch_first) → Linear(H → V)
//
// Its state dict is exactly that of this PyTorch module (tools/torch_char_gru.py):
//   class CharGRU(nn.Module):
//       def __init__(self, V, H, L, E=None):
//           if E: self.embed = nn.Embedding(V, E)
//           self.gru = nn.GRU(E or V, H, L, batch_first=True)
//           self.head = nn.Linear(H, V)
// A checkpoint is that state dict plus `vocab` (int32 Unicode code points in one-hot order),
// saved as .npz, float32 or float64.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "framework/module.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

namespace char_model {

using tapegrad::Tensor;

// ---- text ---------------------------------------------------------------------------------------

/// Decodes UTF-8 strictly; throws tapegrad::ValueError naming `what` and the byte offset.
std::u32string utf8_decode(const std::string& bytes, const std::string& what);
std::string utf8_encode(const std::u32string& text);
std::string utf8_encode(char32_t c);
/// True when `text` contains a word a classroom demo should not print (profanities, slurs and
/// sexual terms, English; whole words, and a few stems anywhere). The list is stored ROT13-encoded
/// so that the source itself stays clean. Used to re-draw such samples, never to change training.
bool is_offensive(const std::u32string& text);
/// A printable form of one character for tables: '\n' → "\\n", ' ' → "␠".
std::string show_char(char32_t c);

/// The characters a model knows, in one-hot index order. A vocabulary built from a text is
/// sorted by code point; one read from a checkpoint keeps the file's order (PyTorch models often
/// use first-seen or set() order): chars[i] is one-hot index i either way.
struct Vocab {
  std::vector<char32_t> chars;
  std::size_t size() const { return chars.size(); }
  /// Index of c, or -1.
  std::int64_t find(char32_t c) const;
  /// Indices of every character; throws tapegrad::ValueError naming the first unknown
  /// character and its position.
  std::vector<std::int64_t> encode(const std::u32string& text, const std::string& what) const;
  /// The sorted distinct characters of `text`.
  static Vocab from_text(const std::u32string& text);
  /// The characters in the given order; throws tapegrad::ValueError naming `what` unless they
  /// are unique Unicode scalar values (0..0x10FFFF, no surrogates) and at least one.
  static Vocab from_chars(std::vector<char32_t> chars, const std::string& what);

 private:
  std::vector<std::pair<char32_t, std::int64_t>> index_;  // sorted by character
  void build_index();
};

/// Reads a UTF-8 corpus. Throws tapegrad::FileError when missing, unreadable, empty or invalid.
std::u32string read_corpus(const std::string& path);
/// The default corpus: /usr/share/dict/words (Debian's wamerican) when present, else a corpus
/// generated here (pronounceable pseudo-words, one per line). `source` says which.
std::u32string default_corpus(std::string& source);

// ---- the model ----------------------------------------------------------------------------------

struct Config {
  std::size_t vocab_size = 0;   // V
  std::size_t hidden = 128;     // H
  std::size_t layers = 1;       // L
  std::size_t embed_dim = 0;    // E; 0 = one-hot inputs
  /// The course's (and Cho et al.'s) candidate n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)
  /// instead of PyTorch's r ⊙ (W_hn h + b_hn). PyTorch's nn.GRU cannot load such a model; its
  /// checkpoint says so with an entry `reset_before` = 1 (the only entry beyond the state dict).
  bool reset_before = false;
};

class CharGRU : public tapegrad::Module {
 public:
  CharGRU(const Config& config, tapegrad::Generator& gen);

  struct Output {
    Tensor logits;  // (B·T, V), row b·T + t predicts the character after ids[b][t]
    Tensor h_n;     // (L, B, H)
  };
  /// ids: B·T vocabulary indices, row-major (B, T); h0: (L, B, H) or undefined (zeros).
  Output forward(const std::vector<std::int64_t>& ids, std::size_t B, std::size_t T,
                 const Tensor& h0 = Tensor());

  Config config;
  std::shared_ptr<tapegrad::Embedding> embed;  // null for one-hot inputs
  std::shared_ptr<tapegrad::GRU> gru;
  std::shared_ptr<tapegrad::Linear> head;
};

/// A model with its vocabulary.
struct Checkpoint {
  std::shared_ptr<CharGRU> model;
  Vocab vocab;
};

/// Writes the checkpoint atomically: exactly the state dict of the PyTorch module above plus
/// `vocab` (int32 code points in one-hot order), nothing else (a reset-before model adds
/// `reset_before` = 1, see Config), so that PyTorch's strict
/// load_state_dict accepts it once `vocab` is set aside. Refuses non-finite weights (a diverged
/// model never replaces a good file).
void save_checkpoint(const std::string& path, const CharGRU& model, const Vocab& vocab);
/// Reads a checkpoint written by save_checkpoint or by PyTorch (tools/checkpoint_convert.py),
/// reading the file once. Strict: infers V, H, L, E from the shapes and requires every tensor of
/// every layer l0..l(L−1) (contiguous), no other entry, every shape consistent, float32 or
/// float64 throughout, finite values, and a vocabulary of unique Unicode scalar values in any
/// order. The total uncompressed size is bounded relative to the file's size (zip bombs).
/// Throws tapegrad::FileError naming the file and the entry.
Checkpoint load_checkpoint(const std::string& path);

/// FNV-1a over the parameters' names and bytes: ties a resume-state file to its checkpoint.
std::int64_t weights_hash(const CharGRU& model);

/// Mean cross-entropy (nats) of predicting text[i] from text[:i], i = 1..n−1, from h0 = 0,
/// one stream processed in chunks of `chunk` characters; fills log_probs (n−1 values) if given.
double score(CharGRU& model, const std::vector<std::int64_t>& ids,
             std::vector<double>* log_probs = nullptr, std::size_t chunk = 1024);

/// The gates of one layer at every step of `ids` (B = 1, from h0 = 0): records[t−1] is step t.
std::vector<tapegrad::GRU::GateRecord> gate_trace(CharGRU& model,
                                                  const std::vector<std::int64_t>& ids,
                                                  std::size_t layer);

}  // namespace char_model

namespace char_model {

/// The walkthrough table of step t (1-based: step t reads text[t−1] and writes h_t) for units
/// [unit_begin, unit_end): h_{t−1}, r, z, n, h per unit with a remark where the update gate is
/// saturated. course = true shows the course's names: Γu = 1 − z, Γr = r, c~ = n.
/// The candidate's formula for the model's variant, in PyTorch's or the course's names.
std::string candidate_formula(bool reset_before, bool course);
std::string gate_table(const std::vector<tapegrad::GRU::GateRecord>& records,
                       const std::u32string& text, std::size_t t, std::size_t unit_begin,
                       std::size_t unit_end, bool course);

}  // namespace char_model
