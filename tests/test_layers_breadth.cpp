// The sequence-model layers of issue 14 — RNN, LSTM, bidirectional GRU, LayerNorm, GELU,
// Sequential, MultiheadAttention, TransformerEncoderLayer — against PyTorch fixtures made by
// tools/make_fixtures.py (see tests/fixtures/README.md), float64 to 1e-10 and float32 to 1e-5:
// values and the gradients of every input and parameter of L = Σ_outputs sum(output ⊙ seed).
// Also: Dropout's mask statistics and scaling, eval = identity, the bidirectional layout, masks,
// Sequential's names, and the errors (shape, dtype, range) each layer raises.
//
// TAPEGRAD_PRINT_ERRORS=1 prints the worst relative error of every compared tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
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

constexpr DType f64 = DType::Float64;

/// Compares the output, then backward of Σ sum(out ⊙ seed_out), then the inputs' and every
/// parameter's gradient.
void check_outputs_and_grads(const Fixture& f, const Module& m,
                             const std::vector<std::pair<std::string, Tensor>>& outputs,
                             const std::vector<std::pair<std::string, Tensor>>& inputs) {
  const double tol = f.precision.tol;
  Tensor L;
  for (const auto& [name, out] : outputs) {
    expect_close(out, f.get(name), tol, f.name + " " + name);
    Tensor term = sum(out * f.get("seed_" + name));
    L = L.defined() ? L + term : term;
  }
  L.backward();
  for (const auto& [name, in] : inputs)
    expect_close(in.grad(), f.get("grad_" + name), tol, f.name + " grad_" + name);
  for (const auto& [name, p] : m.named_parameters())
    expect_close(p.grad(), f.get("grad_" + name), tol, f.name + " grad_" + name);
}

template <class E, class F>
void expect_error(F&& f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "no exception";
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments)
      EXPECT_NE(msg.find(frag), std::string::npos) << "'" << frag << "' not in: " << msg;
  }
}

Tensor rand64(const Shape& s, std::uint64_t seed) {
  Generator g(seed);
  return uniform(s, -1, 1, g, f64);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return xt::amax(xt::abs(a.to_f64() - b.to_f64()))();
}

}  // namespace

// ---- PyTorch parity ---------------------------------------------------------------------------

TEST(BreadthParity, RNNTanhBatchFirstAndReluBidirectionalTimeMajor) {
  for (const char* name : {"rnn_tanh", "rnn_relu_bi"})
    for (const auto& p : kPrecisions) {
      SCOPED_TRACE(std::string(name) + " " + p.suffix);
      Fixture f(name, p);
      const bool bi = f.integer("bidirectional"), bf = f.integer("batch_first");
      RNN rnn(RNNOptions(5, 4).num_layers(2).nonlinearity(bi ? "relu" : "tanh").batch_first(bf).bidirectional(bi));
      f.load_into(rnn);
      Tensor x = f.get("x", true), h0 = f.get("h0", true);
      RNN::Output out = rnn(x, h0);
      check_outputs_and_grads(f, rnn, {{"output", out.output}, {"h_n", out.h_n}}, {{"x", x}, {"h0", h0}});
    }
}

TEST(BreadthParity, LSTMAndBidirectionalLSTM) {
  for (const char* name : {"lstm", "lstm_bi"})
    for (const auto& p : kPrecisions) {
      SCOPED_TRACE(std::string(name) + " " + p.suffix);
      Fixture f(name, p);
      const bool bi = f.integer("bidirectional"), bf = f.integer("batch_first");
      LSTM lstm(LSTMOptions(5, 4).num_layers(2).batch_first(bf).bidirectional(bi));
      f.load_into(lstm);
      for (LSTM::Path path : {LSTM::Path::Auto, LSTM::Path::Composed}) {  // fused, then composed
        SCOPED_TRACE(path == LSTM::Path::Auto ? "fused (the default)" : "composed");
        lstm.set_path(path);
        lstm.zero_grad();
        Tensor x = f.get("x", true), h0 = f.get("h0", true), c0 = f.get("c0", true);
        LSTM::Output out = lstm(x, h0, c0);
        EXPECT_EQ(out.fused, path == LSTM::Path::Auto);
        check_outputs_and_grads(f, lstm,
                                {{"output", out.output}, {"h_n", out.h_n}, {"c_n", out.c_n}},
                                {{"x", x}, {"h0", h0}, {"c0", c0}});
      }
    }
}

TEST(BreadthParity, BidirectionalGRU) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("gru_bi", p);
    GRU gru(GRUOptions(5, 4).num_layers(2).bidirectional(true));
    f.load_into(gru);
    Tensor x = f.get("x", true), h0 = f.get("h0", true);
    GRU::Output fast = gru(x, h0);  // the default path: the fused kernel, both directions
    EXPECT_TRUE(fast.fused);
    check_outputs_and_grads(f, gru, {{"output", fast.output}, {"h_n", fast.h_n}}, {{"x", x}, {"h0", h0}});
    gru.zero_grad();
    x.zero_grad();
    h0.zero_grad();
    gru.set_path(GRU::Path::Composed);
    GRU::Output out = gru(x, h0);
    ASSERT_EQ(out.steps.size(), 4u);  // layer · 2 + direction
    check_outputs_and_grads(f, gru, {{"output", out.output}, {"h_n", out.h_n}}, {{"x", x}, {"h0", h0}});
  }
}

TEST(BreadthParity, LayerNormOverTwoTrailingDims) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("layer_norm", p);
    LayerNorm norm(LayerNormOptions(Shape{3, 4}));
    f.load_into(norm);
    Tensor x = f.get("x", true);
    check_outputs_and_grads(f, norm, {{"y", norm(x)}}, {{"x", x}});
  }
}

TEST(BreadthParity, GeluExactOverMinus12To12) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("gelu", p);
    Tensor x = f.get("x", true);
    GELU act;
    check_outputs_and_grads(f, act, {{"y", act(x)}}, {{"x", x}});
  }
}

TEST(BreadthParity, SequentialStateDictInterchanges) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("sequential", p);
    Sequential seq(std::make_shared<Linear>(4, 8), std::make_shared<ReLU>(),
                   std::make_shared<LayerNorm>(8), std::make_shared<Linear>(8, 3));
    f.load_into(seq);  // strict: exactly 0.weight, 0.bias, 2.weight, 2.bias, 3.weight, 3.bias
    Tensor x = f.get("x", true);
    check_outputs_and_grads(f, seq, {{"y", seq(x)}}, {{"x", x}});
  }
}

TEST(BreadthParity, MultiheadSelfAttentionBooleanMasks) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("mha_self", p);
    MultiheadAttention mha(MultiheadAttentionOptions(8, 2));
    f.load_into(mha);
    Tensor x = f.get("x", true);
    auto out = mha(x, x, x, AttentionMask::boolean(f.mask("key_padding_mask")), true,
                   AttentionMask::boolean(f.mask("attn_mask")));
    check_outputs_and_grads(f, mha, {{"output", out.output}, {"weights", out.weights}}, {{"x", x}});
  }
}

TEST(BreadthParity, MultiheadCrossAttentionAdditiveMaskPerHeadWeights) {
  for (const auto& p : kPrecisions) {
    SCOPED_TRACE(p.suffix);
    Fixture f("mha_cross", p);
    MultiheadAttention mha(MultiheadAttentionOptions(8, 2));
    f.load_into(mha);
    Tensor q = f.get("query", true), k = f.get("key", true), v = f.get("value", true);
    auto out = mha(q, k, v, AttentionMask::boolean(f.mask("key_padding_mask")), true,
                   AttentionMask::additive(f.get("attn_mask")), /*average_attn_weights=*/false);
    check_outputs_and_grads(f, mha, {{"output", out.output}, {"weights", out.weights}},
                            {{"query", q}, {"key", k}, {"value", v}});
  }
}

TEST(BreadthParity, TransformerEncoderLayerPostNormReluAndPreNormGelu) {
  for (const char* name : {"transformer_post_relu", "transformer_pre_gelu"})
    for (const auto& p : kPrecisions) {
      SCOPED_TRACE(std::string(name) + " " + p.suffix);
      Fixture f(name, p);
      const bool pre = std::string(name) == "transformer_pre_gelu";
      TransformerEncoderLayer enc(TransformerEncoderLayerOptions(8, 2)
                                      .dim_feedforward(16)
                                      .dropout(0.1)
                                      .activation(pre ? "gelu" : "relu")
                                      .norm_first(pre));
      f.load_into(enc);
      enc.eval();
      Tensor x = f.get("x", true);
      Tensor y = enc(x, AttentionMask::boolean(f.mask("src_mask")),
                     AttentionMask::boolean(f.mask("src_key_padding_mask")));
      check_outputs_and_grads(f, enc, {{"y", y}}, {{"x", x}});
    }
}

// ---- semantics ---------------------------------------------------------------------------------

// The reverse direction is the same cell run over the reversed sequence: with the reverse
// parameters copied into a one-direction layer, its output on x[::-1] reversed again equals the
// second half of the bidirectional output.
TEST(BreadthSemantics, ReverseDirectionIsTheCellOverTheReversedSequence) {
  const std::size_t B = 2, T = 5, I = 3, H = 4;
  Tensor x = rand64({B, T, I}, 1);
  std::vector<std::int64_t> rev;
  for (std::size_t t = T; t-- > 0;) rev.push_back(std::int64_t(t));
  Tensor x_rev = index_select(x, 1, rev);
  auto reverse_params = [](const Module& bi) {
    StateDict sd;
    for (const auto& [name, p] : bi.named_parameters())
      if (name.size() > 8 && name.substr(name.size() - 8) == "_reverse")
        sd[name.substr(0, name.size() - 8)] = p;
    return sd;
  };
  auto second_half = [&](const Tensor& out) { return narrow(out, 2, H, H); };
  {
    Generator g(2);
    RNN bi(RNNOptions(I, H).batch_first(true).bidirectional(true), g), one(RNNOptions(I, H).batch_first(true), g);
    bi.to(f64), one.to(f64);
    one.load_state_dict(reverse_params(bi));
    EXPECT_LT(max_abs_diff(second_half(bi(x).output), index_select(one(x_rev).output, 1, rev)), 1e-15);
  }
  {
    Generator g(3);
    LSTM bi(LSTMOptions(I, H).batch_first(true).bidirectional(true), g), one(LSTMOptions(I, H).batch_first(true), g);
    bi.to(f64), one.to(f64);
    one.load_state_dict(reverse_params(bi));
    auto a = bi(x), b = one(x_rev);
    EXPECT_LT(max_abs_diff(second_half(a.output), index_select(b.output, 1, rev)), 1e-15);
    EXPECT_LT(max_abs_diff(select(a.c_n, 0, 1), select(b.c_n, 0, 0)), 1e-15);
  }
  {
    Generator g(4);
    GRU bi(GRUOptions(I, H).bidirectional(true), g), one(GRUOptions(I, H), g);
    bi.set_path(GRU::Path::Composed);   // both composed: the same summation order (1e-15),
    one.set_path(GRU::Path::Composed);  // and the per-step states
    bi.to(f64), one.to(f64);
    one.load_state_dict(reverse_params(bi));
    auto a = bi(x), b = one(x_rev);
    EXPECT_LT(max_abs_diff(second_half(a.output), index_select(b.output, 1, rev)), 1e-15);
    // steps[1][t] is the reverse state at time position t (it has read x_T..x_t).
    EXPECT_LT(max_abs_diff(a.steps[1][0], b.steps[0][T - 1]), 1e-15);
    EXPECT_LT(max_abs_diff(select(a.h_n, 0, 1), a.steps[1][0]), 1e-15);
  }
}

// A bidirectional GRU keeps the integer-id input path (both directions gather their columns)
// and records the gates of both directions by time position.
TEST(BreadthSemantics, BidirectionalGRUIdsPathAndGateRecords) {
  const std::size_t B = 2, T = 4, V = 5, H = 3;
  Generator g(13);
  GRU gru(GRUOptions(V, H).num_layers(2).bidirectional(true), g);
  gru.to(f64);
  std::vector<std::int64_t> ids = {0, 3, 4, 1, 2, 2, 0, 4};
  Tensor x = reshape(one_hot(ids, V, f64), Shape{B, T, V});
  gru.set_record_gates(true);
  GRU::Output a = gru.forward_ids(ids, B, T, V), b = gru(x);
  EXPECT_EQ(a.output.to_f64(), b.output.to_f64());
  EXPECT_EQ(a.h_n.to_f64(), b.h_n.to_f64());
  const auto& rec = gru.gate_records();
  ASSERT_EQ(rec.size(), 4u);
  for (const auto& r : rec) ASSERT_EQ(r.size(), T);
  EXPECT_EQ(rec[1][0].h.to_f64(), b.steps[1][0].to_f64());           // reverse, t = 0: its last step
  EXPECT_EQ(rec[1][0].h_prev.to_f64(), b.steps[1][1].to_f64());      // ...which read the state at t = 1
  EXPECT_EQ(rec[3][T - 1].h_prev.to_f64(), zeros({B, H}, f64).to_f64());  // layer 1 reverse starts at T
}

TEST(BreadthSemantics, BatchFirstIsATranspose) {
  Generator g(5);
  LSTM tm(LSTMOptions(3, 4).num_layers(2), g);
  tm.to(f64);
  LSTM bf(LSTMOptions(3, 4).num_layers(2).batch_first(true));
  bf.to(f64);
  bf.load_state_dict(tm.state_dict());
  Tensor x = rand64({6, 2, 3}, 6);  // (T, B, I)
  EXPECT_EQ(max_abs_diff(transpose(tm(x).output, 0, 1), bf(transpose(x, 0, 1)).output), 0.0);
}

TEST(BreadthSemantics, ParameterNamesArePyTorchs) {
  auto names = [](const Module& m) {
    std::vector<std::string> v;
    for (const auto& [n, p] : m.named_parameters()) v.push_back(n);
    return v;
  };
  EXPECT_EQ(names(LSTM(LSTMOptions(3, 4).bidirectional(true))),
            (std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                      "weight_ih_l0_reverse", "weight_hh_l0_reverse",
                                      "bias_ih_l0_reverse", "bias_hh_l0_reverse"}));
  EXPECT_EQ(names(TransformerEncoderLayer(TransformerEncoderLayerOptions(8, 2).dim_feedforward(4))),
            (std::vector<std::string>{"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                                      "self_attn.out_proj.weight", "self_attn.out_proj.bias",
                                      "linear1.weight", "linear1.bias", "linear2.weight",
                                      "linear2.bias", "norm1.weight", "norm1.bias",
                                      "norm2.weight", "norm2.bias"}));
  GRU gru(GRUOptions(3, 4).num_layers(2).bidirectional(true));
  EXPECT_EQ(gru.weight_ih[2].shape(), (Shape{12, 8}));  // layer 1 reads both directions
  MultiheadAttention mha(MultiheadAttentionOptions(8, 2));
  EXPECT_EQ(mha.out_proj->bias.to_f64(), xt::zeros<double>({8}));
  EXPECT_EQ(mha.in_proj_bias.to_f64(), xt::zeros<double>({24}));
  const double bound = std::sqrt(6.0 / 32.0);  // xavier_uniform on (24, 8)
  EXPECT_LE(xt::amax(xt::abs(mha.in_proj_weight.to_f64()))(), bound);
}

TEST(BreadthSemantics, AttentionWeightsMasksAndHeads) {
  MultiheadAttention mha(MultiheadAttentionOptions(8, 4));
  mha.to(f64);
  Tensor x = rand64({2, 5, 8}, 7);
  Tensor causal = zeros({5, 5}, f64), pad = zeros({2, 5}, f64);
  for (std::size_t i = 0; i < 5; ++i)
    for (std::size_t j = i + 1; j < 5; ++j) causal.data<double>()(i, j) = 1;
  pad.data<double>()(0, 4) = 1;
  auto per_head = mha(x, x, x, AttentionMask::boolean(pad), true, AttentionMask::boolean(causal), false);
  auto avg = mha(x, x, x, AttentionMask::boolean(pad), true, AttentionMask::boolean(causal));
  ASSERT_EQ(per_head.weights.shape(), (Shape{2, 4, 5, 5}));
  ASSERT_EQ(avg.weights.shape(), (Shape{2, 5, 5}));
  EXPECT_LT(max_abs_diff(mean(per_head.weights, {1}), avg.weights), 1e-15);
  xt::xarray<double> w = avg.weights.to_f64();
  EXPECT_LT(xt::amax(xt::abs(xt::sum(w, {2}) - 1.0))(), 1e-14);
  for (std::size_t b = 0; b < 2; ++b)
    for (std::size_t i = 0; i < 5; ++i)
      for (std::size_t j = 0; j < 5; ++j)
        if (j > i || (b == 0 && j == 4)) EXPECT_EQ(w(b, i, j), 0.0) << b << i << j;
  EXPECT_FALSE(mha(x, x, x, {}, /*need_weights=*/false).weights.defined());
  // A boolean mask equals the additive 0 / −∞ mask.
  Tensor add = mul(causal, -1e300);
  auto a2 = mha(x, x, x, {}, true, AttentionMask::additive(add));
  auto b2 = mha(x, x, x, {}, true, AttentionMask::boolean(causal));
  EXPECT_LT(max_abs_diff(a2.output, b2.output), 1e-15);
}

TEST(BreadthSemantics, ScaledDotProductAttentionByHand) {
  Tensor q = rand64({1, 2, 3}, 8), k = rand64({1, 4, 3}, 9), v = rand64({1, 4, 2}, 10);
  AttentionOutput a = scaled_dot_product_attention(q, k, v);
  Tensor ref = matmul(softmax(matmul(q, k, false, true) / std::sqrt(3.0), -1), v);
  EXPECT_LT(max_abs_diff(a.output, ref), 1e-15);
}

// ---- Dropout ------------------------------------------------------------------------------------

TEST(BreadthDropout, MaskStatisticsAndScaling) {
  for (double p : {0.1, 0.3, 0.5, 0.9}) {
    SCOPED_TRACE(p);
    Dropout drop(p);
    drop.manual_seed(42);
    const std::size_t n = 200000;
    Tensor x = ones({n}, f64).requires_grad_();
    Tensor y = drop(x);
    xt::xarray<double> v = y.to_f64();
    std::size_t zeros_seen = 0;
    for (double e : v) {
      if (e == 0.0) ++zeros_seen;
      else EXPECT_EQ(e, 1.0 / (1.0 - p));
    }
    const double frac = double(zeros_seen) / n, sd = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(frac, p, 5 * sd);
    EXPECT_NEAR(xt::mean(v)(), 1.0, 6 * sd / (1 - p));  // unbiased: E[y] = x
    y.backward(ones({n}, f64));
    EXPECT_EQ(x.grad().to_f64(), v);  // dy/dx = mask / (1 − p)
  }
}

TEST(BreadthDropout, EvalIsTheIdentityAndSeedsReproduce) {
  Dropout drop(0.5);
  Tensor x = rand64({4, 7}, 11);
  drop.manual_seed(3);
  Tensor a = drop(x);
  drop.manual_seed(3);
  EXPECT_EQ(drop(x).to_f64(), a.to_f64());
  EXPECT_NE(drop(x).to_f64(), a.to_f64());  // the generator moved on
  drop.eval();
  EXPECT_TRUE(drop(x).is_same(x));
  drop.train();
  EXPECT_NE(drop(x).to_f64(), x.to_f64());
  Dropout none(0.0);
  EXPECT_EQ(none(x).to_f64(), x.to_f64());
  // train()/eval() reach a Dropout inside a Sequential and a Transformer layer.
  Sequential seq(std::make_shared<Linear>(7, 7), std::make_shared<Dropout>(0.5));
  seq.to(f64);
  seq.eval();
  EXPECT_EQ(seq(x).to_f64(), (*std::dynamic_pointer_cast<Linear>(seq[0]))(x).to_f64());
  TransformerEncoderLayer enc(TransformerEncoderLayerOptions(8, 2).dim_feedforward(16).dropout(0.5));
  enc.to(f64);
  Tensor src = rand64({2, 3, 8}, 12);
  Tensor t1 = enc(src), t2 = enc(src);
  EXPECT_GT(max_abs_diff(t1, t2), 1e-3);  // training: two different masks
  enc.eval();
  EXPECT_EQ(max_abs_diff(enc(src), enc(src)), 0.0);
}

// ---- errors ------------------------------------------------------------------------------------

TEST(BreadthErrors, DropoutRange) {
  for (double p : {-0.1, 1.0, 1.5, std::numeric_limits<double>::quiet_NaN()})
    expect_error<ValueError>([&] { Dropout d(p); }, {"Dropout", "[0, 1)"});
  Generator g(0);
  expect_error<ValueError>([&] { dropout(ones({2}), 1.0, true, g); }, {"dropout", "[0, 1)"});
}

TEST(BreadthErrors, RecurrentLayers) {
  expect_error<ValueError>([] { RNN r(RNNOptions(3, 4).nonlinearity("sigmoid")); }, {"RNN", "sigmoid"});
  expect_error<ValueError>([] { RNN r(RNNOptions(3, 0)); }, {"RNN", "hidden_size"});
  expect_error<ValueError>([] { LSTM r(LSTMOptions(0, 4)); }, {"LSTM", "input_size"});
  expect_error<ValueError>([] { LSTM r(LSTMOptions(3, 4).num_layers(0)); }, {"LSTM", "num_layers"});
  LSTM lstm(LSTMOptions(3, 4).num_layers(2).bidirectional(true).batch_first(true));
  lstm.to(f64);
  expect_error<ShapeError>([&] { lstm(rand64({2, 5}, 1)); }, {"LSTM", "(B, T, 3)", "(2, 5)"});
  expect_error<ShapeError>([&] { lstm(rand64({2, 5, 4}, 1)); }, {"LSTM", "(2, 5, 4)"});
  expect_error<ShapeError>([&] { lstm(zeros({2, 0, 3}, f64)); }, {"LSTM", "empty", "(2, 0, 3)"});
  expect_error<ShapeError>([&] { lstm(rand64({2, 5, 3}, 1), rand64({2, 2, 4}, 2)); },
                           {"LSTM", "h0", "(4, 2, 4)", "(2, 2, 4)"});
  expect_error<ShapeError>([&] { lstm(rand64({2, 5, 3}, 1), Tensor(), rand64({4, 3, 4}, 2)); },
                           {"LSTM", "c0", "(4, 2, 4)", "(4, 3, 4)"});
  expect_error<DTypeError>([&] { lstm(ones({2, 5, 3}, DType::Float32)); }, {"LSTM", "float32"});
  RNN rnn(RNNOptions(3, 4));  // time-major by default
  expect_error<ShapeError>([&] { rnn(ones({5, 2, 4})); }, {"RNN", "(T, B, 3)", "time first"});
  GRU gru(GRUOptions(3, 4).bidirectional(true));
  expect_error<ShapeError>([&] { gru(ones({2, 5, 3}), ones({1, 2, 4})); },
                           {"GRU", "h0", "(2, 2, 4)", "(1, 2, 4)"});
}

TEST(BreadthErrors, AttentionAndTransformer) {
  expect_error<ValueError>([] { MultiheadAttention m(MultiheadAttentionOptions(10, 3)); },
                           {"MultiheadAttention", "10", "num_heads 3"});
  expect_error<ValueError>([] { MultiheadAttention m(MultiheadAttentionOptions(8, 0)); },
                           {"MultiheadAttention", "num_heads"});
  expect_error<ValueError>([] { MultiheadAttention m(MultiheadAttentionOptions(0, 2)); },
                           {"MultiheadAttention", "embed_dim"});
  expect_error<ValueError>([] { MultiheadAttention m(MultiheadAttentionOptions(8, 2).dropout(1.0)); },
                           {"MultiheadAttention", "dropout"});
  MultiheadAttention mha(MultiheadAttentionOptions(8, 2));
  mha.to(f64);
  Tensor x = rand64({2, 5, 8}, 1), kv = rand64({2, 6, 8}, 2);
  expect_error<ShapeError>([&] { mha(x, x, x, {}, true, AttentionMask::boolean(zeros({5, 4}, f64))); },
                           {"MultiheadAttention", "attn_mask", "(5, 5)", "(5, 4)"});
  expect_error<ShapeError>([&] { mha(x, kv, kv, AttentionMask::boolean(zeros({2, 5}, f64))); },
                           {"MultiheadAttention", "key_padding_mask", "(2, 6)", "(2, 5)"});
  expect_error<ShapeError>([&] { mha(x, kv, x); }, {"MultiheadAttention", "(2, 6, 8)", "(2, 5, 8)"});
  expect_error<ShapeError>([&] { mha(rand64({2, 5, 6}, 3), x, x); }, {"MultiheadAttention", "E = 8", "(2, 5, 6)"});
  expect_error<ShapeError>([&] { mha(zeros({2, 0, 8}, f64), x, x); }, {"MultiheadAttention", "zero-size", "(2, 0, 8)"});
  expect_error<DTypeError>([&] { Tensor y = ones({2, 5, 8}, DType::Float32); mha(y, y, y); },
                           {"MultiheadAttention", "float32", "float64"});
  expect_error<DTypeError>([&] { mha(x, x, x, {}, true, AttentionMask::additive(zeros({5, 5}, DType::Float32))); },
                           {"MultiheadAttention", "additive", "float32"});
  expect_error<ShapeError>(
      [&] { scaled_dot_product_attention(x, x, x, AttentionMask::boolean(zeros({3, 5}, f64))); },
      {"scaled_dot_product_attention", "(3, 5)", "(2, 5, 5)"});
  expect_error<ShapeError>([&] { scaled_dot_product_attention(x, kv, x); },
                           {"scaled_dot_product_attention", "(2, 6, 8)", "(2, 5, 8)"});
  expect_error<ValueError>([] { TransformerEncoderLayer t(TransformerEncoderLayerOptions(8, 2).activation("tanh")); },
                           {"TransformerEncoderLayer", "tanh"});
  expect_error<ValueError>([] { TransformerEncoderLayer t(TransformerEncoderLayerOptions(8, 3)); },
                           {"MultiheadAttention", "num_heads 3"});
  expect_error<ValueError>([] { TransformerEncoderLayer t(TransformerEncoderLayerOptions(8, 2).dropout(-1)); },
                           {"dropout", "[0, 1)"});
  TransformerEncoderLayer enc(TransformerEncoderLayerOptions(8, 2).dim_feedforward(4));
  expect_error<ShapeError>([&] { enc(ones({2, 5, 7})); }, {"TransformerEncoderLayer", "d_model = 8", "(2, 5, 7)"});
}

TEST(BreadthErrors, LayerNormAndSequential) {
  expect_error<ValueError>([] { LayerNorm n(LayerNormOptions(Shape{3, 0})); }, {"LayerNorm", "(3, 0)"});
  expect_error<ValueError>([] { LayerNorm n(LayerNormOptions(Shape{})); }, {"LayerNorm"});
  LayerNorm norm(LayerNormOptions(Shape{3, 4}));
  expect_error<ShapeError>([&] { norm(ones({2, 4, 3})); }, {"LayerNorm", "(*, 3, 4)", "(2, 4, 3)"});
  Sequential seq(std::make_shared<ReLU>());
  expect_error<IndexError>([&] { seq[1]; }, {"Sequential", "1"});
  expect_error<ValueError>([&] { seq.push_back(std::shared_ptr<Tanh>()); }, {"Sequential", "null"});
}
