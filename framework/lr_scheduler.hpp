// tapegrad — learning-rate schedulers (torch.optim.lr_scheduler): they set an optimizer's lr
// from the number of scheduler steps taken, in closed form.
//
//   Adam opt(model.parameters(), AdamOptions().lr(1e-3));
//   CosineAnnealingLR sched(opt, /*T_max=*/100);
//   for (int epoch = 0; epoch < 100; ++epoch) { train_one_epoch(opt); sched.step(); }
//
// Like PyTorch, constructing a scheduler leaves lr at its value for step 0 (the optimizer's lr
// when the scheduler was made, "base lr"), and every step() moves to the next step's value:
//   StepLR             lr_t = base · gamma^⌊t / step_size⌋
//   CosineAnnealingLR  lr_t = eta_min + (base − eta_min) · (1 + cos(π t / T_max)) / 2
//   LinearWarmup       lr_t = base · (start_factor + (1 − start_factor) · min(t, warmup) / warmup)
//                      (torch's LinearLR with end_factor 1: a linear warm-up, then constant)
// Equal to PyTorch's schedulers step for step (tests/test_lr_scheduler.cpp, fixtures from
// tools/make_scheduler_fixtures.py); CosineAnnealingLR follows PyTorch's closed form, which its
// recursive form matches for t ≤ T_max.
#pragma once

#include <cstdint>

#include "framework/optim.hpp"

namespace tapegrad {

class LRScheduler {
 public:
  explicit LRScheduler(Optimizer& optimizer);
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  /// Advances one step and sets the optimizer's lr to that step's value.
  void step();
  /// The lr the optimizer has now (torch's get_last_lr()).
  double last_lr() const { return optimizer_.lr(); }
  /// Steps taken so far (torch's last_epoch).
  std::int64_t steps() const { return t_; }
  double base_lr() const { return base_lr_; }

 protected:
  /// The lr of step t ≥ 0.
  virtual double lr_at(std::int64_t t) const = 0;

 private:
  Optimizer& optimizer_;
  double base_lr_;
  std::int64_t t_ = 0;
};

/// Multiplies the lr by gamma every step_size steps. ValueError: step_size < 1, gamma ≤ 0 or not finite.
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, std::int64_t step_size, double gamma = 0.1);

 protected:
  double lr_at(std::int64_t t) const override;

 private:
  std::int64_t step_size_;
  double gamma_;
};

/// Half a cosine from base lr down to eta_min over T_max steps. ValueError: T_max < 1, eta_min
/// negative or not finite.
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, std::int64_t T_max, double eta_min = 0.0);

 protected:
  double lr_at(std::int64_t t) const override;

 private:
  std::int64_t T_max_;
  double eta_min_;
};

/// Linear warm-up from start_factor · base lr to base lr over warmup_steps steps, then constant.
/// ValueError: warmup_steps < 1, start_factor outside (0, 1].
class LinearWarmup : public LRScheduler {
 public:
  LinearWarmup(Optimizer& optimizer, std::int64_t warmup_steps, double start_factor = 1.0 / 3.0);

 protected:
  double lr_at(std::int64_t t) const override;

 private:
  std::int64_t warmup_;
  double start_factor_;
};

}  // namespace tapegrad
