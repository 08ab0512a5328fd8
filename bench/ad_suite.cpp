// ad_suite — the cheap-gradient principle, measured: for each case, the time of the function
// alone (no tape) and of the function with its gradient (recorded forward + backward), and their
// ratio, in the style of ADBench (Adept reports gradient/function < 4, FastAD 1.2–3.2).
//
//   ad_suite [--repeats R] [--case NAME]   (prints one JSON object per case and a table;
//                                           --case: only that case, e.g. for a profiler)
//
// Each repeat times a batch of function calls, then a batch of gradient calls (each ≥ 20 ms):
// the two alternate, and the ratio reported is the median over repeats of gradient/function.
//
// Cases (float64 unless said):
//   scalar_loop   y = Σ_{i<1000} x·c_i + x²·d_i over a 0-d x: 3000 scalar-size ops, tape-bound
//   logsumexp     log Σ exp(x − max x) + max x, x of 10,000 elements
//   product_chain y = Σ (x_1 ⊙ x_2 ⊙ … ⊙ x_64), x_k of 256 elements
//   matmul        y = Σ (A @ B), 128 × 128 float32
//   gru_step      one GRUCell step, B = 32, in = H = 128, float32, y = Σ h'
//   lstm_step     one LSTMCell step, B = 32, in = H = 128, float32, y = Σ h' + Σ c'
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

namespace {

/// µs per call of fn, over one batch of calls lasting at least 20 ms.
double batch_us(const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  int inner = 0;
  double dt = 0;
  do {
    fn();
    ++inner;
    dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (dt < 0.02);
  return dt / inner * 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Timing {
  double function_us, gradient_us, ratio;
};

/// The function's and the gradient's batches alternate, repeat after repeat, so that a slow
/// spell of the machine falls on both rather than on one of them; the ratio is the median of
/// each repeat's gradient/function (two batches timed back to back), the times are medians too.
Timing alternated(const std::function<void()>& function, const std::function<void()>& gradient,
                  int repeats) {
  function();  // warm-up
  gradient();
  std::vector<double> f, g, r;
  for (int i = 0; i < repeats; ++i) {
    f.push_back(batch_us(function));
    g.push_back(batch_us(gradient));
    r.push_back(g.back() / f.back());
  }
  return {median(f), median(g), median(r)};
}

struct Case {
  const char* name;
  std::vector<Tensor> inputs;
  std::function<Tensor()> f;
};

}  // namespace

int main(int argc, char** argv) {
  int repeats = 7;
  std::string only;
  for (int a = 1; a + 1 < argc; a += 2) {
    if (std::strcmp(argv[a], "--repeats") == 0) {
      char* end = nullptr;
      const long r = std::strtol(argv[a + 1], &end, 10);
      if (end == argv[a + 1] || *end != '\0' || r < 1 || r > 1000) {
        fmt::print(stderr, "ad_suite: --repeats needs a whole number from 1 to 1000, not '{}'\n",
                   argv[a + 1]);
        return 2;
      }
      repeats = static_cast<int>(r);
    } else if (std::strcmp(argv[a], "--case") == 0) {
      only = argv[a + 1];
    } else {
      fmt::print(stderr, "ad_suite: unknown option '{}' (usage: ad_suite [--repeats R] [--case NAME])\n", argv[a]);
      return 2;
    }
  }
  if (argc % 2 == 0) {
    fmt::print(stderr, "ad_suite: option '{}' needs a value\n", argv[argc - 1]);
    return 2;
  }
  Generator gen(0);
  std::vector<Case> cases;

  {
    Tensor x = scalar(0.3, DType::Float64).requires_grad_();
    std::vector<double> c(1000), d(1000);
    for (int i = 0; i < 1000; ++i) c[i] = 1.0 / (i + 1), d[i] = 0.5 / (i + 2);
    cases.push_back({"scalar_loop", {x}, [x, c, d] {
                       Tensor acc = scalar(0.0, DType::Float64);
                       for (int i = 0; i < 1000; ++i) acc = acc + x * c[i] + mul(x, x) * d[i];
                       return acc;
                     }});
  }
  {
    Tensor x = randn({10000}, gen, DType::Float64).requires_grad_();
    cases.push_back({"logsumexp", {x}, [x] {
                       Tensor m = max(x, 0).detach();
                       return add(log(sum(exp(sub(x, m)))), m);
                     }});
  }
  {
    std::vector<Tensor> xs;
    for (int k = 0; k < 64; ++k) xs.push_back(uniform({256}, 0.9, 1.1, gen, DType::Float64).requires_grad_());
    cases.push_back({"product_chain", xs, [xs] {
                       Tensor p = xs[0];
                       for (std::size_t k = 1; k < xs.size(); ++k) p = mul(p, xs[k]);
                       return sum(p);
                     }});
  }
  {
    Tensor A = randn({128, 128}, gen, DType::Float32).requires_grad_(), B = randn({128, 128}, gen, DType::Float32).requires_grad_();
    cases.push_back({"matmul", {A, B}, [A, B] { return sum(matmul(A, B)); }});
  }
  {
    auto cell = std::make_shared<GRUCell>(GRUCellOptions(128, 128), gen);
    Tensor x = randn({32, 128}, gen, DType::Float32), h = randn({32, 128}, gen, DType::Float32);
    cases.push_back({"gru_step", cell->parameters(), [cell, x, h] { return sum(cell->forward(x, h)); }});
  }
  {
    auto cell = std::make_shared<LSTMCell>(LSTMCellOptions(128, 128), gen);
    Tensor x = randn({32, 128}, gen, DType::Float32), h = randn({32, 128}, gen, DType::Float32),
           c = randn({32, 128}, gen, DType::Float32);
    cases.push_back({"lstm_step", cell->parameters(), [cell, x, h, c] {
                       LSTMCell::State s = cell->forward(x, h, c);
                       return add(sum(s.h), sum(s.c));
                     }});
  }

  if (!only.empty() &&
      std::none_of(cases.begin(), cases.end(), [&](const Case& k) { return only == k.name; })) {
    fmt::print(stderr, "ad_suite: no case named '{}'\n", only);
    return 2;
  }
  fmt::print("{:<14} {:>12} {:>12} {:>8}\n", "case", "function µs", "gradient µs", "ratio");
  for (Case& k : cases) {
    if (!only.empty() && only != k.name) continue;
    const Timing t = alternated(
        [&] {
          NoGradGuard no_grad;
          k.f();
        },
        [&] {
          for (Tensor& p : k.inputs) p.zero_grad();
          k.f().backward();
        },
        repeats);
    fmt::print("{:<14} {:>12.2f} {:>12.2f} {:>8.2f}\n", k.name, t.function_us, t.gradient_us, t.ratio);
    fmt::print(stderr, "{{\"case\": \"{}\", \"function_us\": {:.3f}, \"gradient_us\": {:.3f}, \"ratio\": {:.3f}}}\n",
               k.name, t.function_us, t.gradient_us, t.ratio);
  }
  return 0;
}
