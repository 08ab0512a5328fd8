// Float64 gradient checks (central differences against the tape) of the sequence-model layers
// of issue 14: every input and every parameter, by name. Dropout is checked in training mode
// with its mask fixed by re-seeding before each evaluation.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "framework/gradcheck.hpp"
#include "framework/gradcheck_module.hpp"
#include "framework/ops.hpp"
#include "layers/layers.hpp"
#include "gradcheck_support.hpp"

using namespace tapegrad;
using tapegrad::fixture::expect_gradcheck;

namespace {

constexpr DType f64 = DType::Float64;


Tensor input(const Shape& shape, std::uint64_t seed, double a = 1.0) {
  Generator gen(seed);
  return uniform(shape, -a, a, gen, f64).requires_grad_();
}

Tensor flat(const Tensor& t) { return reshape(t, std::vector<std::ptrdiff_t>{-1}); }

Tensor bool_mask(const Shape& shape, const std::vector<std::size_t>& masked_flat) {
  Tensor m = zeros(shape, f64);
  for (std::size_t i : masked_flat) m.data<double>().data()[i] = 1.0;
  return m;
}

}  // namespace

TEST(BreadthGradcheck, RNNTanhAndReluBidirectionalTwoLayers) {
  for (const char* act : {"tanh", "relu"}) {
    SCOPED_TRACE(act);
    Generator gen(1);
    RNN rnn(RNNOptions(3, 3).num_layers(2).nonlinearity(act).bidirectional(true), gen);
    rnn.to(f64);
    Tensor x = input({4, 2, 3}, 2), h0 = input({4, 2, 3}, 3);  // time-major (T, B, I)
    expect_gradcheck(rnn, {x, h0}, {"x", "h0"}, [&] {
      RNN::Output out = rnn(x, h0);
      return concat({flat(out.output), flat(out.h_n)});
    });
  }
}

TEST(BreadthGradcheck, LSTMBidirectionalTwoLayers) {
  Generator gen(4);
  LSTM lstm(LSTMOptions(3, 3).num_layers(2).bidirectional(true).batch_first(true), gen);
  lstm.to(f64);
  Tensor x = input({2, 4, 3}, 5), h0 = input({4, 2, 3}, 6), c0 = input({4, 2, 3}, 7);
  expect_gradcheck(lstm, {x, h0, c0}, {"x", "h0", "c0"}, [&] {
    LSTM::Output out = lstm(x, h0, c0);
    return concat({flat(out.output), flat(out.h_n), flat(out.c_n)});
  });
}

TEST(BreadthGradcheck, GRUBidirectionalTwoLayers) {
  for (bool reset_after : {true, false}) {
    SCOPED_TRACE(reset_after ? "reset after" : "reset before");
    Generator gen(8);
    GRU gru(GRUOptions(3, 3).num_layers(2).bidirectional(true).reset_after(reset_after), gen);
    gru.to(f64);
    Tensor x = input({2, 4, 3}, 9), h0 = input({4, 2, 3}, 10);
    expect_gradcheck(gru, {x, h0}, {"x", "h0"}, [&] {
      GRU::Output out = gru(x, h0);
      return concat({flat(out.output), flat(out.h_n)});
    });
  }
}

TEST(BreadthGradcheck, LayerNormWithAndWithoutAffine) {
  for (bool affine : {true, false}) {
    LayerNorm norm(LayerNormOptions(Shape{2, 3}).elementwise_affine(affine));
    norm.to(f64);
    if (affine) {
      Generator g(11);
      norm.load_state_dict({{"weight", uniform({2, 3}, 0.5, 1.5, g, f64)},
                            {"bias", uniform({2, 3}, -1, 1, g, f64)}});
    }
    Tensor x = input({4, 2, 3}, 12, 2.0);
    expect_gradcheck(norm, {x}, {"x"}, [&] { return norm(x); });
  }
}

TEST(BreadthGradcheck, GeluAndErfIncludingLargeArguments) {
  Tensor x = input({40}, 13, 7.0);
  GELU act;
  expect_gradcheck(act, {x}, {"x"}, [&] { return concat({act(x), erf(x)}); });
}

TEST(BreadthGradcheck, SequentialWithDropoutInTraining) {
  Generator gen(14);
  auto drop = std::make_shared<Dropout>(0.3, gen);
  Sequential seq(std::make_shared<Linear>(4, 5, gen), std::make_shared<Tanh>(), drop,
                 std::make_shared<LayerNorm>(5), std::make_shared<Linear>(5, 2, gen));
  seq.to(f64);
  Tensor x = input({3, 4}, 15);
  expect_gradcheck(seq, {x}, {"x"}, [&] {
    drop->manual_seed(99);  // the same mask at every evaluation
    return seq(x);
  });
}

TEST(BreadthGradcheck, ScaledDotProductAttentionWithDifferentiableAdditiveMask) {
  Tensor q = input({2, 3, 4}, 16), k = input({2, 5, 4}, 17), v = input({2, 5, 3}, 18);
  Tensor bias = input({3, 5}, 19);  // an additive mask is differentiable like any addend
  GradcheckOptions opt;
  opt.names = {"q", "k", "v", "additive mask"};
  GradcheckResult r = gradcheck(
      [&](const std::vector<Tensor>&) {
        return scaled_dot_product_attention(q, k, v, AttentionMask::additive(bias)).output;
      },
      {q, k, v, bias}, opt);
  EXPECT_TRUE(r.passed) << r.report();
}

TEST(BreadthGradcheck, MultiheadAttentionMaskedSelfAndCross) {
  Generator gen(20);
  MultiheadAttention mha(MultiheadAttentionOptions(4, 2), gen);
  mha.to(f64);
  Tensor x = input({2, 3, 4}, 21), kv = input({2, 4, 4}, 22);
  Tensor causal = bool_mask({3, 3}, {1, 2, 5});
  Tensor pad = bool_mask({2, 4}, {7});
  expect_gradcheck(mha, {x}, {"x"}, [&] {
    auto out = mha(x, x, x, {}, true, AttentionMask::boolean(causal));
    return concat({flat(out.output), flat(out.weights)});
  });
  expect_gradcheck(mha, {x, kv}, {"query", "key/value"}, [&] {
    auto out = mha(x, kv, kv, AttentionMask::boolean(pad), true, {}, false);
    return concat({flat(out.output), flat(out.weights)});
  });
}

TEST(BreadthGradcheck, TransformerEncoderLayerPostAndPreNorm) {
  for (bool pre : {false, true}) {
    SCOPED_TRACE(pre ? "pre-norm gelu" : "post-norm relu");
    Generator gen(23);
    TransformerEncoderLayer enc(TransformerEncoderLayerOptions(4, 2)
                                    .dim_feedforward(6)
                                    .activation(pre ? "gelu" : "relu")
                                    .norm_first(pre),
                                gen);
    enc.to(f64);
    enc.eval();
    Tensor x = input({2, 3, 4}, 24);
    Tensor pad = bool_mask({2, 3}, {5});
    expect_gradcheck(enc, {x}, {"x"}, [&] { return enc(x, {}, AttentionMask::boolean(pad)); });
  }
}

// In training, with every dropout's generator re-seeded before each evaluation (fixed masks),
// through gradcheck_module (parameters by name).
TEST(BreadthGradcheck, TransformerEncoderLayerTrainingWithFixedDropoutMasks) {
  Generator gen(25);
  TransformerEncoderLayer enc(TransformerEncoderLayerOptions(4, 2).dim_feedforward(6).dropout(0.2), gen);
  enc.to(f64);
  Tensor x = input({2, 3, 4}, 26);
  Generator wg(27);
  Tensor w = uniform({2, 3, 4}, -1, 1, wg, f64);
  ModuleCheckResult r = gradcheck_module(enc, [&] {
    enc.self_attn->manual_seed(1), enc.dropout->manual_seed(2), enc.dropout1->manual_seed(3),
        enc.dropout2->manual_seed(4);
    return sum(enc(x) * w);
  });
  EXPECT_TRUE(r.passed) << r.report();
  EXPECT_LT(r.max_relative_error, 1e-7) << r.report();
}
