// Tests for framework/module: parameter names and order, state dicts, .npz checkpoints and
// their error messages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include <xtensor/xmath.hpp>

#include "framework/module.hpp"
#include "framework/ops.hpp"
#include "layers/layers.hpp"

#ifndef TAPEGRAD_FIXTURE_DIR
#define TAPEGRAD_FIXTURE_DIR "tests/fixtures"
#endif

namespace fs = std::filesystem;
using namespace tapegrad;

namespace {

/// The char model of the demo: gru (2 layers) and head, as submodules.
class CharModel : public Module {
 public:
  explicit CharModel(std::size_t V = 27, std::size_t H = 16, std::uint64_t seed = 0) {
    Generator gen(seed);
    gru = register_module("gru", std::make_shared<GRU>(GRUOptions(V, H).num_layers(2), gen));
    head = register_module("head", std::make_shared<Linear>(H, V, gen));
  }
  std::shared_ptr<GRU> gru;
  std::shared_ptr<Linear> head;
};

/// A fresh directory under /tmp, removed at the end of the test.
class TempDir {
 public:
  TempDir()
      : path_(fs::temp_directory_path() / ("tapegrad_module_" + std::to_string(::getpid()) + "_" +
                                           std::to_string(counter_++))) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

/// Expects f to throw E with a message containing every one of `parts`.
template <class E>
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "nothing thrown; expected a message with '" << parts.front() << "'";
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos) << "message: " << msg << "\nmissing: " << part;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

std::vector<std::string> names_of(const NamedTensors& params) {
  std::vector<std::string> out;
  for (const auto& np : params) out.push_back(np.first);
  return out;
}

bool same_values(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.to_f64() == b.to_f64();
}

}  // namespace

// ---- names, order, registry ---------------------------------------------------------------------

TEST(Module, NamedParametersAreDottedInRegistrationOrder) {
  CharModel m;
  const std::vector<std::string> expected = {
      "gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0",
      "gru.weight_ih_l1", "gru.weight_hh_l1", "gru.bias_ih_l1", "gru.bias_hh_l1",
      "head.weight",      "head.bias"};
  auto params = m.named_parameters();
  EXPECT_EQ(names_of(params), expected);
  // Handles are shared with the layers' members, and named after their full path.
  EXPECT_TRUE(params[0].second.is_same(m.gru->weight_ih[0]));
  EXPECT_TRUE(params[8].second.is_same(m.head->weight));
  EXPECT_EQ(m.head->weight.name(), "head.weight");
  EXPECT_EQ(m.parameters().size(), 10u);
  for (const auto& p : m.parameters()) EXPECT_TRUE(p.requires_grad() && p.is_leaf());
  // PyTorch shapes.
  EXPECT_EQ(params[0].second.shape(), (Shape{48, 27}));
  EXPECT_EQ(params[4].second.shape(), (Shape{48, 16}));
  EXPECT_EQ(params[9].second.shape(), (Shape{27}));
}

TEST(Module, LayerParameterNamesFollowTorch) {
  EXPECT_EQ(names_of(Linear(3, 2).named_parameters()),
            (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(names_of(Linear(LinearOptions(3, 2).bias(false)).named_parameters()),
            std::vector<std::string>{"weight"});
  EXPECT_EQ(names_of(Embedding(5, 2).named_parameters()), std::vector<std::string>{"weight"});
  const std::vector<std::string> cell = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
  EXPECT_EQ(names_of(GRUCell(GRUCellOptions(3, 2)).named_parameters()), cell);
  EXPECT_EQ(names_of(RNNCell(RNNCellOptions(3, 2)).named_parameters()), cell);
  EXPECT_EQ(names_of(LSTMCell(LSTMCellOptions(3, 2)).named_parameters()), cell);
}

TEST(Module, RegistrationErrors) {
  Module m;
  m.register_parameter("w", zeros({2}));
  expect_error<ValueError>([&] { m.register_parameter("w", zeros({2})); }, {"'w'", "already"});
  expect_error<ValueError>([&] { m.register_parameter("a.b", zeros({2})); }, {"'a.b'"});
  expect_error<ValueError>([&] { m.register_module("sub", std::shared_ptr<Module>()); }, {"'sub'"});
  Tensor leaf = zeros({2}).requires_grad_();
  expect_error<ValueError>([&] { m.register_parameter("v", leaf * 2.0); }, {"'v'", "leaf"});
}

TEST(Module, ZeroGradTrainEvalAndTo) {
  CharModel m;
  for (auto& p : m.parameters()) p.set_grad(ones_like(p));
  m.zero_grad();
  for (auto& p : m.parameters()) EXPECT_FALSE(p.grad().defined());

  EXPECT_TRUE(m.is_training());
  m.eval();
  EXPECT_FALSE(m.is_training());
  EXPECT_FALSE(m.head->is_training());
  m.train();
  EXPECT_TRUE(m.gru->is_training());

  xt::xarray<double> before = m.head->weight.to_f64();
  m.to(DType::Float64);
  for (auto& p : m.parameters()) EXPECT_EQ(p.dtype(), DType::Float64);
  EXPECT_EQ(m.head->weight.dtype(), DType::Float64);  // the layer's own handle sees it
  EXPECT_EQ(m.head->weight.to_f64(), before);         // float32 → float64 is exact
  EXPECT_TRUE(m.head->weight.requires_grad());
}

TEST(Module, InitIsSeededAndBoundedLikeTorch) {
  Generator g1(7), g2(7), g3(8);
  Linear a(20, 5, g1), b(20, 5, g2), c(20, 5, g3);
  EXPECT_TRUE(same_values(a.weight, b.weight));
  EXPECT_FALSE(same_values(a.weight, c.weight));
  const double bound = 1.0 / std::sqrt(20.0);
  EXPECT_LE(xt::amax(xt::abs(a.weight.to_f64()))(), bound);
  EXPECT_GT(xt::amax(xt::abs(a.weight.to_f64()))(), 0.5 * bound);
  EXPECT_LE(xt::amax(xt::abs(a.bias.to_f64()))(), bound);
  GRU gru(GRUOptions(3, 16).num_layers(2), g1);
  for (auto& p : gru.parameters()) EXPECT_LE(xt::amax(xt::abs(p.to_f64()))(), 0.25);
}

// ---- state dicts in memory ----------------------------------------------------------------------

TEST(Module, StateDictRoundTripCopiesValues) {
  CharModel a(27, 16, 1), b(27, 16, 2);
  b.load_state_dict(a.state_dict());
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(same_values(pa[i].second, pb[i].second)) << pa[i].first;
    EXPECT_FALSE(pa[i].second.is_same(pb[i].second));
  }
  // A copy, not a shared buffer.
  a.head->bias.data<float>()(0) += 1.0f;
  EXPECT_NE(a.head->bias.at(0), b.head->bias.at(0));
}

TEST(Module, LoadStateDictErrorsNameTheKey) {
  CharModel m;
  {
    StateDict sd = m.state_dict();
    sd.erase("head.bias");
    expect_error<ValueError>([&] { m.load_state_dict(sd); },
                             {"missing key 'head.bias'", "float32 (27,)"});
    EXPECT_NO_THROW(m.load_state_dict(sd, /*strict=*/false));
  }
  {
    StateDict sd = m.state_dict();
    sd["head.extra"] = zeros({2, 2});
    expect_error<ValueError>([&] { m.load_state_dict(sd); },
                             {"unexpected key 'head.extra'", "(2, 2)"});
    EXPECT_NO_THROW(m.load_state_dict(sd, /*strict=*/false));
  }
  {
    StateDict sd = m.state_dict();
    sd["gru.weight_hh_l1"] = zeros({16, 48});
    expect_error<ValueError>([&] { m.load_state_dict(sd, false); },
                             {"'gru.weight_hh_l1'", "(16, 48)", "(48, 16)"});
  }
  {
    StateDict sd = m.state_dict();
    sd["head.weight"] = zeros({27, 16}, DType::Float64);
    expect_error<ValueError>([&] { m.load_state_dict(sd); },
                             {"'head.weight'", "float64", "float32", "to(float64)"});
  }
  {  // Every problem at once, and nothing is changed.
    StateDict sd = m.state_dict();
    Tensor old_bias = m.head->bias.detach();
    sd["head.bias"] = ones({27});
    sd.erase("head.weight");
    sd["gru.bias_ih_l0"] = zeros({3});
    expect_error<ValueError>([&] { m.load_state_dict(sd); },
                             {"missing key 'head.weight'", "'gru.bias_ih_l0' has shape (3,)"});
    EXPECT_TRUE(same_values(m.head->bias, old_bias));
  }
}

// ---- checkpoints --------------------------------------------------------------------------------

TEST(Module, NpzRoundTripFloat32AndFloat64) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    SCOPED_TRACE(dtype_name(dtype));
    TempDir dir;
    CharModel a(27, 16, 3), b(27, 16, 4);
    a.to(dtype);
    b.to(dtype);
    const std::string path = dir.file("ckpt.npz");
    a.save(path);

    // numpy-readable: one array per parameter, state-dict names, the module's dtype.
    npz::Archive archive = npz::load_npz(path);
    ASSERT_EQ(archive.size(), 10u);
    EXPECT_EQ(archive[0].first, "gru.weight_ih_l0");
    EXPECT_EQ(archive[0].second.shape, (std::vector<std::size_t>{48, 27}));
    EXPECT_EQ(archive[0].second.dtype,
              dtype == DType::Float32 ? npz::DType::Float32 : npz::DType::Float64);

    b.load(path);
    auto pa = a.named_parameters(), pb = b.named_parameters();
    for (std::size_t i = 0; i < pa.size(); ++i)
      EXPECT_TRUE(same_values(pa[i].second, pb[i].second)) << pa[i].first;
  }
}

TEST(Module, ExtraEntriesArePreserved) {
  TempDir dir;
  const std::string path = dir.file("with_vocab.npz");
  CharModel a(27, 16, 5), b(27, 16, 6);
  std::vector<std::int32_t> vocab = {10, 97, 98};
  std::int64_t step = 1234;
  save_state(path, a,
             {{"vocab", npz::Array::from_i32({3}, vocab.data())},
              {"step", npz::Array::from_i64({}, &step)}});
  npz::Archive extra = load_state(path, b);
  ASSERT_EQ(extra.size(), 2u);
  EXPECT_EQ(extra[0].first, "vocab");
  EXPECT_EQ(extra[0].second.to_vector<std::int32_t>(), vocab);
  EXPECT_EQ(npz::find(extra, "step", path).to_vector<std::int64_t>(),
            std::vector<std::int64_t>{1234});
  EXPECT_TRUE(same_values(a.head->weight, b.head->weight));
  // Module::load (strict) refuses what it does not know; non-strict ignores it.
  expect_error<FileError>([&] { b.load(path); }, {path, "unexpected entry 'vocab'", "int32 (3,)"});
  EXPECT_NO_THROW(b.load(path, /*strict=*/false));
  // An extra must not shadow a parameter.
  expect_error<ValueError>(
      [&] {
        save_state(path, a, {{"head.bias", npz::Array::from_i32({3}, vocab.data())}});
      },
      {path, "'head.bias'"});
}

TEST(Module, LoadsTorchCheckpoint) {
  // Written by tools/make_fixtures.py from a torch state_dict (plus the vocabulary).
  const std::string path = std::string(TAPEGRAD_FIXTURE_DIR) + "/char_gru_torch.npz";
  CharModel m;
  npz::Archive extra = load_state(path, m);
  ASSERT_EQ(extra.size(), 1u);
  EXPECT_EQ(extra[0].first, "vocab");
  npz::Archive archive = npz::load_npz(path);
  Tensor w = from_npz_array(npz::find(archive, "gru.weight_hh_l1", path), "w");
  EXPECT_TRUE(same_values(m.gru->weight_hh[1], w));
}

TEST(Module, LoadFileErrorsNameTheFileAndEntry) {
  TempDir dir;
  CharModel m(27, 16, 1);
  const Tensor before = m.head->weight.detach();
  auto write = [&](const std::string& name, npz::Archive archive) {
    for (const auto& [n, p] : m.named_parameters()) {
      bool replaced = false;
      for (auto& entry : archive) replaced = replaced || entry.first == n;
      if (!replaced) archive.emplace_back(n, to_npz_array(p));
    }
    const std::string path = dir.file(name);
    npz::save_npz(path, archive);
    return path;
  };
  std::vector<float> f(16 * 48, 0.5f);
  std::vector<double> d(27 * 16, 0.5);
  std::vector<std::int32_t> i(27, 1);

  {  // missing entry (a wrong name shows up as missing + unexpected)
    CharModel other(27, 16, 2);
    const std::string path = dir.file("missing.npz");
    npz::Archive archive;
    for (const auto& [n, p] : other.named_parameters())
      archive.emplace_back(n == "head.bias" ? "head.bias_typo" : n, to_npz_array(p));
    npz::save_npz(path, archive);
    expect_error<FileError>([&] { m.load(path); }, {path, "missing entry 'head.bias'",
                                                    "unexpected entry 'head.bias_typo'"});
    expect_error<FileError>([&] { load_state(path, m); }, {path, "missing entry 'head.bias'"});
    // non-strict: loads what is there, returns the rest
    npz::Archive extra = load_state(path, m, /*strict=*/false);
    ASSERT_EQ(extra.size(), 1u);
    EXPECT_EQ(extra[0].first, "head.bias_typo");
    EXPECT_TRUE(same_values(m.head->weight, other.head->weight));
    m.head->weight.data<float>() = before.data<float>();
  }
  {  // wrong shape
    std::string path =
        write("shape.npz", {{"gru.weight_hh_l0", npz::Array::from_f32({16, 48}, f.data())}});
    expect_error<FileError>([&] { m.load(path); },
                            {path, "entry 'gru.weight_hh_l0' has shape (16, 48)", "(48, 16)"});
  }
  {  // wrong float dtype: no silent conversion
    std::string path =
        write("dtype.npz", {{"head.weight", npz::Array::from_f64({27, 16}, d.data())}});
    expect_error<FileError>([&] { m.load(path); },
                            {path, "entry 'head.weight' is float64, parameter is float32"});
    // ...unless the module is converted first.
    m.to(DType::Float64);
    EXPECT_THROW(m.load(path), FileError);  // now every other entry is float32
    m.to(DType::Float32);
  }
  {  // integer array under a parameter name
    std::string path = write("int.npz", {{"head.bias", npz::Array::from_i32({27}, i.data())}});
    expect_error<FileError>([&] { m.load(path); }, {path, "entry 'head.bias' is int32"});
  }
  {  // no such file, and not an npz
    expect_error<FileError>([&] { m.load(dir.file("nope.npz")); }, {dir.file("nope.npz")});
    const std::string junk = dir.file("junk.npz");
    std::ofstream(junk) << "not a zip file";
    expect_error<FileError>([&] { m.load(junk); }, {junk});
  }
  // Failed loads changed nothing.
  EXPECT_TRUE(same_values(m.head->weight, before));
}
