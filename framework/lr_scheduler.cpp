// tapegrad — learning-rate schedulers (see lr_scheduler.hpp).
#include "framework/lr_scheduler.hpp"

#include <cmath>

#include <fmt/format.h>

namespace tapegrad {

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer), base_lr_(optimizer.lr()) {}

void LRScheduler::step() {
  ++t_;
  optimizer_.set_lr(lr_at(t_));
}

StepLR::StepLR(Optimizer& optimizer, std::int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  if (step_size < 1)
    throw ValueError(fmt::format("StepLR: step_size must be a positive period, got {}", step_size));
  if (!(gamma > 0) || !std::isfinite(gamma))
    throw ValueError(fmt::format("StepLR: gamma must be a finite number > 0, got {}", gamma));
}

double StepLR::lr_at(std::int64_t t) const {
  return base_lr() * std::pow(gamma_, double(t / step_size_));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, std::int64_t T_max, double eta_min)
    : LRScheduler(optimizer), T_max_(T_max), eta_min_(eta_min) {
  if (T_max < 1)
    throw ValueError(fmt::format("CosineAnnealingLR: T_max must be a positive period, got {}", T_max));
  if (!(eta_min >= 0) || !std::isfinite(eta_min))
    throw ValueError(fmt::format("CosineAnnealingLR: eta_min must be a finite number >= 0, got {}", eta_min));
}

double CosineAnnealingLR::lr_at(std::int64_t t) const {
  const double pi = 3.14159265358979323846;
  return eta_min_ + (base_lr() - eta_min_) * (1 + std::cos(pi * double(t) / double(T_max_))) / 2;
}

LinearWarmup::LinearWarmup(Optimizer& optimizer, std::int64_t warmup_steps, double start_factor)
    : LRScheduler(optimizer), warmup_(warmup_steps), start_factor_(start_factor) {
  if (warmup_steps < 1)
    throw ValueError(fmt::format("LinearWarmup: warmup_steps must be a positive period, got {}", warmup_steps));
  if (!(start_factor > 0 && start_factor <= 1))
    throw ValueError(fmt::format("LinearWarmup: start_factor must be in (0, 1], got {}", start_factor));
  optimizer.set_lr(lr_at(0));  // like torch's LinearLR: step 0 already runs at start_factor · base
}

double LinearWarmup::lr_at(std::int64_t t) const {
  double f = start_factor_ + (1 - start_factor_) * double(std::min(t, warmup_)) / double(warmup_);
  return base_lr() * f;
}

}  // namespace tapegrad
