// PyTorch parity of every layer and loss: values and the gradients of every parameter and input,
// against the fixtures of tools/make_fixtures.py (see tests/fixtures/README.md), in float64
// (to 1e-10) and float32 (to 1e-5). Each layer file's gradients are of
// L = Σ_outputs sum(output ⊙ seed_output), so the seeds are the backward seeds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include <xtensor/xmath.hpp>

#include "framework/npz.hpp"
#include "framework/ops.hpp"
#include "framework/tape.hpp"
#include "layers/layers.hpp"
#include "fixture_support.hpp"

using namespace tapegrad;
using namespace tapegrad::fixture;

namespace {

/// Compares grad_<name> of every parameter of m.
void expect_param_grads(const Module& m, const Fixture& f) {
  for (const auto& [name, p] : m.named_parameters())
    expect_close(p.grad(), f.get("grad_" + name), f.precision.tol, "grad_" + name);
}

/// Σ sum(output ⊙ seed): the fixtures' L for several outputs.
Tensor seeded_loss(const std::vector<std::pair<Tensor, Tensor>>& outputs_and_seeds) {
  Tensor L;
  for (const auto& [out, seed] : outputs_and_seeds) {
    Tensor term = sum(out * seed);
    L = L.defined() ? L + term : term;
  }
  return L;
}

}  // namespace

TEST(LayersParity, Linear2dAnd3d) {
  for (const char* name : {"linear", "linear3d"})
    for (const auto& p : kPrecisions) {
      SCOPED_TRACE(std::string(name) + " " + p.suffix);
      Fixture f(name, p);
      Linear lin(5, 3);
      f.load_into(lin);
      Tensor x = f.get("x", true);
      Tensor y = lin(x);
      expect_close(y, f.get("y"), p.tol, "y");
      y.backward(f.get("seed_y"));
      expect_close(x.grad(), f.get("grad_x"), p.tol, "grad_x");
      expect_param_grads(lin, f);
    }
}

TEST(LayersParity, Embedding) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("embedding", p);
    Embedding emb(6, 3);
    f.load_into(emb);
    Tensor y = emb(f.ids("indices"), {2, 4});  // repeated ids: their gradients add up
    expect_close(y, f.get("y"), p.tol, "y");
    y.backward(f.get("seed_y"));
    expect_param_grads(emb, f);
  }
}

TEST(LayersParity, RNNCell) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("rnn_cell", p);
    RNNCell cell(RNNCellOptions(5, 4));
    f.load_into(cell);
    Tensor x = f.get("x", true), h = f.get("h", true);
    Tensor h_new = cell(x, h);
    expect_close(h_new, f.get("h_new"), p.tol, "h_new");
    h_new.backward(f.get("seed_h_new"));
    expect_close(x.grad(), f.get("grad_x"), p.tol, "grad_x");
    expect_close(h.grad(), f.get("grad_h"), p.tol, "grad_h");
    expect_param_grads(cell, f);
  }
}

TEST(LayersParity, GRUCellBothResetVariants) {
  for (bool reset_after : {true, false})
    for (const auto& p : kPrecisions) {
      const std::string name = reset_after ? "gru_cell" : "gru_cell_reset_before";
      SCOPED_TRACE(name + " " + p.suffix);
      Fixture f(name, p);
      GRUCell cell(GRUCellOptions(5, 4).reset_after(reset_after));
      f.load_into(cell);
      Tensor x = f.get("x", true), h = f.get("h", true);
      GRUCell::Step s = cell.forward_with_gates(x, h);
      expect_close(s.r, f.get("r"), p.tol, "r");
      expect_close(s.z, f.get("z"), p.tol, "z");
      expect_close(s.n, f.get("n"), p.tol, "n");
      expect_close(s.h_new, f.get("h_new"), p.tol, "h_new");
      s.h_new.backward(f.get("seed_h_new"));
      expect_close(x.grad(), f.get("grad_x"), p.tol, "grad_x");
      expect_close(h.grad(), f.get("grad_h"), p.tol, "grad_h");
      expect_param_grads(cell, f);
    }
}

TEST(LayersParity, GRUTwoLayersWithInitialState) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("gru", p);
    ASSERT_EQ(f.ids("num_layers"), std::vector<std::int64_t>{2});
    GRU gru(GRUOptions(5, 4).num_layers(2));
    f.load_into(gru);
    Tensor x = f.get("x", true), h0 = f.get("h0", true);  // (3, 7, 5), (2, 3, 4)
    {  // the default path (the fused kernel) against the same fixture: values and gradients
      GRU::Output fast = gru(x, h0);
      EXPECT_TRUE(fast.fused);
      expect_close(fast.output, f.get("output"), p.tol, "output (fused)");
      expect_close(fast.h_n, f.get("h_n"), p.tol, "h_n (fused)");
      seeded_loss({{fast.output, f.get("seed_output")}, {fast.h_n, f.get("seed_h_n")}}).backward();
      expect_close(x.grad(), f.get("grad_x"), p.tol, "grad_x (fused)");
      expect_close(h0.grad(), f.get("grad_h0"), p.tol, "grad_h0 (fused)");
      expect_param_grads(gru, f);
      gru.zero_grad();
      x.zero_grad();
      h0.zero_grad();
    }
    gru.set_path(GRU::Path::Composed);  // every h_t as a tape tensor (out.steps)
    GRU::Output out = gru(x, h0);
    expect_close(out.output, f.get("output"), p.tol, "output");
    expect_close(out.h_n, f.get("h_n"), p.tol, "h_n");
    ASSERT_EQ(out.steps.size(), 2u);
    ASSERT_EQ(out.steps[1].size(), 7u);
    seeded_loss({{out.output, f.get("seed_output")}, {out.h_n, f.get("seed_h_n")}}).backward();
    expect_close(x.grad(), f.get("grad_x"), p.tol, "grad_x");
    expect_close(h0.grad(), f.get("grad_h0"), p.tol, "grad_h0");
    expect_param_grads(gru, f);
  }
}

TEST(LayersParity, LSTMCell) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("lstm_cell", p);
    LSTMCell cell(LSTMCellOptions(5, 4));
    f.load_into(cell);
    Tensor x = f.get("x", true), h = f.get("h", true), c = f.get("c", true);
    LSTMCell::State s = cell(x, h, c);
    expect_close(s.h, f.get("h_new"), p.tol, "h_new");
    expect_close(s.c, f.get("c_new"), p.tol, "c_new");
    seeded_loss({{s.h, f.get("seed_h_new")}, {s.c, f.get("seed_c_new")}}).backward();
    expect_close(x.grad(), f.get("grad_x"), p.tol, "grad_x");
    expect_close(h.grad(), f.get("grad_h"), p.tol, "grad_h");
    expect_close(c.grad(), f.get("grad_c"), p.tol, "grad_c");
    expect_param_grads(cell, f);
  }
}

TEST(LayersParity, CrossEntropyIncludingExtremeLogits) {
  for (const char* name : {"cross_entropy", "cross_entropy_extreme"})
    for (const auto& p : kPrecisions) {
      SCOPED_TRACE(std::string(name) + " " + p.suffix);
      Fixture f(name, p);
      for (Reduction r : {Reduction::Mean, Reduction::Sum}) {
        const std::string tag = r == Reduction::Mean ? "mean" : "sum";
        Tensor logits = f.get("logits", true);
        Tensor loss = CrossEntropyLoss().reduction(r)(logits, f.ids("target"));
        expect_close(loss, f.get("loss_" + tag), p.tol, "loss_" + tag);
        loss.backward();
        expect_close(logits.grad(), f.get("grad_logits_" + tag), p.tol, "grad_logits_" + tag);
      }
    }
}

TEST(LayersParity, CrossEntropyReadsSequenceLogitsAsRows) {
  Generator gen(3);
  Tensor logits = randn({2, 3, 5}, gen, DType::Float64);
  std::vector<std::int64_t> t = {0, 4, 2, 1, 3, 3};
  Tensor a = CrossEntropyLoss()(logits, t);
  Tensor b = cross_entropy(reshape(logits, std::vector<std::ptrdiff_t>{6, 5}), t);
  EXPECT_EQ(a.item(), b.item());
}

TEST(LayersParity, MSE) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("mse", p);
    Tensor a = f.get("a", true), b = f.get("b", true);
    Tensor loss = MSELoss()(a, b);
    expect_close(loss, f.get("loss"), p.tol, "loss");
    loss.backward();
    expect_close(a.grad(), f.get("grad_a"), p.tol, "grad_a");
    expect_close(b.grad(), f.get("grad_b"), p.tol, "grad_b");
  }
}

// The demo's checkpoints: a torch-trained 2-layer GRU (H = 16) run over a probe text, gate by
// gate (the recorded r, z, n, h_prev, h of every step and layer) and the next-char log-probs.
TEST(LayersParity, CharGRUCheckpointGatesAndLogProbs) {
  for (bool embed : {false, true}) {
    SCOPED_TRACE(embed ? "embedding input" : "one-hot input");
    const std::string dir = TAPEGRAD_FIXTURE_DIR;
    const std::string ckpt = dir + (embed ? "/char_gru_torch_embed.npz" : "/char_gru_torch.npz");
    const std::string exp_path =
        dir + (embed ? "/char_gru_torch_embed_expected.npz" : "/char_gru_torch_expected.npz");

    struct Model : Module {
      explicit Model(bool embed) {
        if (embed) this->embed = register_module("embed", std::make_shared<Embedding>(27, 8));
        gru = register_module("gru",
                              std::make_shared<GRU>(GRUOptions(embed ? 8 : 27, 16).num_layers(2)));
        head = register_module("head", std::make_shared<Linear>(16, 27));
      }
      std::shared_ptr<Embedding> embed;
      std::shared_ptr<GRU> gru;
      std::shared_ptr<Linear> head;
    } m(embed);
    npz::Archive extra = load_state(ckpt, m);  // float32 weights + the vocab
    m.to(DType::Float64);                      // exact upcast, like the reference
    std::vector<std::int32_t> vocab = npz::find(extra, "vocab", ckpt).to_vector<std::int32_t>();

    npz::Archive expected = npz::load_npz(exp_path);
    auto ref = [&](const std::string& key) {
      return from_npz_array(npz::find(expected, key, exp_path), key);
    };
    std::vector<std::int64_t> ids;
    for (std::int32_t ch : npz::find(expected, "text", exp_path).to_vector<std::int32_t>())
      ids.push_back(std::find(vocab.begin(), vocab.end(), ch) - vocab.begin());
    const std::size_t T = ids.size();

    m.gru->set_record_gates(true);
    GRU::Output out =
        embed ? m.gru->forward(m.embed->forward(ids, {1, T})) : m.gru->forward_ids(ids, 1, T, 27);
    const auto& rec = m.gru->gate_records();
    ASSERT_EQ(rec.size(), 2u);
    for (std::size_t k = 0; k < 2; ++k) {
      ASSERT_EQ(rec[k].size(), T);
      auto rows = [&](auto field) {  // (T, H) from the per-step (1, H) records
        std::vector<Tensor> steps;
        for (const auto& r : rec[k]) steps.push_back(r.*field);
        return reshape(stack(steps, 0), std::vector<std::ptrdiff_t>{std::ptrdiff_t(T), 16});
      };
      const std::string l = "_l" + std::to_string(k);
      expect_close(rows(&GRU::GateRecord::r), ref("r" + l), 1e-10, "r" + l);
      expect_close(rows(&GRU::GateRecord::z), ref("z" + l), 1e-10, "z" + l);
      expect_close(rows(&GRU::GateRecord::n), ref("n" + l), 1e-10, "n" + l);
      expect_close(rows(&GRU::GateRecord::h_prev), ref("h_prev" + l), 1e-10, "h_prev" + l);
      expect_close(rows(&GRU::GateRecord::h), ref("h" + l), 1e-10, "h" + l);
      EXPECT_FALSE(rec[k][0].r.requires_grad());  // plain values, off the tape
    }
    // log p(text[i] | text[:i]) for i = 1..T-1 from the last layer's h at step i.
    Tensor logp = log_softmax(
        m.head->forward(reshape(out.output, std::vector<std::ptrdiff_t>{std::ptrdiff_t(T), 16})),
        -1);
    std::vector<double> got;
    for (std::size_t i = 1; i < T; ++i) got.push_back(logp.at((i - 1) * 27 + ids[i]));
    expect_close(from_vector(got, {T - 1}, DType::Float64), ref("log_probs"), 1e-10, "log_probs");
  }
}
