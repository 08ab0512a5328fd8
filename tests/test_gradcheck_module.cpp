// gradcheck_module (framework/gradcheck_module.hpp): every parameter of a module checked by
// name, fast mode chosen by size, a wrong gradient pinned to its parameter, grads left alone.
#include <gtest/gtest.h>

#include "framework/gradcheck_module.hpp"
#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

namespace {

/// A GRU cell with a linear read-out: cell.* and head.* parameters.
struct Tiny : Module {
  explicit Tiny(Generator& gen) {
    cell = register_module("cell", std::make_shared<GRUCell>(GRUCellOptions(3, 4), gen));
    head = register_module("head", std::make_shared<Linear>(4, 5, gen));
    to(DType::Float64);
  }
  Tensor loss(const Tensor& x, const Tensor& h) const {
    return cross_entropy(head->forward(cell->forward(x, h)), {0, 4});
  }
  std::shared_ptr<GRUCell> cell;
  std::shared_ptr<Linear> head;
};

struct Inputs {
  Tensor x, h;
  explicit Inputs(Generator& gen)
      : x(uniform({2, 3}, -1, 1, gen, DType::Float64)),
        h(uniform({2, 4}, -1, 1, gen, DType::Float64)) {}
};

}  // namespace

TEST(GradcheckModule, EveryParameterByName) {
  Generator gen(1);
  Tiny m(gen);
  Inputs in(gen);
  ModuleCheckResult r = gradcheck_module(m, [&] { return m.loss(in.x, in.h); });
  EXPECT_TRUE(r.passed) << r.report();
  std::vector<std::string> names;
  for (const auto& c : r.parameters) names.push_back(c.name);
  EXPECT_EQ(names, (std::vector<std::string>{"cell.weight_ih", "cell.weight_hh", "cell.bias_ih",
                                             "cell.bias_hh", "head.weight", "head.bias"}));
  for (const auto& c : r.parameters) {
    EXPECT_FALSE(c.fast) << c.name;
    EXPECT_LT(c.relative_error, 1e-7) << c.name;
  }
  EXPECT_EQ(r["head.weight"].shape, (Shape{5, 4}));
  EXPECT_NE(r.report().find("cell.weight_hh"), std::string::npos);
}

TEST(GradcheckModule, LargeParametersUseFastModeAutomatically) {
  Generator gen(2);
  Tiny m(gen);
  Inputs in(gen);
  ModuleCheckOptions opt;
  opt.fast_threshold = 16;  // (12, 3), (12, 4), (5, 4) are "large" here; the biases are not
  ModuleCheckResult r = gradcheck_module(
      m, [&] { return m.loss(in.x, in.h); }, opt);
  EXPECT_TRUE(r.passed) << r.report();
  EXPECT_TRUE(r["cell.weight_ih"].fast);
  EXPECT_TRUE(r["head.weight"].fast);
  EXPECT_FALSE(r["cell.bias_ih"].fast);
  EXPECT_FALSE(r["head.bias"].fast);
  EXPECT_NE(r.report().find("fast"), std::string::npos);
  opt.fast = true;  // forced for all
  for (const auto& c : gradcheck_module(
                           m, [&] { return m.loss(in.x, in.h); }, opt)
                           .parameters)
    EXPECT_TRUE(c.fast) << c.name;
}

TEST(GradcheckModule, AWrongGradientIsPinnedToItsParameter) {
  Generator gen(3);
  Tiny m(gen);
  Inputs in(gen);
  // A hook that corrupts head.bias's gradient: only that parameter may fail, in both modes.
  m.head->bias.register_hook([](const Tensor& g) { return g * 1.01; });
  for (bool fast : {false, true}) {
    ModuleCheckOptions opt;
    opt.fast = fast;
    ModuleCheckResult r = gradcheck_module(
        m, [&] { return m.loss(in.x, in.h); }, opt);
    EXPECT_FALSE(r.passed);
    for (const auto& c : r.parameters)
      EXPECT_EQ(c.passed, c.name != "head.bias") << c.name << "\n" << r.report();
    EXPECT_NE(r.report().find("FAIL"), std::string::npos);
  }
}

TEST(GradcheckModule, LeavesGradientsAsTheyWere) {
  Generator gen(4);
  Tiny m(gen);
  Inputs in(gen);
  m.head->bias.set_grad(full({5}, 7.0, DType::Float64));
  gradcheck_module(m, [&] { return m.loss(in.x, in.h); });
  ASSERT_TRUE(m.head->bias.grad().defined());
  EXPECT_DOUBLE_EQ(m.head->bias.grad().at(2), 7.0);
  EXPECT_FALSE(m.cell->weight_ih.grad().defined());
}

TEST(GradcheckModule, Float32Warns) {
  Generator gen(5);
  Tiny m(gen);
  m.to(DType::Float32);
  Tensor x = uniform({2, 3}, -1, 1, gen, DType::Float32),
         h = uniform({2, 4}, -1, 1, gen, DType::Float32);
  ModuleCheckResult r = gradcheck_module(m, [&] { return m.loss(x, h); });
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("float32"), std::string::npos);
  EXPECT_NE(r.report().find("warning"), std::string::npos);
}
