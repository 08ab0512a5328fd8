// Graph lifetime (issue 13): a node is owned by its output tensor, the tape only lists it. A graph
// that nothing can reach any more is freed without a backward: evaluation loops, abandoned
// experiments, very deep chains. The listing and backward stay what they were.
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <sys/resource.h>

#include "framework/tapegrad.hpp"
#include "layers/fast/gru_fused.hpp"
#include "layers/gru.hpp"
#include "layers/linear.hpp"

using namespace tapegrad;

// AddressSanitizer keeps freed memory in quarantine (256 MB by default), so RSS says nothing
// about leaks there; the live node counts are checked, and LeakSanitizer finds real leaks.
#if defined(__SANITIZE_ADDRESS__)
#define TAPEGRAD_RSS_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TAPEGRAD_RSS_MEANINGFUL 0
#endif
#endif
#ifndef TAPEGRAD_RSS_MEANINGFUL
#define TAPEGRAD_RSS_MEANINGFUL 1
#endif

namespace {

/// Peak resident set size so far in MiB (getrusage; Linux reports KiB). It only grows, so
/// "flat" means the peak stops growing once the loop is warm.
double rss_mib() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return -1;
  return double(usage.ru_maxrss) / 1024.0;
}

/// A second thread that is handed tensors (a logger): it reads each with `read` and then drops
/// the last handle, at a moment of its own choosing. The destructor waits for it to finish.
class Logger {
 public:
  explicit Logger(std::function<void(const Tensor&)> read)
      : read_(std::move(read)), thread_([this] { run(); }) {}
  ~Logger() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void send(Tensor t) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      handed_.push_back(std::move(t));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      Tensor t;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return done_ || !handed_.empty(); });
        if (handed_.empty()) return;
        t = std::move(handed_.front());
        handed_.pop_front();
      }
      read_(t);
    }  // t, the last handle, dropped here
  }
  std::function<void(const Tensor&)> read_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Tensor> handed_;
  bool done_ = false;
  std::thread thread_;  // last: started once everything it uses exists
};

}  // namespace

TEST(GraphLifetime, TwentyThousandForwardsWithoutBackwardKeepMemoryFlat) {
  tape().clear();
  Generator gen(0);
  Linear layer(64, 64, gen);  // parameters require grad: every forward is recorded
  Tensor x = randn({16, 64}, gen);
  WeakTensor first;
  std::size_t max_live = 0;
  double rss_warm = 0;
  for (int step = 0; step < 20000; ++step) {
    Tensor y = tanh(layer(x));  // an evaluation loop: no backward, no NoGradGuard
    ASSERT_FALSE(y.is_leaf());
    if (step == 0) first = WeakTensor(y);
    if (step % 1000 == 0) max_live = std::max(max_live, tape().size());
    if (step == 2000) rss_warm = rss_mib();
  }
  // The graph of each step died with its last tensor, and the tape forgot it.
  EXPECT_TRUE(first.expired());
  EXPECT_LE(max_live, 3u);  // matmul, add, tanh of the step in flight (the bias add may fuse)
  EXPECT_EQ(tape().size(), 0u);
  // Memory: before, each step kept ~17 KB (347 MB after 20,000 steps). Allow a generous margin
  // for the allocator; a leak of the old size would be ~300 MB here.
  double rss_end = rss_mib();
  if (TAPEGRAD_RSS_MEANINGFUL && rss_warm > 0 && rss_end > 0) EXPECT_LT(rss_end - rss_warm, 32.0) << rss_warm << " -> " << rss_end;
}

TEST(GraphLifetime, AbandonedGraphIsFreedWhenItsLastTensorDies) {
  tape().clear();
  Tensor w = randn({32, 32}, DType::Float64).requires_grad_();
  WeakTensor hidden, root;
  {
    Tensor h = w;
    for (int i = 0; i < 50; ++i) h = tanh(matmul(h, w));
    Tensor loss = sum(exp(h));
    root = WeakTensor(loss);
    hidden = WeakTensor(h);
    EXPECT_EQ(tape().size(), 102u);
  }
  EXPECT_TRUE(root.expired());
  EXPECT_TRUE(hidden.expired());
  EXPECT_EQ(tape().size(), 0u);
  EXPECT_EQ(tape().listing(), "");
}

TEST(GraphLifetime, OpsThatSaveTheirOutputMakeNoCycle) {
  // exp, sqrt, tanh, sigmoid, softmax, log_softmax, pow(tensor, tensor) and the fused GRU need
  // their own output in backward; they must not own it.
  Tensor a = from_vector({0.1, 0.5, 0.9, 0.3}, {2, 2}, DType::Float64).requires_grad_();
  std::vector<std::pair<const char*, std::function<Tensor()>>> ops = {
      {"exp", [&] { return exp(a); }},
      {"sqrt", [&] { return sqrt(a); }},
      {"tanh", [&] { return tanh(a); }},
      {"sigmoid", [&] { return sigmoid(a); }},
      {"softmax", [&] { return softmax(a, 1); }},
      {"log_softmax", [&] { return log_softmax(a, 1); }},
      {"pow", [&] { return pow(a, a); }},
  };
  for (auto& [name, make] : ops) {
    WeakTensor weak;
    {
      Tensor y = make();
      ASSERT_FALSE(y.is_leaf()) << name;
      weak = WeakTensor(y);
    }
    EXPECT_TRUE(weak.expired()) << name << ": the output keeps itself alive (a cycle)";
  }
  EXPECT_EQ(tape().size(), 0u);

  Generator gen(3);
  GRU gru(GRUOptions(3, 4), gen);
  Tensor x = randn({2, 5, 3}, gen);
  WeakTensor weak;
  {
    GRU::Output o = gru_forward_fused(gru, x);
    weak = WeakTensor(o.output);
  }
  EXPECT_TRUE(weak.expired()) << "gru_fused keeps its output alive (a cycle)";
  EXPECT_EQ(tape().size(), 0u);
}

TEST(GraphLifetime, CustomOpSavingItsOwnOutputMakesNoCycle) {
  // exp as a custom op whose backward reads the saved output: dL/dx = g ⊙ y.
  auto custom_exp = [](const Tensor& x) {
    return apply_custom(
        "my_exp", {x},
        [](CustomContext& ctx, const std::vector<Tensor>& in) {
          Tensor y = exp(in[0]);
          ctx.save_for_backward({in[0], y});
          return y;
        },
        [](CustomContext& ctx, const Tensor& g) -> std::vector<Tensor> {
          return {g * ctx.saved_tensors()[1]};
        });
  };
  Tensor a = from_vector({0.1, -0.5, 0.9}, {3}, DType::Float64).requires_grad_();
  WeakTensor weak;
  {
    Tensor y = custom_exp(a);
    weak = WeakTensor(y);
  }
  EXPECT_TRUE(weak.expired()) << "a custom op's saved output keeps it alive (a cycle)";
  EXPECT_EQ(tape().size(), 0u);
  // Its backward still sees the output, twice with retain_graph, and double backward works.
  Tensor y = custom_exp(a);
  sum(y).backward(Tensor(), /*retain_graph=*/true);
  sum(y).backward();
  EXPECT_LT(xt::amax(xt::abs(a.grad().to_f64() - 2.0 * xt::exp(a.to_f64())))(), 1e-15);
  auto r = gradgradcheck([&](const std::vector<Tensor>& in) { return custom_exp(in[0]); }, {a});
  EXPECT_TRUE(r.passed) << r.report();
}

TEST(GraphLifetime, SavedOutputsStillWorkInBackwardAndDoubleBackward) {
  // The output is held weakly by its VJP but kept alive by the pass: values are unchanged.
  Tensor x = scalar(0.7, DType::Float64).requires_grad_();
  Tensor y = sum(exp(tanh(x)));  // the intermediate outputs have no handle but the graph's
  auto g = grad(y, {x}, Tensor(), true, true);
  double t = std::tanh(0.7), e = std::exp(t);
  EXPECT_NEAR(g[0].item(), e * (1 - t * t), 1e-14);
  g[0].backward();  // d²/dx² of exp(tanh x)
  double second = e * (1 - t * t) * (1 - t * t) + e * (-2 * t) * (1 - t * t);
  EXPECT_NEAR(x.grad().item(), second, 1e-13);
}

TEST(GraphLifetime, DeepChainIsDroppedWithoutRecursion) {
  // Dropping the last handle on a 100,000-node chain frees it in a loop (a recursive teardown
  // would need ~100,000 nested destructor calls and overflow the stack).
  Tensor w = scalar(1.0, DType::Float64).requires_grad_();
  WeakTensor weak;
  {
    Tensor h = w;
    for (int i = 0; i < 100000; ++i) h = h * 1.0;
    weak = WeakTensor(h);
  }
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(tape().size(), 0u);
}

TEST(GraphLifetime, ListingShowsTheLiveNodesAndBackwardIsUnchanged) {
  tape().clear();
  Tensor W = from_vector({0.1, -0.2, 0.3, 0.4, -0.5, 0.6}, {3, 2}, DType::Float64)
                 .requires_grad_()
                 .set_name("W");
  Tensor x = from_vector({1.0, 2.0, 3.0}, {1, 3}, DType::Float64).set_name("x");
  {
    Tensor abandoned = sigmoid(matmul(x, W));  // dies at the end of this scope
  }
  Tensor h = tanh(matmul(x, W)).set_name("h");
  Tensor loss = sum(h * h).set_name("loss");
  EXPECT_EQ(tape().listing(),
            "%0    matmul         (x, W) -> (1, 2)\n"
            "%1    tanh           (%0) -> (1, 2)  h\n"
            "%2    mul            (%1, %1) -> (1, 2)\n"
            "%3    sum            (%2) -> ()  loss\n");
  EXPECT_NE(tape().to_dot().find("n2 -> n3"), std::string::npos);
  EXPECT_EQ(std::string(tape().node(1).op), "tanh");
  loss.backward();
  // d/dW Σ tanh(xW)² = xᵀ (2 tanh(xW) (1 − tanh²(xW)))
  const double xs[3] = {1, 2, 3}, ws[6] = {0.1, -0.2, 0.3, 0.4, -0.5, 0.6};
  for (std::size_t j = 0; j < 2; ++j) {
    double z = 0;
    for (std::size_t i = 0; i < 3; ++i) z += xs[i] * ws[i * 2 + j];
    double t = std::tanh(z);
    for (std::size_t i = 0; i < 3; ++i)
      EXPECT_NEAR(W.grad().at(i * 2 + j), xs[i] * 2 * t * (1 - t * t), 1e-14);
  }
  EXPECT_EQ(tape().size(), 0u);  // released by the backward
  EXPECT_THROW(loss.backward(), AutogradError);  // freed graph
  EXPECT_TRUE(h.requires_grad());
  EXPECT_FALSE(h.is_leaf());
}

TEST(GraphLifetime, BackwardReleasesOnlyTheGraphItRanAndKeepsOtherLiveGraphs) {
  // As in PyTorch: a backward without retain_graph releases the nodes it ran; a graph it did not
  // reach (recorded before it, still held) stays on the tape and can be differentiated later.
  tape().clear();
  Tensor a = scalar(2.0, DType::Float64).requires_grad_();
  Tensor other = a * 10.0;  // a live graph the backward does not reach
  Tensor y = a * a;
  Tensor later = exp(a);  // and one recorded after the root
  y.backward(Tensor(), /*retain_graph=*/true);
  EXPECT_DOUBLE_EQ(a.grad().item(), 4.0);
  EXPECT_EQ(tape().size(), 3u);
  y.backward();  // without retain_graph: y's node is released and leaves the tape
  EXPECT_DOUBLE_EQ(a.grad().item(), 8.0);
  EXPECT_EQ(tape().size(), 2u);
  try {
    y.backward();
    ADD_FAILURE() << "a second backward through a released graph must be refused";
  } catch (const AutogradError& e) {
    EXPECT_NE(std::string(e.what()).find("backward through a freed tape"), std::string::npos)
        << e.what();
  }
  other.backward();  // the unrelated graph is intact
  EXPECT_DOUBLE_EQ(a.grad().item(), 18.0);
  EXPECT_EQ(tape().size(), 1u);
  later.backward();
  EXPECT_NEAR(a.grad().item(), 18.0 + std::exp(2.0), 1e-12);
  EXPECT_EQ(tape().size(), 0u);
}

TEST(GraphLifetime, TrainingStepsNextToAHeldGraphKeepTheTapeSmall) {
  // 10,000 forward + backward steps while an unrelated graph is held: each backward's nodes leave
  // the tape, the held graph stays listed and differentiable.
  tape().clear();
  Tensor a = scalar(3.0, DType::Float64).requires_grad_();
  Tensor kept = a * a;
  for (int i = 0; i < 10000; ++i) {
    Tensor loss = exp(a) + a * 2.0;
    loss.backward();
    ASSERT_EQ(tape().size(), 1u) << "step " << i;
  }
  EXPECT_NEAR(a.grad().item(), 10000 * (std::exp(3.0) + 2.0), 1e-6);
  a.zero_grad();
  kept.backward();
  EXPECT_DOUBLE_EQ(a.grad().item(), 6.0);
  EXPECT_EQ(tape().size(), 0u);
}

TEST(GraphLifetime, AMetricKeptAsATensorKeepsItsGraphItsItemDoesNot) {
  // docs/pitfalls.md, 11: a logged tensor that is never differentiated keeps its own nodes and
  // the values they read (here the prediction), step after step; its item() keeps nothing.
  tape().clear();
  Tensor w = full({64}, 0.5, DType::Float64).requires_grad_();
  Tensor x = full({64}, 2.0, DType::Float64), y = full({64}, 1.5, DType::Float64);
  std::vector<Tensor> logged;
  std::vector<WeakTensor> preds;
  for (int step = 0; step < 100; ++step) {
    Tensor pred = x * w;
    Tensor loss = sum((pred - y) * (pred - y));
    Tensor metric = sum(abs(pred - y));  // three nodes the backward does not reach
    loss.backward();
    logged.push_back(metric);
    preds.push_back(WeakTensor(pred));
  }
  EXPECT_EQ(tape().size(), 300u);
  for (const WeakTensor& p : preds) EXPECT_FALSE(p.expired());  // held through the metrics
  logged.clear();
  EXPECT_EQ(tape().size(), 0u);
  for (const WeakTensor& p : preds) EXPECT_TRUE(p.expired());
  std::vector<double> values;
  for (int step = 0; step < 100; ++step) {
    Tensor pred = x * w;
    Tensor loss = sum((pred - y) * (pred - y));
    Tensor metric = sum(abs(pred - y));
    loss.backward();
    values.push_back(metric.item());
  }
  EXPECT_EQ(tape().size(), 0u);
  for (double v : values) EXPECT_DOUBLE_EQ(v, 32.0);  // 64 × |2 · 0.5 − 1.5|: w is never stepped
}

TEST(GraphLifetime, AGraphSharingNodesWithAReleasedOneIsAClearError) {
  // Two losses over one shared intermediate: the first backward (no retain_graph) released the
  // shared node, so the second stops there with PyTorch's advice instead of a partial gradient.
  tape().clear();
  Tensor a = scalar(0.5, DType::Float64).requires_grad_();
  Tensor h = tanh(a);
  h.set_name("h");
  Tensor loss1 = h * 2.0;
  Tensor loss2 = h * 3.0;
  loss1.backward();
  try {
    loss2.backward();
    ADD_FAILURE() << "the shared node was released: the second backward must be refused";
  } catch (const AutogradError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("backward through a freed tape"), std::string::npos) << m;
    EXPECT_NE(m.find("retain_graph=true"), std::string::npos) << m;
  }
  EXPECT_NEAR(a.grad().item(), 2.0 * (1.0 - std::tanh(0.5) * std::tanh(0.5)), 1e-15);
}

TEST(GraphLifetime, TapeStaysSmallWhileManyGraphsComeAndGo) {
  // Expired entries are compacted away: after 10,000 short-lived graphs next to one long-lived
  // one, only the long-lived nodes are listed and backward still finds them.
  tape().clear();
  Tensor a = scalar(3.0, DType::Float64).requires_grad_();
  Tensor kept = a * a;
  for (int i = 0; i < 10000; ++i) {
    Tensor tmp = exp(a) + 1.0;
  }
  Tensor y = kept * 2.0;
  EXPECT_EQ(tape().size(), 2u);
  y.backward();
  EXPECT_DOUBLE_EQ(a.grad().item(), 12.0);
}

// The program's own code that runs inside a pass (a hook, a custom op's backward) may drop the
// last handle of the tensor being worked on, and Tape::clear() may release a node whose VJP holds
// its own output: the pass and clear() hold each output while they work on it (tape.cpp). Under
// AddressSanitizer (CI) a use after free here is an error.
TEST(GraphLifetime, HookDroppingTheRootsLastHandleDuringBackwardIsSafe) {
  tape().clear();
  Tensor a = from_vector({0.3, -0.7}, {2}, DType::Float64).requires_grad_();
  Tensor y = tanh(a);  // `y` is its only handle
  y.register_hook([&y](const Tensor&) { y = Tensor(); });
  y.backward(ones({2}, DType::Float64));
  EXPECT_FALSE(y.defined());
  for (std::size_t i = 0; i < 2; ++i) {
    const double t = std::tanh(i == 0 ? 0.3 : -0.7);
    EXPECT_NEAR(a.grad().at(i), 1 - t * t, 1e-15);
  }
  EXPECT_EQ(tape().size(), 0u);
}

TEST(GraphLifetime, CustomBackwardDroppingItsOwnOutputsLastHandleIsSafe) {
  tape().clear();
  Tensor a = from_vector({1.0, 2.0}, {2}, DType::Float64).requires_grad_();
  Tensor y;
  y = apply_custom(
      "double_then_forget", {a},
      [](CustomContext&, const std::vector<Tensor>& in) { return mul(in[0], 2.0); },
      [&y](CustomContext&, const Tensor& g) -> std::vector<Tensor> {
        y = Tensor();  // the root's only handle, while its own backward runs
        return {mul(g, 2.0)};
      });
  Tensor seed = from_vector({1.0, 3.0}, {2}, DType::Float64);
  y.backward(seed);
  EXPECT_FALSE(y.defined());
  EXPECT_DOUBLE_EQ(a.grad().at(0), 2.0);
  EXPECT_DOUBLE_EQ(a.grad().at(1), 6.0);
}

TEST(GraphLifetime, TensorsDroppedOnAnotherThreadDuringBackwardAreSafe) {
  // A tensor with history handed to another thread (a logger reading it) may be dropped there at
  // any moment, also while this thread's backward walks the tape that lists it or clear()
  // releases its node. The walk and clear() hold each tensor while they read it, so the other
  // thread's drop frees it only after. (A walk reading the tape without a handle, tried in session
  // 14, could read such a tensor after its death.) A stress test: under AddressSanitizer (CI) a
  // use after free is an error; the gradients must be right every step.
  tape().clear();
  Tensor w = scalar(0.5, DType::Float64).requires_grad_();
  {
    Logger logger([](const Tensor& t) { (void)t.item(); });
    for (int i = 0; i < 3000; ++i) {
      const double c = double(i % 7 + 1);
      logger.send(exp(w * c));  // on this thread's tape; only the logger will hold it
      Tensor y = tanh(w * c);
      y.backward();
      const double t = std::tanh(0.5 * c);
      ASSERT_NEAR(w.grad().item(), c * (1 - t * t), 1e-12) << "step " << i;
      w.zero_grad();
    }
  }  // waits for the logger to finish
  tape().clear();
  EXPECT_EQ(tape().size(), 0u);
}

TEST(GraphLifetime, ClearingANodeWhoseBackwardHoldsItsOwnOutputIsSafe) {
  // A VJP that (against record()'s rule) captures its own output makes a cycle: the output owns
  // the node, the node's VJP owns the output. Tape::clear() breaks it; dropping the VJP frees
  // the output, and with it the node being released.
  tape().clear();
  Tensor a = from_vector({1.0, 2.0}, {2}, DType::Float64).requires_grad_();
  WeakTensor weak;
  {
    Tensor out = mul(a.detach(), 3.0);
    Tensor y = record("keeps_its_output", out, {a},
                      [out](const Tensor& g, GradSink& s) { s.add(0, mul(g, 3.0)); });
    weak = WeakTensor(y);
  }
  EXPECT_FALSE(weak.expired());  // the cycle
  EXPECT_EQ(tape().size(), 1u);
  tape().clear();
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(tape().size(), 0u);
}

// ---- value lifetime: a value only nodes that never read it hold is freed (tape.hpp, Reads) ----

namespace {

/// The recorded output of op `op` on the tape (the last one), through Tape::outputs(): the only
/// way to reach a tensor the program holds no handle to.
Tensor last_output_of(const char* op) {
  Tensor found;
  for (const Tensor& t : tape().outputs())
    if (std::string(t.op()) == op) found = t;
  return found;
}

constexpr std::size_t kBig = 1024;  // 8 KiB of float64: values under 4 KiB are never freed early

}  // namespace

TEST(ValueLifetime, ValueHeldOnlyByNodesThatNeverReadItIsFreed) {
  tape().clear();
  Tensor a = arange(0.0, double(kBig), 1.0, DType::Float64).requires_grad_();
  Tensor b = full({kBig}, 10.0, DType::Float64).requires_grad_();
  Tensor y;
  {
    Tensor t = sub(a, b);  // read by nobody: add's VJP needs only shapes
    y = add(t, b);
    EXPECT_NO_THROW(t.data<double>());  // a handle is left: the value is kept
  }
  Tensor t = last_output_of("sub");
  ASSERT_TRUE(t.defined());
  EXPECT_TRUE(t.impl()->value_freed);
  EXPECT_EQ(t.shape(), (Shape{kBig}));  // shape, dtype and size stay for the gradients
  EXPECT_EQ(t.numel(), kBig);
  EXPECT_EQ(t.dtype(), DType::Float64);
  try {
    t.data<double>();
    ADD_FAILURE() << "reading a freed value must throw";
  } catch (const AutogradError& e) {
    EXPECT_NE(std::string(e.what()).find("was freed"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'sub'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.at(0), AutogradError);
  EXPECT_THROW(t.to_f64(), AutogradError);
  t = Tensor();
  // y = (a − b) + b: dy/da = 1, dy/db = −1 + 1 = 0.
  backward(y, ones({kBig}, DType::Float64));
  EXPECT_EQ(a.grad().to_f64(), xt::ones<double>({kBig}));
  EXPECT_EQ(b.grad().to_f64(), xt::zeros<double>({kBig}));
}

TEST(ValueLifetime, SmallValuesAreNotFreedEarly) {
  tape().clear();
  Tensor a = ones({511}, DType::Float64).requires_grad_();  // 4,088 bytes
  Tensor y;
  WeakTensor made;
  {
    Tensor t = add(a, a);
    y = add(t, a);
    made = WeakTensor(t);
  }
  EXPECT_FALSE(made.lock().impl()->value_freed);
  EXPECT_EQ(made.lock().at(510), 2.0);
}

TEST(ValueLifetime, ValueAnOpReadsIsKept) {
  tape().clear();
  Tensor a = full({kBig}, 1.5, DType::Float64).requires_grad_();
  Tensor b = full({kBig}, 3.0, DType::Float64).requires_grad_();
  Tensor y;
  WeakTensor sum_ab, product, doubled, squashed;
  {
    Tensor t = add(a, b);  // mul reads its inputs: kept
    Tensor p = mul(t, b);  // its consumer add reads nothing: freed
    Tensor u = add(a, a);  // sigmoid reads only its output: freed
    Tensor s = sigmoid(u);  // read by its own VJP: kept
    y = add(p, s);
    sum_ab = WeakTensor(t), product = WeakTensor(p), doubled = WeakTensor(u),
    squashed = WeakTensor(s);
  }
  EXPECT_FALSE(sum_ab.lock().impl()->value_freed);
  EXPECT_EQ(sum_ab.lock().at(kBig - 1), 4.5);
  EXPECT_TRUE(product.lock().impl()->value_freed);
  EXPECT_TRUE(doubled.lock().impl()->value_freed);
  EXPECT_FALSE(squashed.lock().impl()->value_freed);
  backward(y, ones({kBig}, DType::Float64));
  // y = (a + b)·b + σ(2a): dy/da = b + 2σ'(2a), dy/db = a + 2b.
  const double sg = 1 / (1 + std::exp(-3.0));
  for (std::size_t i : {std::size_t(0), kBig - 1}) {
    EXPECT_NEAR(a.grad().at(i), 3.0 + 2 * sg * (1 - sg), 1e-15);
    EXPECT_EQ(b.grad().at(i), 1.5 + 2 * 3.0);
  }
}

// Dropping the handles changes which memory the forward reuses, never a number: the gradients
// of a composed GRU are bit-identical whether its values are all kept or freed early.
TEST(ValueLifetime, GradientsAreBitIdenticalWithOrWithoutHandles) {
  Generator gen(3);
  GRU gru(GRUOptions(5, 64), gen);  // B = 16: every gate's (16, 64) value is 4 KiB
  gru.set_path(GRU::Path::Composed);
  Tensor x = randn({16, 7, 5}, gen);
  auto grads = [&](bool keep_all) {
    tape().clear();
    gru.zero_grad();
    Tensor y;
    {
      std::optional<detail::KeepAllValuesGuard> keep;
      if (keep_all) keep.emplace();
      GRU::Output o = gru.forward(x);
      y = sum(mul(o.output, o.output));
    }
    std::size_t freed = 0;
    for (const Tensor& t : tape().outputs()) freed += t.impl()->value_freed;
    if (keep_all)
      EXPECT_EQ(freed, 0u);
    else
      EXPECT_GT(freed, 7u * 10);  // select, chunks, sums before the gates: ~11 a step
    backward(y);
    std::vector<xt::xarray<double>> g;
    for (const Tensor& p : gru.parameters()) g.push_back(p.grad().to_f64());
    return g;
  };
  const auto with = grads(true), without = grads(false);
  ASSERT_EQ(with.size(), without.size());
  for (std::size_t i = 0; i < with.size(); ++i) EXPECT_EQ(with[i], without[i]) << "parameter " << i;
}

// The freed values go back to the pool during the forward: a chain of 200 recorded adds of
// 1 MiB tensors with no handle left on the intermediates holds a few values at a time, not 200.
TEST(ValueLifetime, ForwardChainReusesFreedValues) {
  tape().clear();
  Tensor w = zeros({1 << 18}).requires_grad_();  // 1 MiB of float32
  Tensor x = ones({1 << 18});
  std::vector<WeakTensor> made;
  for (int i = 0; i < 200; ++i) {
    x = add(x, w);
    made.emplace_back(x);
  }
  std::size_t freed = 0;
  for (std::size_t i = 0; i + 1 < made.size(); ++i) freed += made[i].lock().impl()->value_freed;
  EXPECT_EQ(freed, 199u);  // every one but the last (x still holds it)
  EXPECT_EQ(x.at(0), 1.0);
  backward(sum(x));
  EXPECT_EQ(w.grad().at(0), 200.0);
  EXPECT_EQ(w.grad().at((1 << 18) - 1), 200.0);
}

// reshape's backward moves a gradient that no one else holds into its input's gradient instead
// of copying it; a gradient someone still holds (retain_grad, a hook's copy) is copied and stays
// as it was. The numbers are the same either way.
TEST(ValueLifetime, ReshapeBackwardMovesOnlyAPrivateGradient) {
  for (int held : {0, 1, 2}) {  // 0: no one else; 1: y.retain_grad(); 2: a hook keeps a copy
    SCOPED_TRACE(held);
    tape().clear();
    Tensor x = arange(12.0, DType::Float64).requires_grad_();
    Tensor w = reshape(arange(12.0, DType::Float64), {3, 4});
    Tensor y = reshape(x, {3, 4});
    const double* seen = nullptr;
    Tensor kept;
    y.register_hook([&](const Tensor& g) {
      seen = g.data<double>().data();
      if (held == 2) kept = g;
    });
    if (held == 1) y.retain_grad();
    backward(sum(mul(mul(y, w), 2.0)));
    ASSERT_NE(seen, nullptr);
    ASSERT_EQ(x.grad().shape(), Shape{12});
    for (std::size_t i = 0; i < 12; ++i) EXPECT_EQ(x.grad().at(i), 2.0 * double(i));
    if (held == 0) {
      EXPECT_EQ(x.grad().data<double>().data(), seen);  // moved: the very same values
    } else {
      EXPECT_NE(x.grad().data<double>().data(), seen);  // copied
      const Tensor& other = held == 1 ? y.grad() : kept;
      ASSERT_EQ(other.shape(), (Shape{3, 4}));
      for (std::size_t i = 0; i < 12; ++i) EXPECT_EQ(other.at(i), 2.0 * double(i));
    }
  }
}

// Double backward through freed values: create_graph's recorded VJPs read only what they keep.
TEST(ValueLifetime, DoubleBackwardThroughFreedValues) {
  tape().clear();
  Tensor a = full({kBig}, 0.5, DType::Float64).requires_grad_();
  WeakTensor inner;
  Tensor y;
  {
    Tensor u = add(mul(a, a), a);  // freed: tanh reads its output
    y = sum(tanh(u));
    inner = WeakTensor(u);
  }
  EXPECT_TRUE(inner.lock().impl()->value_freed);
  std::vector<Tensor> g = grad(y, {a}, Tensor(), true, true);
  backward(sum(g[0]));
  const double av = 0.5, u = av * av + av, t = std::tanh(u), d = 1 - t * t;
  for (std::size_t i : {std::size_t(0), kBig - 1}) {
    // dy/da = d·(2a + 1); d²y/da² = −2t·d·(2a + 1)² + 2d
    EXPECT_NEAR(g[0].at(i), d * (2 * av + 1), 1e-14);
    EXPECT_NEAR(a.grad().at(i), -2 * t * d * (2 * av + 1) * (2 * av + 1) + 2 * d, 1e-13);
  }
}

// A value-lifetime count shared across threads: `side` (a view of h handed to a logger thread)
// and this thread's ops both hold h without reading it, so both count in h's unread_holders. The
// logger drops `side` whenever it likes, destroying its node there, while this thread records,
// releases and frees around h. Only the thread that recorded h writes its counts; a holder that
// goes away on another thread marks h as kept (its value then lives until h dies, like any
// value). Under ThreadSanitizer (CI) a racing count is an error; the gradients must be right.
TEST(ValueLifetime, IntermediateSharedWithAGraphDroppedOnAnotherThreadIsSafe) {
  tape().clear();
  {
    // One step, in order: the holder dropped on the other thread leaves h kept.
    Tensor x = full({kBig}, 0.25, DType::Float64).requires_grad_();
    Tensor h = mul(x, 2.0);
    Tensor side = reshape(h, {32, 32});
    Tensor z = add(h, 1.0);
    EXPECT_FALSE(h.impl()->keep_value);
    EXPECT_EQ(h.impl()->unread_holders, 2u);
    std::thread([s = std::move(side)]() mutable { s = Tensor(); }).join();
    EXPECT_TRUE(h.impl()->keep_value);
    EXPECT_EQ(h.impl()->unread_holders, 2u);  // not written by the other thread
    WeakTensor weak(h);
    h = Tensor();
    EXPECT_FALSE(weak.lock().impl()->value_freed);  // only z's node holds it, yet it is kept
    EXPECT_EQ(weak.lock().at(0), 0.5);
    sum(z).backward();
    EXPECT_EQ(x.grad().at(0), 2.0);
  }
  double seen = 0;
  std::optional<Logger> logger;
  logger.emplace([&](const Tensor& t) { seen += t.at(0); });  // reshape copied h
  Tensor x = full({kBig}, 0.25, DType::Float64).requires_grad_();
  int sent = 0;
  for (int i = 0; i < 2000; ++i) {
    Tensor h = mul(x, 2.0);                 // mul reads x, not its output: h may be freed early
    Tensor side = reshape(h, {32, 32});     // holds h, never reads it
    logger->send(std::move(side));
    ++sent;
    Tensor z = add(h, 1.0);                 // holds h, never reads it
    h = Tensor();                           // h is now held only by nodes that never read it
    Tensor loss = sum(mul(z, z));
    loss.backward();
    // loss = Σ (2x + 1)²: dloss/dx = 4 (2x + 1) = 6 at x = 0.25
    ASSERT_EQ(x.grad().at(0), 6.0) << "step " << i;
    ASSERT_EQ(x.grad().at(kBig - 1), 6.0) << "step " << i;
    x.zero_grad();
  }
  logger.reset();  // waits for the logger to finish
  EXPECT_EQ(seen, 0.5 * sent);  // the logger read every view it was handed
  tape().clear();
  EXPECT_EQ(tape().size(), 0u);
}

// ---- release as the pass goes (tape.cpp) ----------------------------------------------------------
// A backward without retain_graph releases each node as soon as its VJP has run (as PyTorch frees
// a node's saved tensors), so the memory of the graph comes back during the pass, not after it.

namespace {
/// A chain p_k = p_{k−1} ⊙ x_k (k = 1 … n−1, p_0 = x_0) of kBig-element float64 vectors, no handle
/// kept on any p_k; its root is Σ p_{n−1}. The test reaches p_k only through weak[k].
struct ProductChain {
  std::vector<Tensor> xs;
  std::vector<WeakTensor> weak;
  Tensor root;
  explicit ProductChain(int n) {
    for (int k = 0; k < n; ++k)
      xs.push_back(full({kBig}, 1.0 + 0.01 * k, DType::Float64).requires_grad_());
    Tensor p = xs[0];
    weak.emplace_back();  // p_0 is the leaf x_0
    for (int k = 1; k < n; ++k) {
      p = mul(p, xs[k]);
      weak.emplace_back(p);
    }
    root = sum(p);
  }
  /// dΣp/dx_k at every element: the product of the other x's.
  double expected_grad(int k) const {
    double g = 1;
    for (int j = 0; j < int(xs.size()); ++j)
      if (j != k) g *= 1.0 + 0.01 * j;
    return g;
  }
};
}  // namespace

TEST(ReleaseInPass, NodesThatRanAreReleasedAndTheirValuesFreedDuringThePass) {
  tape().clear();
  ProductChain chain(6);
  ASSERT_EQ(tape().size(), 6u);  // five muls and the sum
  // When p_2's gradient is complete (its hook runs, before its own node's VJP), the nodes of
  // p_3, p_4, p_5 and the sum have run: those tensors are gone, and p_2's value, read by p_3's
  // mul alone, is freed. p_1 and p_2 still have a node to run.
  bool seen = false;
  Tensor p2 = chain.weak[2].lock();
  p2.register_hook([&](const Tensor&) {
    seen = true;
    for (int k : {3, 4, 5}) EXPECT_TRUE(chain.weak[k].expired()) << "p_" << k;
    EXPECT_FALSE(chain.weak[1].expired());
    EXPECT_TRUE(chain.weak[2].lock().impl()->value_freed);
    EXPECT_FALSE(chain.weak[1].lock().impl()->value_freed);  // p_2's node reads it, still to run
    EXPECT_EQ(tape().size(), 2u);  // the muls of p_1 and p_2: nodes that ran are off the tape
    return Tensor();
  });
  p2 = Tensor();
  chain.root.backward();
  EXPECT_TRUE(seen);
  for (int k = 0; k < 6; ++k)
    for (std::size_t i : {std::size_t(0), kBig - 1})
      EXPECT_NEAR(chain.xs[k].grad().at(i), chain.expected_grad(k), 1e-12) << "x_" << k;
  EXPECT_EQ(tape().size(), 0u);
  for (int k = 1; k < 5; ++k) EXPECT_TRUE(chain.weak[k].expired()) << "p_" << k;
}

TEST(ReleaseInPass, RetainGraphReleasesNothingAndBothPassesAgree) {
  tape().clear();
  ProductChain chain(6);
  int pass = 0, seen = 0;
  Tensor p2 = chain.weak[2].lock();
  p2.register_hook([&](const Tensor&) {
    ++seen;
    const bool retained = pass == 1;
    for (int k : {3, 4, 5}) EXPECT_EQ(chain.weak[k].expired(), !retained) << "p_" << k;
    EXPECT_EQ(chain.weak[2].lock().impl()->value_freed, !retained);
    EXPECT_EQ(tape().size(), retained ? 6u : 2u);
    return Tensor();
  });
  p2 = Tensor();
  pass = 1;
  backward(chain.root, Tensor(), /*retain_graph=*/true);
  EXPECT_EQ(seen, 1);
  std::vector<xt::xarray<double>> first;
  for (Tensor& x : chain.xs) first.push_back(x.grad().to_f64()), x.zero_grad();
  pass = 2;
  backward(chain.root);  // the retained graph, this time released as the pass goes
  EXPECT_EQ(seen, 2);
  for (int k = 0; k < 6; ++k) EXPECT_EQ(chain.xs[k].grad().to_f64(), first[k]) << "x_" << k;
  EXPECT_EQ(tape().size(), 0u);
}

TEST(ReleaseInPass, ValuesStillToBeReadAreKept) {
  tape().clear();
  Tensor a = full({kBig}, 0.5, DType::Float64).requires_grad_();
  Tensor c = full({kBig}, 3.0, DType::Float64).requires_grad_();
  Tensor y;
  int seen = 0;
  {
    Tensor t = add(a, c);       // read by two muls: the first to run must not free it
    Tensor s = sigmoid(a);      // its own VJP reads it, after mul's has run
    y = add(add(mul(t, c), mul(t, a)), mul(s, c));
    // When their gradients are complete (hooks), every op reading them has run: t's value is
    // freed (add's VJP does not read it), s's is kept for sigmoid's own VJP.
    t.register_hook([&seen, w = WeakTensor(t)](const Tensor&) {
      ++seen;
      EXPECT_TRUE(w.lock().impl()->value_freed);
      return Tensor();
    });
    s.register_hook([&seen, w = WeakTensor(s)](const Tensor&) {
      ++seen;
      EXPECT_FALSE(w.lock().impl()->value_freed);
      return Tensor();
    });
  }
  backward(y, ones({kBig}, DType::Float64));
  EXPECT_EQ(seen, 2);
  // y = (a + c)·c + (a + c)·a + σ(a)·c: dy/da = c + (2a + c) + σ'(a)·c, dy/dc = (a + 2c) + a + σ(a)
  const double sg = 1 / (1 + std::exp(-0.5));
  for (std::size_t i : {std::size_t(0), kBig - 1}) {
    EXPECT_NEAR(a.grad().at(i), 3.0 + 4.0 + sg * (1 - sg) * 3.0, 1e-14);
    EXPECT_NEAR(c.grad().at(i), 6.5 + 0.5 + sg, 1e-14);
  }
}

TEST(ReleaseInPass, AnInputWhoseOtherHolderGoesMidPassKeepsItsGradient) {
  // h's consumer (the add) runs first and lets go of h while `side` still holds it; a hook that
  // runs next drops `side`. The pass itself must hold h until h's own node has run: else h, its
  // pending gradient and its node die there, and x's gradient misses h's part. (A handle on
  // another thread, or the helper's operands, can go the same way at any moment.)
  tape().clear();
  Tensor x = full({kBig}, 0.25, DType::Float64).requires_grad_();
  Tensor side = mul(x, 2.0);        // h: `side` is its only handle
  Tensor m = mul(x, 3.0);
  Tensor z = add(side, m);          // holds h and m
  m.register_hook([&side](const Tensor&) {
    side = Tensor();  // after the add ran, before h's node runs
    return Tensor();
  });
  m = Tensor();
  sum(z).backward();
  EXPECT_FALSE(side.defined());
  EXPECT_EQ(x.grad().at(0), 5.0);  // 2 through h, 3 through m
  EXPECT_EQ(x.grad().at(kBig - 1), 5.0);
}

TEST(ReleaseInPass, AFailedPassHasReleasedWhatRanAndABackwardAgainSaysSo) {
  tape().clear();
  ProductChain chain(4);
  Tensor p1 = chain.weak[1].lock();
  p1.register_hook([](const Tensor&) -> Tensor { throw ValueError("hook failed"); });
  p1 = Tensor();
  EXPECT_THROW(chain.root.backward(), ValueError);
  for (const Tensor& x : chain.xs) EXPECT_FALSE(x.grad().defined());  // nothing half-delivered
  try {
    chain.root.backward();
    ADD_FAILURE() << "a second backward through released nodes must throw";
  } catch (const AutogradError& e) {
    EXPECT_NE(std::string(e.what()).find("freed tape"), std::string::npos) << e.what();
  }
  tape().clear();
  EXPECT_EQ(tape().size(), 0u);
}

TEST(ReleaseInPass, AnInputIsFoundOnATapeCompactedBetweenItsNodeAndItsReader) {
  // The pass holds an input in the place of its node on the tape, found from the node's number:
  // exactly so many entries back unless entries in between were forgotten (Tape::compact), as
  // here, where 300 discarded ops lie between p (the last of a chain of 200) and its reader.
  // u, recorded first and held by the pass alone once the add has run, sits in the place a
  // plain count back would give for p: had p been put there, u and its gradient would be lost.
  auto run = [](bool with_discarded) {
    tape().clear();
    Tensor x = full({kBig}, 1.001, DType::Float64).requires_grad_();
    Tensor root;
    {
      Tensor u = mul(x, x);
      Tensor p = mul(x, 1.0);
      for (int k = 1; k < 200; ++k) p = mul(p, 1.0 + 1e-4 * k);
      if (with_discarded)
        for (int k = 0; k < 300; ++k) Tensor gone = mul(x, 2.0);  // recorded, then dropped
      root = sum(add(mul(p, x), u));
    }
    root.backward();
    EXPECT_EQ(tape().size(), 0u);
    return x.grad().to_f64();
  };
  const xt::xarray<double> plain = run(false), with_gap = run(true);
  EXPECT_EQ(with_gap, plain);  // bit for bit
  double c = 1.0;
  for (int k = 1; k < 200; ++k) c *= 1.0 + 1e-4 * k;
  EXPECT_NEAR(plain(0), 2 * 1.001 * c + 2 * 1.001, 1e-9);  // d(c·x² + x²)/dx
}

TEST(NestedPass, ABackwardOrGradOrTapeClearFromInsideABackwardIsAClearError) {
  // A pass started inside a pass would run the outer pass's pending nodes as its own and clear
  // the tape under it (it once ended in "node input 0 of 0"). It is refused, naming what to do;
  // the outer pass then fails cleanly (nothing half-delivered) and the thread goes on.
  for (int what = 0; what < 3; ++what) {
    tape().clear();
    Tensor x = full({4}, 2.0, DType::Float64).requires_grad_();
    Tensor a = full({4}, 3.0, DType::Float64).requires_grad_();
    Tensor inner = sum(mul(a, a));
    Tensor y = mul(x, x);
    y.register_hook([&](const Tensor&) -> Tensor {
      if (what == 0) inner.backward();
      if (what == 1) grad(inner, {a});
      if (what == 2) tape().clear();
      return Tensor();
    });
    Tensor z = sum(mul(y, x));
    try {
      z.backward();
      ADD_FAILURE() << "case " << what << ": a pass inside a pass must throw";
    } catch (const AutogradError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(what == 0 ? "backward: " : what == 1 ? "grad: " : "Tape::clear: "),
                std::string::npos) << msg;
      EXPECT_NE(msg.find("after that backward has returned"), std::string::npos) << msg;
    }
    EXPECT_FALSE(x.grad().defined());
    EXPECT_FALSE(a.grad().defined());
    inner.backward();  // outside any pass: fine
    EXPECT_EQ(a.grad().at(0), 6.0);
    Tensor w = sum(mul(x, x));
    w.backward();
    EXPECT_EQ(x.grad().at(0), 4.0);
  }
  tape().clear();
}
