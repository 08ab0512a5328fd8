// Given code of the char-LM assignment (not graded, do not change): the model and the corpus.
//
//   CharLM: Embedding(V, E) → GRU(E → H) → Linear(H → V); forward(ids, B, T) → logits (B·T, V),
//   row b·T + t predicts the character after ids[b·T + t].
//   corpus(): a small generated text (a few sentences, each repeated with variations), and its
//   vocabulary (sorted characters).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

namespace assignment {

using namespace tapegrad;

class CharLM : public Module {
 public:
  CharLM(std::size_t V, std::size_t E, std::size_t H, Generator& gen) {
    embed = register_module("embed", std::make_shared<Embedding>(V, E, gen));
    gru = register_module("gru", std::make_shared<GRU>(GRUOptions(E, H), gen));
    head = register_module("head", std::make_shared<Linear>(H, V, gen));
  }
  /// ids: B·T vocabulary indices, row-major (B, T) → logits (B·T, V).
  Tensor forward(const std::vector<std::int64_t>& ids, std::size_t B, std::size_t T) {
    Tensor x = embed->forward(ids, Shape{B, T});               // (B, T, E)
    Tensor h = gru->forward(x).output;                          // (B, T, H)
    Tensor logits = head->forward(h);                           // (B, T, V)
    return reshape(logits, Shape{B * T, head->options.out_features()});
  }
  std::shared_ptr<Embedding> embed;
  std::shared_ptr<GRU> gru;
  std::shared_ptr<Linear> head;
};

struct Corpus {
  std::string text;
  std::string vocab;                  ///< sorted distinct characters: id = position
  std::vector<std::int64_t> ids;      ///< text encoded
};

/// The training text: 6 short sentences in a random order (fixed seed), 400 of them.
inline Corpus corpus() {
  const char* sentences[] = {"the cat sat on the mat.\n", "a dog ran to the park.\n",
                             "the sun is warm today.\n", "we read a good book.\n",
                             "rain fell on the roof.\n", "birds sing at dawn.\n"};
  Generator gen(2024);
  Corpus c;
  for (int k = 0; k < 400; ++k) c.text += sentences[static_cast<std::size_t>(gen.uniform() * 6) % 6];
  c.vocab = c.text;
  std::sort(c.vocab.begin(), c.vocab.end());
  c.vocab.erase(std::unique(c.vocab.begin(), c.vocab.end()), c.vocab.end());
  for (char ch : c.text) c.ids.push_back(static_cast<std::int64_t>(c.vocab.find(ch)));
  return c;
}

}  // namespace assignment
