// Robustness: anomaly mode stops a diverging training run with a message naming the op.
#include <gtest/gtest.h>

#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

TEST(Robustness, DivergingTrainingIsStoppedByAnomalyMode) {
  Generator gen(1);
  GRU gru(GRUOptions(5, 8), gen);
  Linear head(8, 5, gen);
  std::vector<Tensor> params = gru.parameters();
  for (const Tensor& p : head.parameters()) params.push_back(p);
  SGD opt(params, SGDOptions(1e30));  // a learning rate that blows the weights up
  std::vector<std::int64_t> ids = {0, 1, 2, 3, 4, 0, 1, 2}, targets = {1, 2, 3, 4, 0, 1, 2, 3};
  AnomalyGuard anomaly;
  std::string message;
  int step = 0;
  try {
    for (; step < 20; ++step) {
      GRU::Output out = gru.forward_ids(ids, 1, 8, 5);
      Tensor logits = head.forward(reshape(out.output, Shape{8, 8}));
      Tensor loss = cross_entropy(logits, targets);
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
  } catch (const AnomalyError& e) {
    message = e.what();
  }
  tape().clear();
  ASSERT_FALSE(message.empty()) << "training diverged without an anomaly error";
  EXPECT_LT(step, 20);
  EXPECT_NE(message.find("NaN or Inf"), std::string::npos) << message;
  EXPECT_NE(message.find("tape index"), std::string::npos) << message;
  EXPECT_NE(message.find("'"), std::string::npos) << message;  // names the op
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
