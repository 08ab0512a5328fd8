// Robustness: anomaly mode stops a diverging training run with a message naming the op.
#include <gtest/gtest.h>

#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

TEST(Robustness, DivergingTrainingIsStoppedByAnomalyMode) {
  // Least squares with a learning rate far above 2/λ_max: the weights grow geometrically until
  // float32 overflows. (A GRU LM saturates instead: its losses grow but stay finite.)
  Generator gen(1);
  Linear model(4, 1, gen);
  Tensor x = randn({16, 4}, gen), y = randn({16, 1}, gen);
  SGD opt(model.parameters(), SGDOptions(50.0));
  AnomalyGuard anomaly;
  std::string message;
  int step = 0;
  try {
    for (; step < 200; ++step) {
      Tensor loss = mse(model.forward(x), y);
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
  } catch (const AnomalyError& e) {
    message = e.what();
  }
  tape().clear();
  ASSERT_FALSE(message.empty()) << "training diverged without an anomaly error";
  EXPECT_GT(step, 2);
  EXPECT_LT(step, 200);
  EXPECT_NE(message.find("NaN or Inf"), std::string::npos) << message;
  EXPECT_NE(message.find("tape index"), std::string::npos) << message;
  EXPECT_NE(message.find("(16, 1)"), std::string::npos) << message;  // the inputs' shapes
}

TEST(Robustness, AnomalyModeIsOffByDefaultAndScoped) {
  EXPECT_FALSE(anomaly_enabled());
  {
    AnomalyGuard on;
    EXPECT_TRUE(anomaly_enabled());
  }
  EXPECT_FALSE(anomaly_enabled());
  Tensor x = tensor({0.0}, DType::Float64);
  EXPECT_NO_THROW(log(x));  // -inf, allowed when not detecting anomalies
}
