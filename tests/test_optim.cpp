// Tests for framework/optim: every optimizer's trajectory against PyTorch's (fixtures from
// tools/make_fixtures.py, see tests/fixtures/README.md), state export/import, gradient clipping,
// skipped parameters and option checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>
#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include <xtensor/xmath.hpp>

#include "framework/dispatch.hpp"
#include "framework/npz.hpp"
#include "framework/ops.hpp"
#include "framework/optim.hpp"
#include "framework/tape.hpp"

#ifndef TAPEGRAD_FIXTURE_DIR
#define TAPEGRAD_FIXTURE_DIR "tests/fixtures"
#endif

using namespace tapegrad;

namespace {

// ---- helpers ------------------------------------------------------------------------------------

std::string fixture_path(const std::string& file) {
  return std::string(TAPEGRAD_FIXTURE_DIR) + "/" + file;
}

const char* suffix(DType dtype) { return dtype == DType::Float32 ? "f32" : "f64"; }

/// Agreement with torch asked of every step: 1e-10 in float64, 1e-5 in float32.
double tolerance(DType dtype) { return dtype == DType::Float32 ? 1e-5 : 1e-10; }

/// max |a − b| (shapes must match).
double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(shape_str(a.shape()), shape_str(b.shape()));
  xt::xarray<double> d = xt::abs(a.to_f64() - b.to_f64());
  return d.size() == 0 ? 0.0 : *std::max_element(d.begin(), d.end());
}

/// An npz array as a tensor of `dtype` (float32 → double → float32 is exact).
Tensor to_tensor(const npz::Array& a, DType dtype) {
  return from_vector(a.to_vector<double>(), Shape(a.shape.begin(), a.shape.end()), dtype);
}

/// Element k of the leading axis: a (K, ...) array's k-th (...) sub-array.
Tensor row(const npz::Array& a, std::size_t k, DType dtype) {
  std::vector<double> all = a.to_vector<double>();
  const std::size_t n = all.size() / a.shape.at(0);
  return from_vector(std::vector<double>(all.begin() + k * n, all.begin() + (k + 1) * n),
                     Shape(a.shape.begin() + 1, a.shape.end()), dtype);
}

/// A fresh parameter (leaf requiring grad) holding a copy of t's values.
Tensor param_like(const Tensor& t) {
  Tensor p = t.detach();
  p.requires_grad_();
  return p;
}

/// Expects f to throw ValueError whose message contains every one of `parts`.
void expect_value_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no ValueError thrown; expected a message with '" << parts.front() << "'";
  } catch (const ValueError& e) {
    for (const auto& part : parts)
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message: " << e.what() << "\nmissing: " << part;
  }
}

// ---- the optimizer fixtures ---------------------------------------------------------------------

/// One opt_<config>_<dtype>.npz: param0 (3,4), grads (5,3,4), params (5,3,4), hyper-parameters.
struct OptFixture {
  std::string path;
  npz::Archive z;
  DType dtype;
  Tensor param0;
  std::vector<Tensor> grads, params;

  OptFixture(const std::string& config, DType dt)
      : path(fixture_path("opt_" + config + "_" + suffix(dt) + ".npz")),
        z(npz::load_npz(path)),
        dtype(dt) {
    param0 = to_tensor(npz::find(z, "param0", path), dtype);
    for (std::size_t k = 0; k < 5; ++k) {
      grads.push_back(row(npz::find(z, "grads", path), k, dtype));
      params.push_back(row(npz::find(z, "params", path), k, dtype));
    }
  }
  double hyper(const std::string& name) const {
    return npz::find(z, name, path).to_vector<double>().at(0);
  }
  bool flag(const std::string& name) const {
    return npz::find(z, name, path).to_vector<std::int64_t>().at(0) != 0;
  }
};

/// Adam's or AdamW's options (the same names; AdamW only decouples the weight decay) from the
/// fixture.
template <bool Decoupled>
AdamOptionsT<Decoupled> adam_options(const OptFixture& f) {
  AdamOptionsT<Decoupled> o;
  o.lr(f.hyper("lr"))
      .betas(f.hyper("beta1"), f.hyper("beta2"))
      .eps(f.hyper("eps"))
      .weight_decay(f.hyper("weight_decay"))
      .amsgrad(f.flag("amsgrad"));
  return o;
}

/// The optimizer of `config` with the hyper-parameters saved in its fixture (so the options'
/// names are checked against torch's too).
std::unique_ptr<Optimizer> make_optimizer(const std::string& config, const OptFixture& f,
                                          std::vector<Tensor> params) {
  if (config.rfind("sgd", 0) == 0)
    return std::make_unique<SGD>(std::move(params), SGDOptions(f.hyper("lr"))
                                                        .momentum(f.hyper("momentum"))
                                                        .dampening(f.hyper("dampening"))
                                                        .weight_decay(f.hyper("weight_decay"))
                                                        .nesterov(f.flag("nesterov")));
  if (config == "adamw") return std::make_unique<AdamW>(std::move(params), adam_options<true>(f));
  if (config.rfind("adam", 0) == 0)
    return std::make_unique<Adam>(std::move(params), adam_options<false>(f));
  if (config.rfind("rmsprop", 0) == 0)
    return std::make_unique<RMSprop>(std::move(params), RMSpropOptions()
                                                            .lr(f.hyper("lr"))
                                                            .alpha(f.hyper("alpha"))
                                                            .eps(f.hyper("eps"))
                                                            .weight_decay(f.hyper("weight_decay"))
                                                            .momentum(f.hyper("momentum"))
                                                            .centered(f.flag("centered")));
  if (config == "adagrad")
    return std::make_unique<Adagrad>(
        std::move(params), AdagradOptions()
                               .lr(f.hyper("lr"))
                               .lr_decay(f.hyper("lr_decay"))
                               .weight_decay(f.hyper("weight_decay"))
                               .initial_accumulator_value(f.hyper("initial_accumulator_value"))
                               .eps(f.hyper("eps")));
  throw std::logic_error("unknown config " + config);
}

/// The buffers torch keeps for each config (plus our "step").
std::vector<std::string> expected_state_names(const std::string& config) {
  if (config == "sgd") return {"step"};
  if (config == "sgd_momentum" || config == "sgd_nesterov") return {"step", "momentum_buffer"};
  if (config == "adam" || config == "adam_wd" || config == "adamw")
    return {"step", "exp_avg", "exp_avg_sq"};
  if (config == "rmsprop") return {"step", "square_avg"};
  if (config == "rmsprop_momentum") return {"step", "square_avg", "momentum_buffer", "grad_avg"};
  return {"step", "sum"};  // adagrad
}

const std::vector<std::string> kConfigs = {"sgd",     "sgd_momentum",     "sgd_nesterov",
                                           "adam",    "adam_wd",          "adamw",
                                           "rmsprop", "rmsprop_momentum", "adagrad"};

class OptimizerVsTorch : public ::testing::TestWithParam<std::tuple<std::string, DType>> {};

// Five steps with torch's gradients: every step's parameter equals torch's.
TEST_P(OptimizerVsTorch, EveryStepMatchesTorch) {
  const auto& [config, dtype] = GetParam();
  OptFixture f(config, dtype);
  Tensor p = param_like(f.param0);
  auto opt = make_optimizer(config, f, {p});
  for (std::size_t k = 0; k < 5; ++k) {
    p.set_grad(f.grads[k]);
    opt->step();
    EXPECT_EQ(p.dtype(), dtype);
    EXPECT_LE(max_abs_diff(p, f.params[k]), tolerance(dtype)) << config << " step " << k + 1;
  }
  EXPECT_EQ(opt->param_state(0).step, 5);
}

// Export after 2 steps, import into a fresh optimizer over a copy of the parameter: both go on
// identically (bit for bit) and still match torch.
TEST_P(OptimizerVsTorch, StateRoundTripContinuesIdentically) {
  const auto& [config, dtype] = GetParam();
  OptFixture f(config, dtype);
  Tensor p = param_like(f.param0);
  auto opt = make_optimizer(config, f, {p});
  for (std::size_t k = 0; k < 2; ++k) {
    p.set_grad(f.grads[k]);
    opt->step();
  }

  NamedTensors state = opt->state();
  const std::vector<std::string> names = expected_state_names(config);
  ASSERT_EQ(state.size(), names.size());
  for (std::size_t j = 0; j < names.size(); ++j) {
    EXPECT_EQ(state[j].first, "optim.state.0." + names[j]);
    if (names[j] == "step") {
      EXPECT_EQ(state[j].second.dtype(), DType::Float64);
      EXPECT_EQ(state[j].second.dim(), 0u);
      EXPECT_EQ(state[j].second.item(), 2.0);
    } else {
      EXPECT_EQ(state[j].second.dtype(), dtype);
      EXPECT_EQ(shape_str(state[j].second.shape()), "(3, 4)");
    }
  }

  Tensor q = param_like(p);
  auto resumed = make_optimizer(config, f, {q});
  resumed->load_state(state);
  // The export is a copy: scribbling over it changes neither optimizer.
  for (auto& [name, t] : state)
    detail::dispatch(t.dtype(), [&](auto tag) { t.data<decltype(tag)>().fill(1234); });

  for (std::size_t k = 2; k < 5; ++k) {
    p.set_grad(f.grads[k]);
    q.set_grad(f.grads[k]);
    opt->step();
    resumed->step();
    EXPECT_EQ(max_abs_diff(p, q), 0.0) << config << " step " << k + 1;
    EXPECT_LE(max_abs_diff(q, f.params[k]), tolerance(dtype)) << config << " step " << k + 1;
  }
}

INSTANTIATE_TEST_SUITE_P(AllConfigs, OptimizerVsTorch,
                         ::testing::Combine(::testing::ValuesIn(kConfigs),
                                            ::testing::Values(DType::Float64, DType::Float32)),
                         [](const ::testing::TestParamInfo<OptimizerVsTorch::ParamType>& info) {
                           return std::get<0>(info.param) + "_" + suffix(std::get<1>(info.param));
                         });

// ---- options the fixtures do not cover, against torch 1.13 trajectories -------------------------
// Reference values printed by this script (float64, foreach=False):
//   p0 = [[0.5, -1.2, 0.3], [2.0, -0.7, 0.1]]; grads = kGrads below; for g in grads:
//   p.grad = torch.tensor(g); opt.step(); print(p.flatten())
// with opt = one of the torch calls named in each case.

const std::vector<std::vector<double>> kGrads = {{0.3, -0.1, 0.8, -1.5, 0.4, 0.0},
                                                 {-0.2, 0.6, 0.5, 0.9, -0.3, 1.1},
                                                 {0.7, 0.2, -0.4, 0.1, -2.0, 0.25}};

struct TorchCase {
  std::string name;  // the torch call
  std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)> make;
  std::vector<std::vector<double>> expected;  // p after each step
};

std::vector<TorchCase> torch_cases() {
  return {
      {"SGD(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1)",
       [](std::vector<Tensor> p) {
         return std::make_unique<SGD>(
             std::move(p), SGDOptions(0.05).momentum(0.8).dampening(0.3).weight_decay(0.1));
       },
       {{0.4825, -1.189, 0.2585, 2.065, -0.7164999999999999, 0.0995},
        {0.47381124999999996, -1.1970385000000001, 0.20689525, 2.0782724999999997,
         -0.7166922499999999, 0.06025175000000001},
        {0.44070191062499997, -1.20627966525, 0.178887316625, 2.0781165462499995,
         -0.6443376271249999, 0.019892268875000008}}},
      {"Adam(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05, amsgrad=True)",
       [](std::vector<Tensor> p) {
         return std::make_unique<Adam>(
             std::move(p),
             AdamOptions().lr(0.02).betas(0.8, 0.95).eps(1e-6).weight_decay(0.05).amsgrad(true));
       },
       {{0.4800000615382722, -1.1800001249992187, 0.2800000245398472, 2.019999985714296,
         -0.7199999452056295, 0.08000399920015998},
        {0.4764035007683721, -1.1913814664482405, 0.26087903763534936, 2.0210910110085454,
         -0.7186048304065137, 0.06443213160549956},
        {0.4628069753535441, -1.2028881696323206, 0.25332323229387316, 2.0202250955156225,
         -0.7048930070523757, 0.05016048694234134}}},
      {"AdamW(lr=0.02, amsgrad=True) (default weight_decay 1e-2)",
       [](std::vector<Tensor> p) {
         return std::make_unique<AdamW>(std::move(p), AdamWOptions().lr(0.02).amsgrad(true));
       },
       {{0.47990000066666666, -1.1797600019999996, 0.27994000025, 2.0195999998666667,
         -0.7198599994999999, 0.09998000000000001},
        {0.47691361018558603, -1.1920024230388837, 0.26063077246822947, 2.0230260405402722,
         -0.7215025275976727, 0.08507726771995225},
        {0.4644356838374453, -1.2049192684313859, 0.2518693828773448, 2.0248473604425206,
         -0.7092975009249395, 0.0710093726855988}}},
      {"RMSprop(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.5)",
       [](std::vector<Tensor> p) {
         return std::make_unique<RMSprop>(
             std::move(p),
             RMSpropOptions().lr(0.01).alpha(0.9).eps(1e-6).weight_decay(0.1).momentum(0.5));
       },
       {{0.46837750911002046, -1.1683776779372372, 0.26837734387978485, 2.031622699678794,
         -0.7316224735742846, 0.06838722023703823},
        {0.4658117584936721, -1.1815964465552726, 0.2349810412805224, 2.0263514351177436,
         -0.7232076631135219, 0.0209593055962053},
        {0.4358508203007592, -1.193320791013253, 0.2305009832788354, 2.0177295010381755,
         -0.6881355554318587, -0.010136668767221723}}},
      {"RMSprop(lr=0.01, centered=True)",
       [](std::vector<Tensor> p) {
         return std::make_unique<RMSprop>(std::move(p), RMSpropOptions().lr(0.01).centered(true));
       },
       {{0.3994962521441012, -1.0994963194840783, 0.19949623110033987, 2.100503774791915,
         -0.8005037562734022, 0.1},
        {0.45517956575779417, -1.1984854521720565, 0.1457950778228978, 2.0488348847960456,
         -0.7402996724801539, -0.0005037723431855351},
        {0.36566173114791906, -1.2300547205698185, 0.18526507326288447, 2.0430755991110985,
         -0.6428213263203713, -0.022932099167828797}}},
      {"Adagrad(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2, "
       "eps=1e-8)",
       [](std::vector<Tensor> p) {
         return std::make_unique<Adagrad>(std::move(p), AdagradOptions()
                                                            .lr(0.1)
                                                            .lr_decay(0.05)
                                                            .weight_decay(0.1)
                                                            .initial_accumulator_value(0.2)
                                                            .eps(1e-8));
       },
       {{0.4383684376424776, -1.155858521420886, 0.211965756888319, 2.094561085081099,
         -0.7593751852887638, 0.09776449087992553},
        {0.4636204098283082, -1.2222371527680211, 0.16588908576629852, 2.034750039500228,
         -0.7060159467114884, 0.009432174811757316},
        {0.39225524449951166, -1.2323471936233465, 0.19637104243255252, 2.0193587305582654,
         -0.619534340699152, -0.009227720556855109}}},
  };
}

TEST(OptimizerOptions, MoreOptionsMatchTorch) {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    for (const TorchCase& c : torch_cases()) {
      Tensor p = param_like(from_vector({0.5, -1.2, 0.3, 2.0, -0.7, 0.1}, {2, 3}, dtype));
      auto opt = c.make({p});
      for (std::size_t k = 0; k < kGrads.size(); ++k) {
        p.set_grad(from_vector(kGrads[k], {2, 3}, dtype));
        opt->step();
        EXPECT_LE(max_abs_diff(p, from_vector(c.expected[k], {2, 3}, dtype)), tolerance(dtype))
            << c.name << " " << suffix(dtype) << " step " << k + 1;
      }
    }
  }
}

TEST(OptimizerOptions, DefaultsAreTorchs) {
  EXPECT_EQ(AdamOptions().lr(), 1e-3);
  EXPECT_EQ(AdamOptions().beta1(), 0.9);
  EXPECT_EQ(AdamOptions().beta2(), 0.999);
  EXPECT_EQ(AdamOptions().eps(), 1e-8);
  EXPECT_EQ(AdamOptions().weight_decay(), 0.0);
  EXPECT_FALSE(AdamOptions().amsgrad());
  EXPECT_EQ(AdamWOptions().weight_decay(), 1e-2);
  EXPECT_EQ(AdamWOptions().lr(), 1e-3);
  EXPECT_EQ(SGDOptions(0.1).momentum(), 0.0);
  EXPECT_EQ(SGDOptions(0.1).dampening(), 0.0);
  EXPECT_FALSE(SGDOptions(0.1).nesterov());
  EXPECT_EQ(RMSpropOptions().lr(), 1e-2);
  EXPECT_EQ(RMSpropOptions().alpha(), 0.99);
  EXPECT_EQ(RMSpropOptions().eps(), 1e-8);
  EXPECT_EQ(AdagradOptions().lr(), 1e-2);
  EXPECT_EQ(AdagradOptions().eps(), 1e-10);
  EXPECT_EQ(AdagradOptions().initial_accumulator_value(), 0.0);
  // The builder chains and keeps what it was given.
  AdamOptions o = AdamOptions().lr(2e-3).betas(0.8, 0.99);
  EXPECT_EQ(o.lr(), 2e-3);
  EXPECT_EQ(o.beta1(), 0.8);
  EXPECT_EQ(o.beta2(), 0.99);
}

TEST(OptimizerOptions, BadOptionsThrowValueError) {
  auto p = [] { return std::vector<Tensor>{param_like(zeros({2}, DType::Float64))}; };
  expect_value_error([&] { SGD(p(), SGDOptions(-0.1)); }, {"SGD", "learning rate", "-0.1"});
  expect_value_error([&] { Adam(p(), AdamOptions().lr(-1e-3)); }, {"Adam", "learning rate"});
  expect_value_error([&] { AdamW(p(), AdamWOptions().lr(-1)); }, {"AdamW", "learning rate"});
  expect_value_error([&] { RMSprop(p(), RMSpropOptions().lr(-1)); }, {"RMSprop", "learning rate"});
  expect_value_error([&] { Adagrad(p(), AdagradOptions().lr(-1)); }, {"Adagrad", "learning rate"});
  expect_value_error([&] { Adam(p(), AdamOptions().lr(NAN)); }, {"learning rate", "nan"});
  expect_value_error([&] { SGD(p(), SGDOptions(0.1).momentum(-0.5)); }, {"momentum", "-0.5"});
  expect_value_error([&] { SGD(p(), SGDOptions(0.1).weight_decay(-1)); }, {"weight_decay"});
  expect_value_error([&] { SGD(p(), SGDOptions(0.1).nesterov(true)); }, {"nesterov"});
  expect_value_error([&] { SGD(p(), SGDOptions(0.1).momentum(0.9).dampening(0.1).nesterov(true)); },
                     {"nesterov", "dampening"});
  expect_value_error([&] { Adam(p(), AdamOptions().betas(1.0, 0.999)); }, {"beta1", "[0, 1)"});
  expect_value_error([&] { Adam(p(), AdamOptions().betas(0.9, -0.1)); }, {"beta2"});
  expect_value_error([&] { AdamW(p(), AdamWOptions().eps(-1e-8)); }, {"AdamW", "eps"});
  expect_value_error([&] { AdamW(p(), AdamWOptions().weight_decay(-0.1)); }, {"weight_decay"});
  expect_value_error([&] { RMSprop(p(), RMSpropOptions().alpha(-0.9)); }, {"alpha"});
  expect_value_error([&] { RMSprop(p(), RMSpropOptions().momentum(-0.9)); }, {"momentum"});
  expect_value_error([&] { Adagrad(p(), AdagradOptions().lr_decay(-1)); }, {"lr_decay"});
  expect_value_error([&] { Adagrad(p(), AdagradOptions().initial_accumulator_value(-1)); },
                     {"initial_accumulator_value"});

  SGD sgd(p(), SGDOptions(0.1));
  expect_value_error([&] { sgd.set_lr(-0.01); }, {"SGD", "learning rate", "-0.01"});
  EXPECT_EQ(sgd.lr(), 0.1);
}

TEST(OptimizerOptions, BadParameterListsThrowValueError) {
  expect_value_error([] { Adam({}); }, {"Adam", "empty parameter list"});
  Tensor frozen = zeros({2}, DType::Float64).set_name("frozen");
  expect_value_error([&] { Adam({frozen}); }, {"parameter 0 'frozen'", "does not require grad"});
  Tensor w = param_like(zeros({2}, DType::Float64));
  Tensor w2 = mul(w, 2.0);
  expect_value_error([&] { Adam({w2}); }, {"not a leaf"});
  expect_value_error([&] { Adam({w, w}); }, {"parameter 1", "listed twice"});
  expect_value_error([&] { Adam({w, Tensor()}); }, {"parameter 1", "undefined"});
}

// ---- shared optimizer behaviour -----------------------------------------------------------------

// A parameter without a gradient is skipped: unchanged and without state. When it gets a
// gradient later, its own step count starts at 1 (Adam's bias correction is per parameter).
TEST(Optimizer, SkipsParametersWithoutGrad) {
  OptFixture f("adam", DType::Float64);
  Tensor p = param_like(f.param0);
  Tensor q = param_like(f.param0);
  Adam opt({p, q}, AdamOptions().lr(f.hyper("lr")));
  for (std::size_t k = 0; k < 2; ++k) {
    p.set_grad(f.grads[k]);
    opt.step();
    EXPECT_LE(max_abs_diff(p, f.params[k]), 1e-10);
    EXPECT_EQ(max_abs_diff(q, f.param0), 0.0);
  }
  EXPECT_EQ(opt.param_state(0).step, 2);
  EXPECT_EQ(opt.param_state(1).step, 0);
  for (const auto& [key, t] : opt.state()) EXPECT_EQ(key.rfind("optim.state.0.", 0), 0u) << key;

  opt.zero_grad();
  EXPECT_FALSE(p.grad().defined());
  Tensor p_before = p.detach();
  q.set_grad(f.grads[0]);
  opt.step();
  EXPECT_LE(max_abs_diff(q, f.params[0]), 1e-10);  // q's first step, as torch's first step
  EXPECT_EQ(max_abs_diff(p, p_before), 0.0);
  EXPECT_EQ(opt.param_state(0).step, 2);
  EXPECT_EQ(opt.param_state(1).step, 1);
}

// A parameter of kParallelElements or more is updated as two ranges on two cores (optim.cpp,
// adam_update): the same bits as the same values updated as pieces too small to be split, for
// Adam with an L2 penalty, AdamW, and AMSGrad, over three steps, in both dtypes.
TEST(Optimizer, AdamOnTwoCoresHasTheBitsOfOnePass) {
  const std::size_t n = 70001;  // two ranges, the second with a tail of one element
  const std::size_t pieces[] = {20000, 20001, 30000};  // each below kParallelElements
  for (DType dtype : {DType::Float32, DType::Float64})
    for (int config = 0; config < 3; ++config) {
      Generator gen(11);
      Tensor start = randn({n}, gen, dtype);
      std::vector<Tensor> grads;
      for (int k = 0; k < 3; ++k) grads.push_back(randn({n}, gen, dtype));
      auto make = [&](std::vector<Tensor> params) -> std::unique_ptr<Optimizer> {
        if (config == 0) return std::make_unique<Adam>(std::move(params), AdamOptions().lr(0.01).weight_decay(0.1));
        if (config == 1) return std::make_unique<AdamW>(std::move(params), AdamWOptions().lr(0.01));
        return std::make_unique<Adam>(std::move(params), AdamOptions().lr(0.01).amsgrad(true));
      };
      Tensor whole = param_like(start);
      std::vector<Tensor> parts;
      for (std::size_t i = 0, at = 0; i < 3; at += pieces[i++])
        parts.push_back(param_like(narrow(start, 0, at, pieces[i])));
      auto opt_whole = make({whole});
      auto opt_parts = make(parts);
      for (int k = 0; k < 3; ++k) {
        whole.set_grad(grads[k]);
        for (std::size_t i = 0, at = 0; i < 3; at += pieces[i++])
          parts[i].set_grad(narrow(grads[k], 0, at, pieces[i]));
        opt_whole->step();
        opt_parts->step();
      }
      EXPECT_EQ(max_abs_diff(whole, concat(parts, 0)), 0.0) << dtype_name(dtype) << " config " << config;
      EXPECT_GT(max_abs_diff(whole, start), 0.0);
    }
}

// step() works on the raw data: nothing is recorded, the parameter stays a leaf.
TEST(Optimizer, StepAfterBackwardRecordsNothing) {
  Tensor w = param_like(tensor({1.0, -2.0, 3.0}, DType::Float64));
  SGD opt({w}, SGDOptions(0.1));
  Tensor loss = sum(w * w);  // dL/dw = 2w
  loss.backward();
  opt.step();
  EXPECT_EQ(tape().size(), 0u);
  EXPECT_TRUE(w.is_leaf());
  EXPECT_TRUE(w.requires_grad());
  EXPECT_LE(max_abs_diff(w, tensor({0.8, -1.6, 2.4}, DType::Float64)), 1e-15);

  opt.zero_grad();
  opt.step();  // no gradient: no change
  EXPECT_LE(max_abs_diff(w, tensor({0.8, -1.6, 2.4}, DType::Float64)), 1e-15);
}

TEST(Optimizer, SetLrChangesTheNextSteps) {
  Tensor w = param_like(tensor({1.0, 2.0}, DType::Float32));
  SGD opt({w}, SGDOptions(0.1));
  opt.set_lr(0.5);
  EXPECT_EQ(opt.lr(), 0.5);
  w.set_grad(tensor({1.0, -1.0}, DType::Float32));
  opt.step();
  EXPECT_LE(max_abs_diff(w, tensor({0.5, 2.5}, DType::Float32)), 1e-7);
  opt.set_lr(0.0);
  opt.step();
  EXPECT_LE(max_abs_diff(w, tensor({0.5, 2.5}, DType::Float32)), 1e-7);
}

// ---- load_state validation ----------------------------------------------------------------------

class LoadState : public ::testing::Test {
 protected:
  void SetUp() override {
    p = param_like(f.param0);
    opt = std::make_unique<Adam>(std::vector<Tensor>{p});
    p.set_grad(f.grads[0]);
    opt->step();
    good = opt->state();  // step, exp_avg, exp_avg_sq of parameter 0
  }
  /// `good` with entry j replaced.
  NamedTensors with(std::size_t j, std::string key, Tensor t) {
    NamedTensors s = good;
    s[j] = {std::move(key), std::move(t)};
    return s;
  }
  void expect_unchanged() {
    NamedTensors now = opt->state();
    ASSERT_EQ(now.size(), good.size());
    for (std::size_t j = 0; j < now.size(); ++j) {
      EXPECT_EQ(now[j].first, good[j].first);
      EXPECT_EQ(max_abs_diff(now[j].second, good[j].second), 0.0) << now[j].first;
    }
  }

  OptFixture f{"adam", DType::Float64};
  Tensor p;
  std::unique_ptr<Adam> opt;
  NamedTensors good;
};

TEST_F(LoadState, RejectsBadEntriesNamingTheKeyAndChangesNothing) {
  ASSERT_EQ(good.size(), 3u);
  const Tensor buf = good[1].second;
  expect_value_error([&] { opt->load_state(with(1, "optim.state.0.exp_avgX", buf)); },
                     {"'optim.state.0.exp_avgX'", "no state 'exp_avgX'", "exp_avg_sq"});
  expect_value_error([&] { opt->load_state(with(1, "optim.state.1.exp_avg", buf)); },
                     {"'optim.state.1.exp_avg'", "out of range"});
  expect_value_error([&] { opt->load_state(with(1, "optim.stat.0.exp_avg", buf)); },
                     {"'optim.stat.0.exp_avg'", "optim.state.<parameter index>.<name>"});
  expect_value_error([&] { opt->load_state(with(1, "optim.state.00.exp_avg", buf)); },
                     {"'optim.state.00.exp_avg'"});
  expect_value_error([&] { opt->load_state(with(1, "optim.state.0.", buf)); },
                     {"'optim.state.0.'"});
  expect_value_error(
      [&] {
        opt->load_state(with(1, "optim.state.0.exp_avg", zeros({2, 2}, DType::Float64)));
      },
      {"'optim.state.0.exp_avg'", "(2, 2)", "(3, 4)"});
  expect_value_error(
      [&] {
        opt->load_state(with(1, "optim.state.0.exp_avg", zeros({3, 4}, DType::Float32)));
      },
      {"'optim.state.0.exp_avg'", "float32", "float64"});
  expect_value_error([&] { opt->load_state(with(1, "optim.state.0.exp_avg", Tensor())); },
                     {"'optim.state.0.exp_avg'", "undefined"});
  expect_value_error([&] { opt->load_state(with(2, "optim.state.0.exp_avg", buf)); },
                     {"'optim.state.0.exp_avg'", "twice"});
  for (double bad : {0.0, -1.0, 1.5, double(NAN)})
    expect_value_error(
        [&] { opt->load_state(with(0, "optim.state.0.step", scalar(bad, DType::Float64))); },
        {"'optim.state.0.step'", "positive integer"});
  expect_value_error(
      [&] { opt->load_state(with(0, "optim.state.0.step", tensor({1.0}, DType::Float64))); },
      {"'optim.state.0.step'", "0-d"});

  NamedTensors missing(good.begin(), good.begin() + 2);
  expect_value_error([&] { opt->load_state(missing); }, {"missing key 'optim.state.0.exp_avg_sq'"});
  NamedTensors no_step(good.begin() + 1, good.end());
  expect_value_error([&] { opt->load_state(no_step); }, {"missing key 'optim.state.0.step'"});

  // State of another configuration: an amsgrad Adam has one more buffer.
  Tensor q = param_like(f.param0);
  Adam ams({q}, AdamOptions().amsgrad(true));
  q.set_grad(f.grads[0]);
  ams.step();
  expect_value_error([&] { opt->load_state(ams.state()); }, {"'optim.state.0.max_exp_avg_sq'"});

  expect_unchanged();
}

TEST_F(LoadState, EmptyStateResetsAndAStepCountIsRestored) {
  opt->load_state({});
  EXPECT_EQ(opt->param_state(0).step, 0);
  EXPECT_TRUE(opt->state().empty());
  // A float32 step holding an integer is accepted too.
  opt->load_state(with(0, "optim.state.0.step", scalar(7, DType::Float32)));
  EXPECT_EQ(opt->param_state(0).step, 7);
}

// ---- gradient clipping --------------------------------------------------------------------------

/// Parameters (zeros) whose grads are the clip fixture's g0, g1, g2.
std::vector<Tensor> clip_params(const npz::Archive& z, const std::string& path, DType dtype) {
  std::vector<Tensor> params;
  for (const char* name : {"g0", "g1", "g2"}) {
    Tensor g = to_tensor(npz::find(z, name, path), dtype);
    Tensor p = param_like(zeros(g.shape(), dtype));
    p.set_grad(g);
    params.push_back(p);
  }
  return params;
}

class ClipVsTorch : public ::testing::TestWithParam<DType> {};

TEST_P(ClipVsTorch, ClipGradNorm) {
  const DType dtype = GetParam();
  const std::string path = fixture_path(std::string("clip_") + suffix(dtype) + ".npz");
  const npz::Archive z = npz::load_npz(path);
  auto scalar_of = [&](const char* name) {
    return npz::find(z, name, path).to_vector<double>()[0];
  };
  std::vector<Tensor> params = clip_params(z, path, dtype);

  const double total = clip_grad_norm(params, scalar_of("max_norm"), scalar_of("norm_type"));
  EXPECT_NEAR(total, scalar_of("total_norm"), tolerance(dtype) * scalar_of("total_norm"));
  for (std::size_t i = 0; i < 3; ++i) {
    Tensor expected = to_tensor(npz::find(z, "norm_clipped_g" + std::to_string(i), path), dtype);
    EXPECT_EQ(params[i].grad().dtype(), dtype);
    EXPECT_LE(max_abs_diff(params[i].grad(), expected), tolerance(dtype)) << "g" << i;
  }
}

TEST_P(ClipVsTorch, ClipGradValue) {
  const DType dtype = GetParam();
  const std::string path = fixture_path(std::string("clip_") + suffix(dtype) + ".npz");
  const npz::Archive z = npz::load_npz(path);
  std::vector<Tensor> params = clip_params(z, path, dtype);
  clip_grad_value(params, npz::find(z, "clip_value", path).to_vector<double>()[0]);
  for (std::size_t i = 0; i < 3; ++i) {
    Tensor expected = to_tensor(npz::find(z, "value_clipped_g" + std::to_string(i), path), dtype);
    EXPECT_EQ(max_abs_diff(params[i].grad(), expected), 0.0) << "g" << i;
  }
}

INSTANTIATE_TEST_SUITE_P(BothDtypes, ClipVsTorch, ::testing::Values(DType::Float64, DType::Float32),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(suffix(info.param));
                         });

// Other norms, against torch.nn.utils.clip_grad_norm_(params, max_norm=2.0, norm_type=p) on the
// gradients [[0.3, -2.5], [1.0, 0.2]] and [-0.6, 4.0, 0.1].
TEST(Clip, OtherNormTypesMatchTorch) {
  struct Case {
    double norm_type, total;
    std::vector<double> clipped;
  };
  const std::vector<Case> cases = {
      {INFINITY,
       4.0,
       {0.14999996250000935, -1.249999687500078, 0.49999987500003124, 0.09999997500000625,
        -0.2999999250000187, 1.999999500000125, 0.049999987500003125}},
      {1.0,
       8.7,
       {0.06896550931430928, -0.574712577619244, 0.2298850310476976, 0.045977006209539525,
        -0.13793101862861856, 0.9195401241907905, 0.022988503104769763}},
      {3.0,
       4.324557518744865,
       {0.1387424860593956, -1.1561873838282968, 0.4624749535313187, 0.09249499070626374,
        -0.2774849721187912, 1.8498998141252747, 0.04624749535313187}}};
  for (const Case& c : cases) {
    Tensor a = param_like(zeros({2, 2}, DType::Float64));
    Tensor b = param_like(zeros({3}, DType::Float64));
    a.set_grad(tensor({{0.3, -2.5}, {1.0, 0.2}}, DType::Float64));
    b.set_grad(tensor({-0.6, 4.0, 0.1}, DType::Float64));
    EXPECT_NEAR(clip_grad_norm({a, b}, 2.0, c.norm_type), c.total, 1e-12) << c.norm_type;
    const std::vector<double> ea(c.clipped.begin(), c.clipped.begin() + 4);
    const std::vector<double> eb(c.clipped.begin() + 4, c.clipped.end());
    EXPECT_LE(max_abs_diff(a.grad(), from_vector(ea, {2, 2}, DType::Float64)), 1e-12);
    EXPECT_LE(max_abs_diff(b.grad(), from_vector(eb, {3}, DType::Float64)), 1e-12);
  }
}

TEST(Clip, NormBelowMaxLeavesGradsAndSkipsParamsWithoutGrad) {
  Tensor a = param_like(zeros({2}, DType::Float32));
  Tensor b = param_like(zeros({2}, DType::Float32));  // no grad: skipped
  a.set_grad(tensor({3.0, 4.0}, DType::Float32));
  EXPECT_NEAR(clip_grad_norm({a, b}, 10.0), 5.0, 1e-6);
  EXPECT_EQ(max_abs_diff(a.grad(), tensor({3.0, 4.0}, DType::Float32)), 0.0);
  EXPECT_FALSE(b.grad().defined());
  EXPECT_EQ(clip_grad_norm({b}, 1.0), 0.0);  // nothing to clip
  clip_grad_value({b}, 1.0);
  EXPECT_FALSE(b.grad().defined());
}

// The 2-norm's partial sums (optim.cpp, sum_of_squares): every length around a multiple of 8,
// against a float64 loop; a NaN anywhere gives NaN, an Inf gives Inf (nothing is scaled by it).
TEST(Clip, TwoNormOfEveryLengthAndNonFiniteGradients) {
  Generator gen(3);
  for (std::size_t n : {1u, 7u, 8u, 9u, 15u, 16u, 17u, 1000u, 12289u}) {
    Tensor a = param_like(zeros({n}, DType::Float32)), b = param_like(zeros({3, 5}, DType::Float64));
    a.set_grad(randn({n}, gen, DType::Float32));
    b.set_grad(randn({3, 5}, gen, DType::Float64));
    double sa = 0, sb = 0;
    for (std::size_t i = 0; i < n; ++i) sa += a.grad().at(i) * a.grad().at(i);
    for (std::size_t i = 0; i < 15; ++i) sb += b.grad().at(i) * b.grad().at(i);
    const double want = std::sqrt(sa + sb);
    EXPECT_NEAR(clip_grad_norm({a, b}, 1e9), want, 1e-12 * want) << "n = " << n;
  }
  for (double bad : {double(NAN), double(INFINITY)}) {
    Tensor w = param_like(zeros({11}, DType::Float32));
    w.set_grad(tensor({0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, bad, 0.5}, DType::Float32));
    const double total = clip_grad_norm({w}, 1.0);
    if (std::isnan(bad))
      EXPECT_TRUE(std::isnan(total));
    else
      EXPECT_EQ(total, INFINITY);
  }
}

// The course's clip to [−5, 5]; NaN is kept (like torch.clamp).
TEST(Clip, ClipGradValueToFive) {
  Tensor w = param_like(zeros({5}, DType::Float32));
  w.set_grad(tensor({-7.0, -5.0, 2.5, 6.0, NAN}, DType::Float32));
  clip_grad_value({w}, 5.0);
  const xt::xarray<double> g = w.grad().to_f64();
  EXPECT_EQ(g(0), -5.0);
  EXPECT_EQ(g(1), -5.0);
  EXPECT_EQ(g(2), 2.5);
  EXPECT_EQ(g(3), 5.0);
  EXPECT_TRUE(std::isnan(g(4)));
}

TEST(Clip, BadArgumentsThrowValueError) {
  Tensor w = param_like(zeros({2}, DType::Float64));
  w.set_grad(tensor({1.0, 1.0}, DType::Float64));
  expect_value_error([&] { clip_grad_norm({w}, -1.0); }, {"clip_grad_norm", "max_norm", "-1"});
  expect_value_error([&] { clip_grad_norm({w}, 1.0, 0.0); }, {"clip_grad_norm", "norm_type"});
  expect_value_error([&] { clip_grad_value({w}, -5.0); }, {"clip_grad_value", "clip_value"});
  EXPECT_EQ(max_abs_diff(w.grad(), tensor({1.0, 1.0}, DType::Float64)), 0.0);
}

}  // namespace
