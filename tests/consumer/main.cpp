// A program built against an installed tapegrad, as a user's would be: with the consumer's default
// flags (no -march), through find_package(tapegrad) (tests/consumer/CMakeLists.txt) or through
// pkg-config (g++ main.cpp $(pkg-config --cflags --libs tapegrad)). It calls every public header's
// API and checks the values: tensors built from xarrays and their data<T>() (the xt::xarray type
// must be the same here as in the library: framework/xtensor_config.hpp), gather/scatter_add,
// every op family, the modules and the fused GRU, optimizers and clipping, custom ops, gradient
// checks, npz files and checkpoints, printing, the tape listing and DOT, random numbers, init.
// Exit 0 if every check passes; otherwise it names each failed check and exits 1.
// Built and run by tools/check_install.sh and tools/check_deb.sh.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "framework/custom_op.hpp"
#include "framework/gradcheck_module.hpp"
#include "framework/init.hpp"
#include "framework/npz.hpp"
#include "framework/tapegrad.hpp"
#include "layers/fast/gru_fused.hpp"
#include "layers/layers.hpp"

// xtensor headers after tapegrad's (framework/xtensor_config.hpp must come first).
#include <xtensor/xmath.hpp>

using namespace tapegrad;

namespace {

int g_checks = 0;
int g_failures = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::cout << "FAILED: " << what << "\n";
  }
}

bool near(double a, double b, double tol = 1e-5) { return std::abs(a - b) <= tol * (1 + std::abs(b)); }

// Elementwise comparison of a tensor (any dtype) with expected values in row-major order.
bool values(const Tensor& t, const std::vector<double>& expected, double tol = 1e-5) {
  if (!t.defined() || t.numel() != expected.size()) return false;
  xt::xarray<double> v = t.to_f64();
  for (std::size_t i = 0; i < expected.size(); ++i)
    if (!near(v.flat(i), expected[i], tol)) return false;
  return true;
}

std::vector<double> vec(const Tensor& t) {
  xt::xarray<double> v = t.to_f64();
  return std::vector<double>(v.begin(), v.end());
}

bool same_shape(const Tensor& t, const Shape& shape) { return t.defined() && t.shape() == shape; }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

template <class E>
bool throws(const std::function<void()>& f) {
  try {
    f();
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

// ---- tensors from xarrays, data<T>(), to_f64, factories (framework/tensor.hpp) ----
void test_tensors() {
  // The issue-11 case: xt::xarray<float> crosses the library boundary both ways.
  Tensor t(xt::xarray<float>{1, 2, 3});
  t.data<float>() *= 2;
  check(values(t, {2, 4, 6}), "data<float>() *= 2 writes through");
  const Tensor& ct = t;
  const xt::xarray<float>& cdata = ct.data<float>();
  check(cdata.size() == 3 && cdata(2) == 6.0f, "const data<float>()");
  check(t.dtype() == DType::Float32 && std::string(dtype_name(t.dtype())) == "float32", "float32 dtype");
  xt::xarray<double> f64 = t.to_f64();
  check(f64.size() == 3 && f64(1) == 4.0, "to_f64");

  Tensor d(xt::xarray<double>{{1.5, -2.0}, {3.0, 4.0}}, true);
  check(d.dtype() == DType::Float64 && d.requires_grad() && d.is_leaf(), "Tensor(xarray<double>, requires_grad)");
  check(same_shape(d, {2, 2}) && d.dim() == 2 && d.size(-1) == 2 && d.numel() == 4, "shape/dim/size/numel");
  d.data<double>()(0, 1) = 7.0;
  check(d.at(1) == 7.0 && shape_str(d.shape()) == "(2, 2)", "data<double>() element write, at(), shape_str");
  check(scalar(2.5).item() == 2.5, "scalar/item");

  check(values(zeros({2, 2}), {0, 0, 0, 0}) && values(ones({3}), {1, 1, 1}) &&
            values(full({2}, 1.25), {1.25, 1.25}),
        "zeros/ones/full");
  check(values(zeros_like(d), {0, 0, 0, 0}) && values(ones_like(t), {1, 1, 1}) &&
            zeros_like(d).dtype() == DType::Float64,
        "zeros_like/ones_like");
  check(values(arange(4), {0, 1, 2, 3}) && values(arange(1, 2, 0.5), {1, 1.5}), "arange");
  check(values(tensor({{1, 2}, {3, 4}}), {1, 2, 3, 4}), "tensor()");
  check(same_shape(from_vector({1, 2, 3, 4, 5, 6}, {3, 2}), {3, 2}), "from_vector");
  check(t.to(DType::Float64).dtype() == DType::Float64 && cast(t, DType::Float64).dtype() == DType::Float64,
        "to/cast");
  set_default_dtype(DType::Float64);
  check(zeros({1}).dtype() == DType::Float64, "set_default_dtype");
  set_default_dtype(DType::Float32);
  check(default_dtype() == DType::Float32, "default_dtype");
  check(t.set_name("t").name() == "t", "set_name/name");
  check(!Tensor().defined(), "default Tensor undefined");
  check(throws<ShapeError>([] { add(zeros({2}), zeros({3})); }), "ShapeError on mismatched add");
}

// ---- gather / scatter_add with xt::xarray<std::int64_t> indices ----
void test_gather_scatter() {
  Tensor t(xt::xarray<float>{10, 20, 30});
  xt::xarray<std::int64_t> idx{2, 0, 2};
  check(values(gather(t, 0, idx), {30, 10, 30}), "gather 1-D");
  Tensor m = tensor({{1, 2, 3}, {4, 5, 6}});
  xt::xarray<std::int64_t> idx2{{2, 0}, {1, 1}};
  check(values(gather(m, 1, idx2), {3, 1, 5, 5}), "gather along axis 1");
  check(values(scatter_add({3}, 0, idx, tensor({1, 2, 3})), {2, 0, 4}), "scatter_add");

  Tensor x = tensor({1, 2, 3}).requires_grad_();
  sum(gather(x, 0, idx)).backward();
  check(values(x.grad(), {1, 0, 2}), "gather backward = scatter_add");
  check(throws<IndexError>([&] { gather(t, 0, xt::xarray<std::int64_t>{5}); }), "gather out of range");
}

// ---- op families (framework/ops.hpp) ----
void test_ops() {
  Tensor a = tensor({1, 2, 4});
  Tensor b = tensor({2, 2, 2});
  // arithmetic
  check(values(a + b, {3, 4, 6}) && values(a - b, {-1, 0, 2}) && values(a * b, {2, 4, 8}) &&
            values(a / b, {0.5, 1, 2}),
        "tensor arithmetic");
  check(values(a + 1.0, {2, 3, 5}) && values(1.0 - a, {0, -1, -3}) && values(2.0 * a, {2, 4, 8}) &&
            values(a / 2.0, {0.5, 1, 2}) && values(4.0 / a, {4, 2, 1}) && values(-a, {-1, -2, -4}),
        "scalar arithmetic");
  check(values(pow(a, 2.0), {1, 4, 16}) && values(pow(a, b), {1, 4, 16}) && values(a.pow(0.5), {1, std::sqrt(2.0), 2}),
        "pow");
  // unary
  check(values(exp(tensor({0, 1})), {1, std::exp(1.0)}) && values(log(a), {0, std::log(2.0), std::log(4.0)}) &&
            values(sqrt(a), {1, std::sqrt(2.0), 2}) && values(abs(tensor({-1, 2})), {1, 2}),
        "exp/log/sqrt/abs");
  check(values(tanh(tensor({0.5})), {std::tanh(0.5)}) && values(sigmoid(tensor({0})), {0.5}) &&
            values(relu(tensor({-1, 3})), {0, 3}) && values(clamp(tensor({-5, 0.5, 5}), -1, 1), {-1, 0.5, 1}),
        "tanh/sigmoid/relu/clamp");
  check(values(gt(a, 1.5), {0, 1, 1}) && values(lt(a, 1.5), {1, 0, 0}) &&
            values(where(gt(a, 1.5), a, b), {2, 2, 4}),
        "gt/lt/where");
  // broadcasting
  Tensor m = tensor({{1, 2, 3}, {4, 5, 6}});
  check(values(m + tensor({10, 20, 30}), {11, 22, 33, 14, 25, 36}), "broadcast add");
  check(same_shape(broadcast_to(tensor({1, 2, 3}), {2, 3}), {2, 3}) &&
            values(sum_to(m, {3}), {5, 7, 9}) && broadcast_shapes({2, 1}, {1, 3}, "test") == Shape{2, 3},
        "broadcast_to/sum_to/broadcast_shapes");
  // reductions
  check(sum(m).item() == 21 && m.sum().item() == 21 && near(mean(m).item(), 3.5) && near(m.mean().item(), 3.5),
        "sum/mean");
  check(values(sum(m, {0}), {5, 7, 9}) && same_shape(sum(m, {1}, true), {2, 1}) && values(mean(m, {1}), {2, 5}),
        "sum/mean over axes");
  check(values(max(m, 1), {3, 6}) && same_shape(max(m, 0, true), {1, 3}), "max");
  Tensor sm = softmax(tensor({{0, 0}, {0, std::log(3.0)}}), -1);
  check(values(sm, {0.5, 0.5, 0.25, 0.75}), "softmax");
  check(values(log_softmax(tensor({0, 0})), {-std::log(2.0), -std::log(2.0)}), "log_softmax");
  Tensor logits = tensor({{0, 0}, {0, 0}});
  check(near(cross_entropy(logits, {0, 1}).item(), std::log(2.0)) &&
            near(cross_entropy(logits, {0, 1}, Reduction::Sum).item(), 2 * std::log(2.0)) &&
            same_shape(cross_entropy(logits, {0, 1}, Reduction::None), {2}),
        "cross_entropy");
  check(near(mse(a, b).item(), (1.0 + 0 + 4) / 3) && near(mse(a, b, Reduction::Sum).item(), 5.0), "mse");
  // linear algebra
  Tensor A = tensor({{1, 2}, {3, 4}});
  Tensor B = tensor({{5, 6}, {7, 8}});
  check(values(matmul(A, B), {19, 22, 43, 50}), "matmul");
  check(values(matmul(A, B, true, false), {26, 30, 38, 44}) && values(matmul(A, B, false, true), {17, 23, 39, 53}),
        "matmul with transposes");
  Tensor big = ones({128, 128});
  check(values(sum(matmul(big, big)), {128.0 * 128 * 128}), "128x128 matmul");
  // shapes
  check(same_shape(reshape(m, std::vector<std::ptrdiff_t>{3, -1}), {3, 2}) && same_shape(reshape(m, Shape{6}), {6}) &&
            same_shape(m.reshape({-1}), {6}),
        "reshape");
  check(values(transpose(m), {1, 4, 2, 5, 3, 6}) && values(m.t(), {1, 4, 2, 5, 3, 6}) &&
            same_shape(transpose(ones({2, 3, 4}), 0, 2), {4, 3, 2}) && same_shape(permute(ones({2, 3, 4}), {2, 0, 1}), {4, 2, 3}),
        "transpose/permute");
  check(same_shape(unsqueeze(a, 0), {1, 3}) && same_shape(squeeze(unsqueeze(a, 1), 1), {3}), "unsqueeze/squeeze");
  check(values(narrow(m, 1, 1, 2), {2, 3, 5, 6}) && values(select(m, 1, 2), {3, 6}) && values(slice_rows(m, 1, 2), {4, 5, 6}),
        "narrow/select/slice_rows");
  std::vector<Tensor> parts = split(m, {1, 2}, 1);
  std::vector<Tensor> chunks = chunk(tensor({1, 2, 3, 4}), 2);
  check(parts.size() == 2 && values(parts[1], {2, 3, 5, 6}) && chunks.size() == 2 && values(chunks[1], {3, 4}), "split/chunk");
  check(values(concat({a, b}), {1, 2, 4, 2, 2, 2}) && same_shape(stack({a, b}, 1), {3, 2}), "concat/stack");
  check(values(index_select(m, 0, {1, 1}), {4, 5, 6, 4, 5, 6}) &&
            values(index_add({3, 1}, 0, {2, 2}, reshape(tensor({1, 2}), Shape{2, 1})), {0, 0, 3}),
        "index_select/index_add");
  check(values(pad_narrow(tensor({7, 8}), 0, 1, 4), {0, 7, 8, 0}), "pad_narrow");
  check(values(one_hot({2, 0}, 3), {0, 0, 1, 1, 0, 0}), "one_hot");
  check(normalize_axis(-1, 3, "test") == 2, "normalize_axis");

  // autograd through several families
  Tensor x = tensor({{1, 2}, {3, 4}}).requires_grad_().set_name("x");
  Tensor w = tensor({{1, 0}, {0, 1}}).requires_grad_().set_name("w");
  Tensor loss = sum(pow(matmul(x, w), 2.0)) + mean(tanh(x));
  loss.backward();
  // d/dx sum((xw)^2) = 2 x w w^T = 2x for w = I; d/dx mean(tanh x) = (1 - tanh^2)/4
  xt::xarray<double> gx = x.grad().to_f64();
  bool ok = true;
  for (std::size_t i = 0; i < 4; ++i) {
    double xi = i + 1.0;
    ok = ok && near(gx.flat(i), 2 * xi + (1 - std::tanh(xi) * std::tanh(xi)) / 4, 1e-4);
  }
  check(ok, "backward through matmul/pow/sum/tanh/mean");
  std::vector<Tensor> g = grad(sum(x * x), {x});
  check(g.size() == 1 && values(g[0], {2, 4, 6, 8}), "grad()");
  Tensor leaf = tensor({3}).requires_grad_();
  Tensor y = leaf * leaf;
  Tensor dy = grad(y, {leaf}, Tensor(), false, true)[0];
  check(values(dy, {6}) && values(grad(dy, {leaf})[0], {2}), "double backward (create_graph)");
  Tensor h = tensor({1, 2}).requires_grad_();
  int hook_calls = 0;
  h.register_hook([&](const Tensor&) { ++hook_calls; });
  sum(h * 3.0).backward();
  check(hook_calls == 1 && values(h.grad(), {3, 3}), "register_hook");
  h.zero_grad();
  check(!h.grad().defined() || values(h.grad(), {0, 0}), "zero_grad");
  check(!sum(h).detach().requires_grad(), "detach");
  tape().clear();
}

// ---- modules (layers/layers.hpp) and the fused GRU (layers/fast/gru_fused.hpp) ----
void test_modules() {
  Generator gen(1);
  Linear lin(LinearOptions(3, 2), gen);
  Tensor x = uniform({4, 3}, -1, 1, gen);
  Tensor expect = matmul(x, lin.weight, false, true) + lin.bias;
  check(same_shape(lin(x), {4, 2}) && values(lin(x), vec(expect)),
        "Linear = x W^T + b");
  check(lin.named_parameters().size() == 2 && lin.parameters().size() == 2 && lin.state_dict().count("weight") == 1,
        "Linear parameters/state_dict");
  Linear nobias(LinearOptions(3, 2).bias(false), gen);
  check(!nobias.bias.defined() && nobias.parameters().size() == 1, "Linear without bias");

  Embedding emb(EmbeddingOptions(5, 3), gen);
  Tensor e = emb({4, 1}, {2});
  const std::vector<double> table = vec(emb.weight);
  check(same_shape(e, {2, 3}) && values(select(e, 0, 0), std::vector<double>(table.begin() + 12, table.begin() + 15)),
        "Embedding looks up rows");
  check(same_shape(emb.forward({0, 1, 2, 3}, {2, 2}), {2, 2, 3}), "Embedding with shape");

  GRUCell cell(GRUCellOptions(3, 4), gen);
  GRUCell::Step step = cell.forward_with_gates(x);
  check(same_shape(cell(x), {4, 4}) && same_shape(step.r, {4, 4}) && values(step.h_new, vec(cell(x))),
        "GRUCell and forward_with_gates agree");
  LSTMCell lstm(LSTMCellOptions(3, 5), gen);
  LSTMCell::State st = lstm(x);
  st = lstm(x, st.h, st.c);
  check(same_shape(st.h, {4, 5}) && same_shape(st.c, {4, 5}), "LSTMCell");
  LSTM lstm_layer(LSTMOptions(3, 5).num_layers(2).batch_first(true), gen);
  Tensor lstm_in = uniform({2, 4, 3}, -1, 1, gen);
  LSTM::Output lstm_fast = lstm_layer(lstm_in);  // the fused kernel by default (LSTM::Path::Auto)
  lstm_layer.set_path(LSTM::Path::Composed);
  LSTM::Output lstm_slow = lstm_layer(lstm_in);
  check(lstm_fast.fused && !lstm_slow.fused && same_shape(lstm_fast.output, {2, 4, 5}) &&
            same_shape(lstm_fast.c_n, {2, 2, 5}) && values(lstm_fast.output, vec(lstm_slow.output), 1e-4) &&
            values(lstm_fast.c_n, vec(lstm_slow.c_n), 1e-4),
        "LSTM: fused by default, equal to LSTM::Path::Composed");
  RNNCell rnn(RNNCellOptions(3, 2), gen);
  check(same_shape(rnn(x, rnn(x)), {4, 2}), "RNNCell");

  GRU gru(GRUOptions(3, 4).num_layers(2), gen);
  Tensor seq = uniform({2, 5, 3}, -1, 1, gen);
  check(gru(seq).fused && gru.uses_fused(), "GRU: the fused kernel by default (Path::Auto)");
  gru.set_path(GRU::Path::Composed);
  GRU::Output out = gru(seq);
  check(out.steps.size() == 2 && out.steps[1].size() == 5, "GRU::Path::Composed keeps every h_t");
  GRU::Output fused = gru_forward_fused(gru, seq);
  check(same_shape(out.output, {2, 5, 4}) && same_shape(out.h_n, {2, 2, 4}), "GRU output shapes");
  check(values(fused.output, vec(out.output), 1e-4),
        "fused GRU = composed GRU (forward)");
  // gradients of the fused layer = those of the composed one
  auto grads_of = [&](bool use_fused) {
    gru.zero_grad();
    GRU::Output o = use_fused ? gru_forward_fused(gru, seq) : gru(seq);
    sum(o.output * o.output).backward();
    std::vector<double> gs;
    for (const Tensor& p : gru.parameters())
      for (double v : p.grad().to_f64()) gs.push_back(v);
    return gs;
  };
  std::vector<double> g_composed = grads_of(false), g_fused = grads_of(true);
  bool same = g_composed.size() == g_fused.size();
  for (std::size_t i = 0; same && i < g_fused.size(); ++i) same = near(g_fused[i], g_composed[i], 1e-3);
  check(same, "fused GRU = composed GRU (gradients)");
  std::vector<std::int64_t> ids{0, 1, 2, 3, 4, 5, 0, 1, 2, 3};
  GRU gru_ids(GRUOptions(6, 4), gen);
  GRU::Output by_ids = gru_forward_ids_fused(gru_ids, ids, 2, 5, 6);
  gru_ids.set_path(GRU::Path::Composed);
  GRU::Output by_ids_composed = gru_ids.forward_ids(ids, 2, 5, 6);
  check(values(by_ids.output, vec(by_ids_composed.output), 1e-4),
        "gru_forward_ids_fused = forward_ids");
  Tensor layer = gru_layer_fused(seq, gru.weight_ih[0], gru.weight_hh[0], gru.bias_ih[0], gru.bias_hh[0]);
  check(same_shape(layer, {2, 5, 4}), "gru_layer_fused");

  CrossEntropyLoss ce;
  MSELoss mse_loss;
  check(near(ce(zeros({2, 3}), {0, 2}).item(), std::log(3.0)) && mse_loss(ones({2}), zeros({2})).item() == 1.0,
        "CrossEntropyLoss/MSELoss");
  lin.eval();
  check(!lin.is_training(), "eval()");
  lin.train();
  lin.to(DType::Float64);
  check(lin.weight.dtype() == DType::Float64, "Module::to(Float64)");
  tape().clear();
}

// ---- optimizers and clipping (framework/optim.hpp) ----
void test_optim() {
  Tensor p = tensor({1, -2}).requires_grad_();
  SGD sgd({p}, SGDOptions(0.5));
  sum(p * p).backward();  // grad 2p
  sgd.step();
  check(values(p, {0, 0}), "SGD step p -= lr * g");
  sgd.zero_grad();

  Tensor q = tensor({1, -2}).requires_grad_();
  Adam adam({q}, AdamOptions().lr(0.1));
  sum(q * q).backward();
  adam.step();  // the first Adam step moves each parameter by lr * sign(g)
  check(values(q, {0.9, -1.9}, 1e-4), "Adam first step");
  check(adam.state().size() > 0 && adam.param_state(0).step == 1, "Adam state");

  // Every optimizer decreases a quadratic.
  auto decreases = [](auto make) {
    Tensor w = tensor({3, -4}).requires_grad_();
    auto opt = make(std::vector<Tensor>{w});
    double first = 0, last = 0;
    for (int i = 0; i < 20; ++i) {
      opt->zero_grad();
      Tensor loss = sum(w * w);
      if (i == 0) first = loss.item();
      last = loss.item();
      loss.backward();
      opt->step();
    }
    return last < first;
  };
  check(decreases([](std::vector<Tensor> ps) { return std::make_unique<SGD>(ps, SGDOptions(0.1).momentum(0.9).nesterov(true)); }), "SGD momentum");
  check(decreases([](std::vector<Tensor> ps) { return std::make_unique<AdamW>(ps, AdamWOptions().lr(0.1)); }), "AdamW");
  check(decreases([](std::vector<Tensor> ps) { return std::make_unique<RMSprop>(ps, RMSpropOptions().lr(0.1)); }), "RMSprop");
  check(decreases([](std::vector<Tensor> ps) { return std::make_unique<Adagrad>(ps, AdagradOptions().lr(0.5)); }), "Adagrad");
  check(throws<ValueError>([] { Tensor w = zeros({1}).requires_grad_(); SGD bad({w}, SGDOptions(-1)); }), "SGD rejects lr < 0");

  Tensor c = tensor({3, 4}).requires_grad_();
  c.set_grad(tensor({3, 4}));
  double norm = clip_grad_norm({c}, 1.0);
  check(near(norm, 5.0) && values(c.grad(), {0.6, 0.8}, 1e-4), "clip_grad_norm");
  c.set_grad(tensor({3, -4}));
  clip_grad_value({c}, 1.0);
  check(values(c.grad(), {1, -1}), "clip_grad_value");
  sgd.set_lr(0.01);
  check(sgd.lr() == 0.01 && sgd.name() == "SGD" && sgd.params().size() == 1, "Optimizer lr/name/params");
  tape().clear();
}

// ---- custom ops (framework/custom_op.hpp) ----
struct Cube : CustomFunction<Cube> {
  static constexpr const char* name = "cube";
  static Tensor forward(CustomContext& ctx, const std::vector<Tensor>& in) {
    ctx.save_for_backward({in[0]});
    Tensor out(xt::xarray<double>(xt::pow(in[0].to_f64(), 3)));
    return out;
  }
  static std::vector<Tensor> backward(CustomContext& ctx, const Tensor& g) {
    const Tensor& x = ctx.saved_tensors()[0];
    return {g * 3.0 * x * x};
  }
};

void test_custom_op() {
  tape().clear();
  Tensor x = tensor({1, 2}, DType::Float64).requires_grad_();
  Tensor y = Cube::apply({x});
  check(values(y, {1, 8}), "custom op forward");
  check(contains(tape().listing(), "cube"), "custom op on the tape listing");
  sum(y).backward();
  check(values(x.grad(), {3, 12}), "custom op backward");
  Tensor x2 = tensor({0.5, -1.5}, DType::Float64).requires_grad_();
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return Cube::apply(in); }, {x2});
  check(r.passed, "gradcheck of the custom op:\n" + r.report());
  Tensor z = apply_custom(
      "twice", {x2}, [](CustomContext&, const std::vector<Tensor>& in) { return in[0].detach() * 2.0; },
      [](CustomContext&, const Tensor& g) { return std::vector<Tensor>{g * 2.0}; });
  check(values(z, {1, -3}), "apply_custom");
  tape().clear();
}

// ---- gradcheck, gradgradcheck, jacobian_check, gradcheck_module ----
void test_gradcheck() {
  Generator gen(0);
  GRUCell cell(GRUCellOptions(3, 4), gen);
  cell.to(DType::Float64);
  Tensor x = uniform({2, 3}, -1, 1, gen, DType::Float64).requires_grad_().set_name("x");
  Tensor h = uniform({2, 4}, -1, 1, gen, DType::Float64).requires_grad_().set_name("h");
  GradcheckResult r = gradcheck([&](const std::vector<Tensor>& in) { return cell(in[0], in[1]); }, {x, h});
  check(r.passed && r.inputs.size() == 2 && r.max_relative_error < 1e-6, "gradcheck GRUCell:\n" + r.report());
  GradcheckOptions fast;
  fast.fast = true;
  check(gradcheck([&](const std::vector<Tensor>& in) { return cell(in[0], in[1]); }, {x, h}, fast).passed,
        "gradcheck fast mode");
  check(gradgradcheck([](const std::vector<Tensor>& in) { return sum(tanh(in[0]) * in[0]); }, {x}).passed,
        "gradgradcheck");
  JacobianCheck j = jacobian_check([](const std::vector<Tensor>& in) { return in[0] * 3.0; }, {x});
  check(j.passed && j.analytic.shape(0) == 6 && j.analytic.shape(1) == 6 && near(j.analytic(0, 0), 3.0), "jacobian_check");
  // A wrong gradient must be caught.
  GradcheckResult bad = gradcheck(
      [](const std::vector<Tensor>& in) {
        return apply_custom(
            "wrong", in, [](CustomContext&, const std::vector<Tensor>& v) { return v[0].detach() * 2.0; },
            [](CustomContext&, const Tensor& g) { return std::vector<Tensor>{g * 3.0}; });
      },
      {x});
  check(!bad.passed, "gradcheck catches a wrong gradient");
  ModuleCheckResult m = gradcheck_module(cell, [&] { return sum(cell(x, h)); });
  check(m.passed && m.parameters.size() == 4 && m["weight_ih"].passed, "gradcheck_module:\n" + m.report());
  tape().clear();
}

// ---- npz files (framework/npz.hpp) and checkpoints (Module::save/load) ----
void test_npz(const std::string& dir) {
  const std::string path = dir + "/consumer_arrays.npz";
  std::vector<float> f{1.5f, -2.5f, 3.5f, 4.5f};
  std::vector<std::int64_t> i{7, 8, 9};
  npz::Archive ar{{"f", npz::Array::from_f32({2, 2}, f.data())}, {"i", npz::Array::from_i64({3}, i.data())}};
  npz::save_npz(path, ar);
  npz::Archive back = npz::load_npz(path);
  const npz::Array& fb = npz::find(back, "f", path);
  check(back.size() == 2 && fb.dtype == npz::DType::Float32 && fb.shape == std::vector<std::size_t>{2, 2} &&
            fb.to_vector<float>() == f && npz::find(back, "i", path).to_vector<std::int64_t>() == i,
        "save_npz/load_npz round trip");
  npz::save_npz(path, ar, true);
  check(npz::load_npz(path).size() == 2, "compressed npz");
  std::remove(path.c_str());
  const std::string npy = dir + "/consumer_array.npy";
  npz::save_npy(npy, ar[1].second);
  check(npz::load_npy(npy).to_vector<std::int64_t>() == i && npz::dtype_name(npz::DType::Int64) == "int64",
        "save_npy/load_npy");
  std::remove(npy.c_str());
  check(throws<FileError>([&] { npz::load_npz(dir + "/does_not_exist.npz"); }), "load_npz of a missing file");

  Tensor t = tensor({{1, 2}, {3, 4}});
  Tensor t2 = from_npz_array(to_npz_array(t), "t");
  check(values(t2, {1, 2, 3, 4}) && same_shape(t2, {2, 2}), "to_npz_array/from_npz_array");

  Generator gen(3);
  GRUCell cell(GRUCellOptions(3, 4), gen);
  Tensor x = uniform({2, 3}, -1, 1, gen);
  const std::string ckpt = dir + "/consumer_checkpoint.npz";
  cell.save(ckpt);
  GRUCell copy(GRUCellOptions(3, 4), gen);
  check(sum(abs(copy(x) - cell(x))).item() > 0, "two differently initialized cells differ");
  copy.load(ckpt);
  check(sum(abs(copy(x) - cell(x))).item() == 0.0, "Module::save/load round trip");
  std::vector<double> step_no{42};
  save_state(ckpt, cell, {{"train.step", npz::Array::from_f64({1}, step_no.data())}});
  GRUCell third(GRUCellOptions(3, 4), gen);
  npz::Archive extra = load_state(ckpt, third);
  check(sum(abs(third(x) - cell(x))).item() == 0.0 && extra.size() == 1 &&
            npz::find(extra, "train.step", ckpt).to_vector<double>()[0] == 42,
        "save_state/load_state with extras");
  GRUCell wrong_size(GRUCellOptions(3, 5), gen);
  check(throws<Error>([&] { wrong_size.load(ckpt); }), "load of a checkpoint of another shape fails");
  std::remove(ckpt.c_str());
  tape().clear();
}

// ---- printing, the tape listing and DOT ----
void test_print_and_tape() {
  Tensor w = tensor({{1, -2}, {3, 4}}).set_name("w");
  std::string s = fmt::format("{}", w);
  check(contains(s, "tensor([[ 1.0000, -2.0000],") && contains(s, "shape=(2, 2)") && contains(s, "name='w'"),
        "fmt::format of a tensor: " + s);
  std::ostringstream os;
  os << tanh(tensor({{1, -2}, {3, 4}}).requires_grad_());
  check(contains(os.str(), "op=tanh"), "operator<<: " + os.str());
  PrintOptions po;
  po.precision = 1;
  check(contains(to_string(w, po), "[[ 1.0, -2.0],"), "to_string with PrintOptions: " + to_string(w, po));
  check(contains(to_string(zeros({2000})), "..."), "long tensors are abbreviated");

  tape().clear();
  Tensor x = tensor({{1, 2}}).requires_grad_().set_name("x");
  Tensor W = ones({2, 2}).requires_grad_().set_name("W");
  Tensor hh = tanh(matmul(x, W)).set_name("h");
  std::string listing = tape().listing();
  check(tape().size() == 2 && contains(listing, "matmul") && contains(listing, "tanh") && contains(listing, "(1, 2)"),
        "tape listing:\n" + listing);
  std::string dot = tape().to_dot();
  check(dot.rfind("digraph", 0) == 0 && contains(dot, "->"), "tape DOT");
  check(std::string(hh.op()) == "tanh" && tape().node(0).op == std::string("matmul"), "op names");
  {
    NoGradGuard no_grad;
    Tensor y = matmul(x, W);
    check(!grad_enabled() && tape().size() == 2 && !y.requires_grad(), "NoGradGuard records nothing");
  }
  check(grad_enabled(), "grad mode restored");
  {
    GradModeGuard off(false);
    check(!grad_enabled(), "GradModeGuard");
  }
  {
    AnomalyGuard anomaly;
    check(anomaly_enabled() && throws<AnomalyError>([&] { log(tensor({-1}).requires_grad_()); }),
          "AnomalyGuard catches a NaN");
  }
  tape().clear();
  check(tape().size() == 0, "tape clear");
}

// ---- random numbers and init (framework/random.hpp, framework/init.hpp) ----
void test_random_init() {
  Generator g1(123), g2(123);
  check(g1.uniform() == g2.uniform() && g1.normal() == g2.normal(), "Generator is deterministic");
  std::uint64_t k = g1.integer(10);
  double u = g1.uniform(2, 3);
  check(k < 10 && u >= 2 && u < 3, "Generator integer/uniform range");
  Tensor r = uniform({1000}, -2, 3, g1);
  xt::xarray<double> rv = r.to_f64();
  check(xt::amin(rv)() >= -2 && xt::amax(rv)() < 3 && std::abs(xt::mean(rv)() - 0.5) < 0.2, "uniform()");
  Tensor n = randn({4000}, g1, DType::Float64);
  xt::xarray<double> nv = n.to_f64();
  check(std::abs(xt::mean(nv)()) < 0.1 && std::abs(xt::stddev(nv)() - 1) < 0.1, "randn()");
  manual_seed(7);
  Tensor a = randn({3});
  manual_seed(7);
  Tensor b = randn({3});
  check(sum(abs(a - b)).item() == 0 && values(uniform({2}, 1, 1), {1, 1}), "manual_seed/default generator");
  default_generator().manual_seed(1);

  Tensor w = zeros({8, 50});
  check(init::fan_in(w) == 50, "init::fan_in");
  init::kaiming_uniform_(w, std::sqrt(5.0), g1);
  double bound = std::sqrt(6.0 / ((1 + 5.0) * 50));
  xt::xarray<double> wv = w.to_f64();
  check(xt::amax(xt::abs(wv))() <= bound + 1e-6 && xt::amax(xt::abs(wv))() > 0, "init::kaiming_uniform_");
  init::uniform_(w, 0.5, 0.75, g1);
  wv = w.to_f64();
  check(xt::amin(wv)() >= 0.5 && xt::amax(wv)() <= 0.75, "init::uniform_");
  init::normal_(w, 10.0, 0.01, g1);
  check(std::abs(xt::mean(w.to_f64())() - 10.0) < 0.01, "init::normal_");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";  // where the npz tests write (and remove) files
  const std::vector<std::pair<const char*, std::function<void()>>> sections{
      {"tensors", test_tensors},
      {"gather/scatter_add", test_gather_scatter},
      {"ops", test_ops},
      {"modules", test_modules},
      {"optimizers", test_optim},
      {"custom ops", test_custom_op},
      {"gradcheck", test_gradcheck},
      {"npz and checkpoints", [&] { test_npz(dir); }},
      {"printing and the tape", test_print_and_tape},
      {"random and init", test_random_init},
  };
  for (const auto& [name, run] : sections) {
    const int before = g_failures;
    try {
      run();
    } catch (const std::exception& e) {
      ++g_failures;
      std::cout << "FAILED: " << name << " threw: " << e.what() << "\n";
    }
    std::cout << (g_failures == before ? "ok      " : "FAILED  ") << name << "\n";
  }
  std::cout << g_checks << " checks, " << g_failures << " failed\n";
  return g_failures == 0 ? 0 : 1;
}
