// Learning-rate schedulers against PyTorch's (tests/fixtures/lr_schedulers.npz, made by
// tools/make_scheduler_fixtures.py), their errors, and the data loader (batches, shuffling,
// drop_last, randperm).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "framework/npz.hpp"
#include "framework/tapegrad.hpp"

using namespace tapegrad;

namespace {

std::vector<double> expected(const std::string& name) {
  static const npz::Archive a = npz::load_npz(std::string(TAPEGRAD_FIXTURE_DIR) + "/lr_schedulers.npz");
  return npz::find(a, name, "lr_schedulers.npz").to_vector<double>();
}

template <class MakeScheduler>
void expect_trace(const std::string& name, MakeScheduler make) {
  Tensor p = zeros({1}).requires_grad_();
  SGD opt({p}, SGDOptions(0.5));
  auto sched = make(opt);
  std::vector<double> want = expected(name);
  for (std::size_t t = 0; t < want.size(); ++t) {
    EXPECT_NEAR(opt.lr(), want[t], 1e-15) << name << " step " << t;
    EXPECT_EQ(sched->last_lr(), opt.lr());
    sched->step();
  }
}

}  // namespace

TEST(LRScheduler, StepLRMatchesPyTorch) {
  expect_trace("step_lr", [](Optimizer& o) { return std::make_unique<StepLR>(o, 7, 0.3); });
}

TEST(LRScheduler, CosineAnnealingMatchesPyTorch) {
  expect_trace("cosine", [](Optimizer& o) { return std::make_unique<CosineAnnealingLR>(o, 25, 0.01); });
}

TEST(LRScheduler, LinearWarmupMatchesPyTorchLinearLR) {
  expect_trace("warmup", [](Optimizer& o) { return std::make_unique<LinearWarmup>(o, 10, 0.25); });
}

TEST(LRScheduler, BadPeriodsAndFactorsNameTheScheduler) {
  Tensor p = zeros({1}).requires_grad_();
  SGD opt({p}, SGDOptions(0.1));
  auto expect_error = [](auto make, const std::string& needle) {
    try {
      make();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { StepLR s(opt, 0); }, "StepLR: step_size");
  expect_error([&] { StepLR s(opt, 3, -1); }, "StepLR: gamma");
  expect_error([&] { StepLR s(opt, 3, NAN); }, "StepLR: gamma");
  expect_error([&] { CosineAnnealingLR s(opt, 0); }, "CosineAnnealingLR: T_max");
  expect_error([&] { CosineAnnealingLR s(opt, -5); }, "CosineAnnealingLR: T_max");
  expect_error([&] { CosineAnnealingLR s(opt, 5, -1); }, "CosineAnnealingLR: eta_min");
  expect_error([&] { LinearWarmup s(opt, 0); }, "LinearWarmup: warmup_steps");
  expect_error([&] { LinearWarmup s(opt, 5, 0.0); }, "LinearWarmup: start_factor");
  expect_error([&] { LinearWarmup s(opt, 5, 1.5); }, "LinearWarmup: start_factor");
}

TEST(DataLoader, BatchesCoverEveryExampleOnceAndShuffleChangesTheOrder) {
  Generator gen(3);
  Tensor x = arange(0, 10 * 3).reshape({10, 3});
  std::vector<std::int64_t> y = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  DataLoader ordered(x, y, 4);
  auto batches = ordered.epoch();
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(ordered.size(), 3u);
  EXPECT_EQ(batches[2].x.shape(), (Shape{2, 3}));  // the short last batch is kept
  EXPECT_EQ(batches[1].y, (std::vector<std::int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(batches[1].x.at(0), 12.0);  // row 4 of x

  DataLoader shuffled(x, y, 4, /*shuffle=*/true, /*drop_last=*/true, gen);
  EXPECT_EQ(shuffled.size(), 2u);
  auto e1 = shuffled.epoch(), e2 = shuffled.epoch();
  ASSERT_EQ(e1.size(), 2u);
  std::set<std::int64_t> seen;
  for (const MiniBatch& b : e1)
    for (std::size_t i = 0; i < b.index.size(); ++i) {
      EXPECT_TRUE(seen.insert(b.index[i]).second) << "example twice in one epoch";
      EXPECT_EQ(b.y[i], b.index[i]);                                // targets follow their rows
      EXPECT_EQ(b.x.at(i * 3), double(b.index[i] * 3));
    }
  EXPECT_NE(e1[0].index, e2[0].index) << "a new order every epoch";
}

TEST(DataLoader, RandpermIsAPermutationAndSeeded) {
  Generator a(7), b(7);
  auto p = randperm(1000, a);
  EXPECT_EQ(p, randperm(1000, b));
  auto sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], std::int64_t(i));
  EXPECT_TRUE(randperm(0, a).empty());
}

TEST(DataLoader, BadArgumentsAreValueErrors) {
  Tensor x = zeros({5, 2});
  EXPECT_THROW(DataLoader(x, {}, 0), ValueError);
  EXPECT_THROW(DataLoader(x, {1, 2, 3}, 2), ValueError);
  EXPECT_THROW(DataLoader(scalar(1.0), {}, 2), ValueError);
  EXPECT_THROW(DataLoader(x, {}, 8, false, /*drop_last=*/true), ValueError);
}
