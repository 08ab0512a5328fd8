// primitives — each primitive op of a model a user writes, forward + backward through the tape,
// one op at a time: the tapegrad side of tools/bench_vs_torch.py's `primitives` section, whose
// PyTorch side is tools/torch_primitives.py (the same cases, names, shapes and distributions).
//
//   primitives [--repeats R] [--case NAME] [--list]
//
// Each case builds its inputs (leaves that require grad) once, then times out = op(inputs) and
// backward(out, seed) (seed: a fixed random tensor of out's shape; none for a one-element out),
// the inputs' .grad cleared after each call, as PyTorch's `x.grad = None`. A repeat is a batch of
// calls lasting at least 20 ms; the time reported is the median over R repeats (default 7) of a
// batch's µs per call. One JSON object per case on stdout: {"case", "us", "repeats_us"}.
//
// Shapes: N = 256 rows, D = 1024 columns, float32, unless the case says otherwise.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "framework/tapegrad.hpp"

using namespace tapegrad;

namespace {

struct Case {
  std::string name;
  std::vector<Tensor> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> f;
};

constexpr std::size_t N = 256, D = 1024;

std::vector<Case> make_cases(Generator& gen) {
  auto normal = [&](const Shape& s) { return randn(s, gen).requires_grad_(); };
  // |N(0, 1)| + 0.5: the inputs of log, sqrt and the divisor of div.
  auto positive = [&](const Shape& s) { return add(abs(randn(s, gen)), 0.5).requires_grad_(); };
  std::vector<std::int64_t> targets(N), rows(512);
  for (std::size_t i = 0; i < N; ++i) targets[i] = std::int64_t(i * 37 % D);
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = std::int64_t(i * 7 % N);
  xt::xarray<std::int64_t> columns = xt::xarray<std::int64_t>::from_shape({N, 16});
  for (std::size_t i = 0; i < columns.size(); ++i) columns.flat(i) = std::int64_t(i * 13 % D);
  const Tensor mask = gt(randn({N, D}, gen), 0.0);             // half the elements
  const Tensor causal = gt(randn({128, 128}, gen), 0.0);        // a (T, T) mask over (B, T, T)
  std::vector<std::int64_t> ids(4096);                          // an embedding's lookups
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = std::int64_t(i * 7919 % 1000);
  using V = const std::vector<Tensor>&;
  return {
      {"add", {normal({N, D}), normal({N, D})}, [](V v) { return add(v[0], v[1]); }},
      {"add_row", {normal({N, D}), normal({D})}, [](V v) { return add(v[0], v[1]); }},       // + (D)
      {"add_col", {normal({N, D}), normal({N, 1})}, [](V v) { return add(v[0], v[1]); }},    // + (N, 1)
      {"sub", {normal({N, D}), normal({N, D})}, [](V v) { return sub(v[0], v[1]); }},
      {"mul", {normal({N, D}), normal({N, D})}, [](V v) { return mul(v[0], v[1]); }},
      {"mul_col", {normal({N, D}), normal({N, 1})}, [](V v) { return mul(v[0], v[1]); }},
      {"div", {normal({N, D}), positive({N, D})}, [](V v) { return div(v[0], v[1]); }},
      {"sum_all", {normal({N, D})}, [](V v) { return sum(v[0]); }},
      {"sum_ax0", {normal({N, D})}, [](V v) { return sum(v[0], Axes{0}); }},
      {"sum_ax1", {normal({N, D})}, [](V v) { return sum(v[0], Axes{1}); }},
      {"mean_ax1_keep", {normal({N, D})}, [](V v) { return mean(v[0], Axes{1}, true); }},
      {"mean_3d_ax02", {normal({64, 32, 128})}, [](V v) { return mean(v[0], Axes{0, 2}); }},
      {"max_ax1", {normal({N, D})}, [](V v) { return max(v[0], 1); }},
      {"max_ax0", {normal({N, D})}, [](V v) { return max(v[0], 0); }},
      {"softmax_last", {normal({N, D})}, [](V v) { return softmax(v[0], -1); }},
      {"softmax_ax0", {normal({N, D})}, [](V v) { return softmax(v[0], 0); }},
      {"log_softmax", {normal({N, D})}, [](V v) { return log_softmax(v[0], -1); }},
      {"cross_entropy", {normal({N, D})}, [targets](V v) { return cross_entropy(v[0], targets); }},
      {"mse", {normal({N, D}), normal({N, D})}, [](V v) { return mse(v[0], v[1]); }},
      {"relu", {normal({N, D})}, [](V v) { return relu(v[0]); }},
      {"sigmoid", {normal({N, D})}, [](V v) { return sigmoid(v[0]); }},
      {"tanh", {normal({N, D})}, [](V v) { return tanh(v[0]); }},
      {"exp", {normal({N, D})}, [](V v) { return exp(v[0]); }},
      {"log", {positive({N, D})}, [](V v) { return log(v[0]); }},
      {"sqrt", {positive({N, D})}, [](V v) { return sqrt(v[0]); }},
      {"pow2", {normal({N, D})}, [](V v) { return pow(v[0], 2.0); }},
      {"pow3", {normal({N, D})}, [](V v) { return pow(v[0], 3.0); }},
      {"abs", {normal({N, D})}, [](V v) { return abs(v[0]); }},
      {"clamp", {normal({N, D})}, [](V v) { return clamp(v[0], -0.5, 0.5); }},
      {"where", {normal({N, D}), normal({N, D})}, [mask](V v) { return where(mask, v[0], v[1]); }},
      {"masked_fill", {normal({N, D})}, [mask](V v) { return masked_fill(v[0], mask, 0.0); }},
      // attention's mask: (16, 128, 128) scores, a (128, 128) mask filled with −1e9
      {"masked_fill_bcast", {normal({16, 128, 128})},
       [causal](V v) { return masked_fill(v[0], causal, -1e9); }},
      {"transpose", {normal({N, D})}, [](V v) { return transpose(v[0]); }},
      {"permute3d", {normal({32, 64, 128})}, [](V v) { return permute(v[0], {2, 0, 1}); }},
      {"narrow_ax1", {normal({N, D})}, [](V v) { return narrow(v[0], 1, 100, 512); }},
      {"select_ax1", {normal({N, D})}, [](V v) { return select(v[0], 1, 7); }},
      {"concat_ax1", {normal({N, 256}), normal({N, 256}), normal({N, 256}), normal({N, 256})},
       [](V v) { return concat(v, 1); }},
      {"stack_ax0", {normal({N, 256}), normal({N, 256}), normal({N, 256}), normal({N, 256})},
       [](V v) { return stack(v, 0); }},
      {"chunk4_ax1", {normal({N, D})},  // the four chunks added up: (c0 + c1) + (c2 + c3)
       [](V v) {
         auto c = chunk(v[0], 4, 1);
         return add(add(c[0], c[1]), add(c[2], c[3]));
       }},
      {"index_select", {normal({N, D})}, [rows](V v) { return index_select(v[0], 0, rows); }},  // 512 rows
      {"gather_ax1", {normal({N, D})}, [columns](V v) { return gather(v[0], 1, columns); }},   // (N, 16)
      {"matmul", {normal({N, D}), normal({D, 256})}, [](V v) { return matmul(v[0], v[1]); }},
      {"bmm", {normal({16, 128, 64}), normal({16, 64, 128})}, [](V v) { return matmul(v[0], v[1]); }},
      {"linear", {normal({N, D}), normal({512, D}), normal({512})},
       [](V v) { return linear(v[0], v[1], v[2]); }},
      // (B, T, E) through a (E, E) layer: a transformer's projections
      {"linear_3d", {normal({16, 128, 256}), normal({256, 256}), normal({256})},
       [](V v) { return linear(v[0], v[1], v[2]); }},
      {"layernorm", {normal({N, D}), normal({D}), normal({D})},  // composed: (x − μ)/√(σ² + 1e-5)·w + b
       [](V v) {
         Tensor c = sub(v[0], mean(v[0], Axes{1}, true));
         Tensor var = mean(mul(c, c), Axes{1}, true);
         return add(mul(div(c, sqrt(add(var, 1e-5))), v[1]), v[2]);
       }},
      // ---- more of what user models do (session 34) ----
      {"neg", {normal({N, D})}, [](V v) { return neg(v[0]); }},
      {"rsub", {normal({N, D})}, [](V v) { return rsub(v[0], 1.0); }},  // 1 − a
      {"add_scalar", {normal({N, D})}, [](V v) { return add(v[0], 0.5); }},
      {"mul_scalar", {normal({N, D})}, [](V v) { return mul(v[0], 0.5); }},
      {"div_row", {normal({N, D}), positive({D})}, [](V v) { return div(v[0], v[1]); }},  // / (D)
      {"pow_tensor", {positive({N, D}), normal({N, D})}, [](V v) { return pow(v[0], v[1]); }},
      {"broadcast_to", {normal({D})}, [](V v) { return broadcast_to(v[0], {N, D}); }},
      {"cast_f64", {normal({N, D})}, [](V v) { return cast(v[0], DType::Float64); }},
      {"reshape", {normal({N, D})}, [](V v) { return reshape(v[0], {4 * std::ptrdiff_t(N), -1}); }},
      {"concat_ax0", {normal({64, D}), normal({64, D}), normal({64, D}), normal({64, D})},
       [](V v) { return concat(v, 0); }},
      {"mean_ax0", {normal({N, D})}, [](V v) { return mean(v[0], Axes{0}); }},
      {"softmax_3d", {normal({16, 128, 128})}, [](V v) { return softmax(v[0], -1); }},  // attention
      {"embedding", {normal({1000, 256})}, [ids](V v) { return index_select(v[0], 0, ids); }},  // 4096 ids
      {"index_add", {normal({512, D})}, [rows](V v) { return index_add({N, D}, 0, rows, v[0]); }},
      {"scatter_add", {normal({N, 16})}, [columns](V v) { return scatter_add({N, D}, 1, columns, v[0]); }},
  };
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int repeats = 7;
  std::string only;
  bool list = false;
  for (int a = 1; a < argc; ++a) {
    const bool has_value = a + 1 < argc;
    if (std::strcmp(argv[a], "--list") == 0) {
      list = true;
    } else if (std::strcmp(argv[a], "--repeats") == 0 && has_value) {
      char* end = nullptr;
      const long r = std::strtol(argv[++a], &end, 10);
      if (end == argv[a] || *end != '\0' || r < 1 || r > 1000) {
        fmt::print(stderr, "primitives: --repeats needs a whole number from 1 to 1000, not '{}'\n", argv[a]);
        return 2;
      }
      repeats = static_cast<int>(r);
    } else if (std::strcmp(argv[a], "--case") == 0 && has_value) {
      only = argv[++a];
    } else {
      fmt::print(stderr, "primitives: unknown option or missing value '{}' (usage: primitives "
                         "[--repeats R] [--case NAME] [--list])\n", argv[a]);
      return 2;
    }
  }
  Generator gen(0);
  std::vector<Case> cases = make_cases(gen);
  if (list) {
    for (const Case& c : cases) fmt::print("{}\n", c.name);
    return 0;
  }
  if (!only.empty() && std::none_of(cases.begin(), cases.end(), [&](const Case& c) { return c.name == only; })) {
    fmt::print(stderr, "primitives: no case '{}' (--list names them)\n", only);
    return 2;
  }
  for (Case& c : cases) {
    if (!only.empty() && c.name != only) continue;
    const Tensor first = c.f(c.inputs);
    const Tensor seed = first.numel() == 1 ? Tensor() : randn(first.shape(), gen, first.dtype());
    auto call = [&] {
      Tensor out = c.f(c.inputs);
      backward(out, seed);
      for (Tensor& x : c.inputs) x.zero_grad();
    };
    call();  // warm-up
    std::vector<double> us;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      int calls = 0;
      double dt = 0;
      do {
        call();
        ++calls;
        dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      } while (dt < 0.02);
      us.push_back(dt / calls * 1e6);
    }
    fmt::print("{{\"case\": \"{}\", \"us\": {:.3f}, \"repeats_us\": [{:.3f}]}}\n", c.name, median(us),
               fmt::join(us, ", "));
    std::fflush(stdout);
  }
  return 0;
}
