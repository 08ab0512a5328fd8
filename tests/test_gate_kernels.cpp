// The fused layers' gate passes (layers/fast/gate_kernels.hpp), every build of them this CPU runs
// (native, avx512, avx2): each against the GRU's and LSTM's equations evaluated in double
// precision with std::exp, for widths with and without a scalar tail, in float32 and float64, at
// ordinary and at saturating pre-activations; the builds against each other; how a process
// chooses one (it follows the GEMM kernel, TAPEGRAD_GEMM_KERNEL); and that the builds compiled
// for AVX2 and AVX-512 share no out-of-line function with the rest of the library other than
// xsimd's for their own vector type (one compiled for AVX-512 linked in place of the portable one
// would crash an older CPU).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/wait.h>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "framework/packed_gemm.hpp"
#include "framework/random.hpp"
#include "layers/fast/gate_kernels.hpp"
#include "arch_build_support.hpp"

using namespace tapegrad;
using fused::GateKernel;
using fused::GruRow;
using fused::LstmRow;

namespace {

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

template <class T>
std::vector<T> fill(std::size_t n, Generator& gen, double scale = 3.0) {
  std::vector<T> v(n);
  for (T& x : v) x = T(gen.uniform(-scale, scale));
  return v;
}

/// Pre-activations that saturate the gates: e^x overflows float32 beyond 88.7.
template <class T>
void saturate(std::vector<T>& v) {
  const double big[] = {100.0, -100.0, 1000.0, -1000.0, 89.0, -89.0, 40.0, -40.0};
  for (std::size_t i = 0; i < v.size(); i += 5) v[i] = T(big[(i / 5) % 8]);
}

/// |got − want| ≤ tol · (1 + |want|), element by element.
template <class T>
void expect_close(const std::vector<T>& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(double(got[i]))) << what << "[" << i << "] = " << got[i];
    ASSERT_LE(std::abs(double(got[i]) - want[i]), tol * (1 + std::abs(want[i])))
        << what << "[" << i << "]: " << got[i] << " vs " << want[i];
  }
}

template <class T>
double tolerance() {
  return sizeof(T) == 4 ? 2e-6 : 1e-14;
}

/// GRU forward of one row; out = [r z n gh_n] (4H) and h (H), as the layer stores them.
template <class T>
struct GruForwardCase {
  std::size_t H;
  std::vector<T> gi, bih, bhh, gh, hp;
  GruForwardCase(std::size_t H, Generator& gen, bool saturated) : H(H) {
    gi = fill<T>(3 * H, gen), bih = fill<T>(3 * H, gen, 0.5), bhh = fill<T>(3 * H, gen, 0.5);
    gh = fill<T>(3 * H, gen), hp = fill<T>(H, gen, 1.0);
    if (saturated) saturate(gi), saturate(gh);
  }
  std::vector<T> run(const GateKernel<T>& k, bool gi_in_row) const {
    std::vector<T> row(5 * H, T(-7));  // [r z n gh_n | h]
    if (gi_in_row) std::copy(gi.begin(), gi.end(), row.begin());  // dense input: gi is G's own columns
    GruRow<T> p{row.data(), row.data() + H, row.data() + 2 * H, row.data() + 3 * H, gh.data(), hp.data(),
                row.data() + 4 * H, nullptr, nullptr, nullptr, nullptr, nullptr};
    k.gru_forward(p, gi_in_row ? row.data() : gi.data(), bih.data(), bhh.data(), H);
    return row;
  }
  std::vector<double> reference() const {
    std::vector<double> out(5 * H);
    for (std::size_t j = 0; j < H; ++j) {
      const double r = sig(double(gi[j]) + bih[j] + gh[j] + bhh[j]);
      const double z = sig(double(gi[H + j]) + bih[H + j] + gh[H + j] + bhh[H + j]);
      const double ghn = double(gh[2 * H + j]) + bhh[2 * H + j];
      const double n = std::tanh(double(gi[2 * H + j]) + bih[2 * H + j] + r * ghn);
      out[j] = r, out[H + j] = z, out[2 * H + j] = n, out[3 * H + j] = ghn;
      out[4 * H + j] = (1 - z) * n + z * hp[j];
    }
    return out;
  }
};

/// GRU backward of one row; out = G's row (4H) | s (3H) | h (H) | sums (4H) | dwt (3H).
template <class T>
struct GruBackwardCase {
  std::size_t H;
  std::vector<T> row, hp, d, go, sums, dwt;
  GruBackwardCase(std::size_t H, Generator& gen) : H(H) {
    row = fill<T>(4 * H, gen, 1.0), hp = fill<T>(H, gen, 1.0), d = fill<T>(H, gen), go = fill<T>(H, gen);
    sums = fill<T>(4 * H, gen), dwt = fill<T>(3 * H, gen);
  }
  std::vector<T> run(const GateKernel<T>& k) const {
    std::vector<T> g = row, s(3 * H, T(-7)), h(H, T(-7)), su = sums, dw = dwt;
    GruRow<T> p{g.data(), g.data() + H, g.data() + 2 * H, g.data() + 3 * H, nullptr, hp.data(),
                h.data(), d.data(), go.data(), s.data(), su.data(), dw.data()};
    k.gru_backward(p, H);
    std::vector<T> out = g;
    for (const auto* v : {&s, &h, &su, &dw}) out.insert(out.end(), v->begin(), v->end());
    return out;
  }
  std::vector<double> reference() const {
    std::vector<double> g(4 * H), s(3 * H), h(H), su(sums.begin(), sums.end()), dw(dwt.begin(), dwt.end());
    for (std::size_t j = 0; j < H; ++j) {
      const double r = row[j], z = row[H + j], n = row[2 * H + j], ghn = row[3 * H + j];
      const double dh = double(d[j]) + go[j];
      const double da_n = dh * (1 - z) * (1 - n * n), da_r = da_n * ghn * r * (1 - r);
      const double da_z = dh * (hp[j] - n) * z * (1 - z), dghn = da_n * r;
      g[j] = da_r, g[H + j] = da_z, g[2 * H + j] = da_n, g[3 * H + j] = dghn;
      s[j] = da_r, s[H + j] = da_z, s[2 * H + j] = dghn, h[j] = dh * z;
      su[j] += da_r, su[H + j] += da_z, su[2 * H + j] += da_n, su[3 * H + j] += dghn;
      dw[j] += da_r, dw[H + j] += da_z, dw[2 * H + j] += da_n;
    }
    std::vector<double> out = g;
    for (const auto* v : {&s, &h, &su, &dw}) out.insert(out.end(), v->begin(), v->end());
    return out;
  }
};

/// LSTM forward of one row; out = G's row (5H) | y (2H).
template <class T>
struct LstmForwardCase {
  std::size_t H;
  std::vector<T> a, bias, cp;
  LstmForwardCase(std::size_t H, Generator& gen, bool saturated) : H(H) {
    a = fill<T>(5 * H, gen), bias = fill<T>(4 * H, gen, 0.5), cp = fill<T>(H, gen, 2.0);
    if (saturated) saturate(a);
  }
  std::vector<T> run(const GateKernel<T>& k) const {
    std::vector<T> g = a, y(2 * H, T(-7));
    LstmRow<T> p{g.data(), cp.data(), y.data(), nullptr, nullptr, nullptr, nullptr};
    k.lstm_forward(p, bias.data(), H);
    g.insert(g.end(), y.begin(), y.end());
    return g;
  }
  std::vector<double> reference() const {
    std::vector<double> g(7 * H);
    for (std::size_t j = 0; j < H; ++j) {
      const double i = sig(double(a[j]) + bias[j]), f = sig(double(a[H + j]) + bias[H + j]);
      const double n = std::tanh(double(a[2 * H + j]) + bias[2 * H + j]), o = sig(double(a[3 * H + j]) + bias[3 * H + j]);
      const double c = f * cp[j] + i * n, tc = std::tanh(c);
      g[j] = i, g[H + j] = f, g[2 * H + j] = n, g[3 * H + j] = o, g[4 * H + j] = tc;
      g[5 * H + j] = o * tc, g[6 * H + j] = c;
    }
    return g;
  }
};

/// LSTM backward of one row; out = G's row (5H) | dc (H) | sums (4H).
template <class T>
struct LstmBackwardCase {
  std::size_t H;
  std::vector<T> g, cp, gy, dh, dc, sums;
  LstmBackwardCase(std::size_t H, Generator& gen) : H(H) {
    g = fill<T>(5 * H, gen, 1.0), cp = fill<T>(H, gen, 2.0), gy = fill<T>(2 * H, gen), dh = fill<T>(H, gen);
    dc = fill<T>(H, gen), sums = fill<T>(4 * H, gen);
  }
  std::vector<T> run(const GateKernel<T>& k) const {
    std::vector<T> gg = g, c = dc, su = sums;
    LstmRow<T> p{gg.data(), cp.data(), nullptr, gy.data(), dh.data(), c.data(), su.data()};
    k.lstm_backward(p, H);
    gg.insert(gg.end(), c.begin(), c.end());
    gg.insert(gg.end(), su.begin(), su.end());
    return gg;
  }
  std::vector<double> reference() const {
    std::vector<double> gg(g.begin(), g.end()), c(H), su(sums.begin(), sums.end());
    for (std::size_t j = 0; j < H; ++j) {
      const double i = g[j], f = g[H + j], n = g[2 * H + j], o = g[3 * H + j], tc = g[4 * H + j];
      const double h = double(dh[j]) + gy[j];
      const double cc = double(dc[j]) + gy[H + j] + h * o * (1 - tc * tc);
      const double da[4] = {cc * n * i * (1 - i), cc * cp[j] * f * (1 - f), cc * i * (1 - n * n), h * tc * o * (1 - o)};
      for (int q = 0; q < 4; ++q) gg[q * H + j] = da[q], su[q * H + j] += da[q];
      c[j] = cc * f;
    }
    gg.insert(gg.end(), c.begin(), c.end());
    gg.insert(gg.end(), su.begin(), su.end());
    return gg;
  }
};

template <class T>
void check_every_build() {
  const auto& all = fused::gate_kernels<T>();
  ASSERT_FALSE(all.empty());
  // widths: below one vector, one vector, vectors and a tail (the scalar path), the layers' sizes
  for (std::size_t H : {1, 3, 8, 16, 17, 33, 64, 100, 512}) {
    for (bool saturated : {false, true}) {
      SCOPED_TRACE(fmt::format("{} H={} saturated={}", sizeof(T) == 4 ? "float32" : "float64", H, saturated));
      Generator gen(H * 10 + saturated);
      const GruForwardCase<T> gf(H, gen, saturated);
      const GruBackwardCase<T> gb(H, gen);
      const LstmForwardCase<T> lf(H, gen, saturated);
      const LstmBackwardCase<T> lb(H, gen);
      const std::vector<T> first[] = {gf.run(*all.front(), false), gb.run(*all.front()), lf.run(*all.front()),
                                      lb.run(*all.front())};
      for (const GateKernel<T>* k : all) {
        SCOPED_TRACE(k->name);
        const double tol = tolerance<T>();
        expect_close(gf.run(*k, false), gf.reference(), tol, "gru forward");
        expect_close(gf.run(*k, true), gf.reference(), tol, "gru forward, gi in G's row");
        expect_close(gb.run(*k), gb.reference(), tol, "gru backward");
        expect_close(lf.run(*k), lf.reference(), tol, "lstm forward");
        expect_close(lb.run(*k), lb.reference(), tol, "lstm backward");
        // and with the first build: the same to a few ulp (exp's polynomial with or without FMA)
        const std::vector<T> mine[] = {gf.run(*k, false), gb.run(*k), lf.run(*k), lb.run(*k)};
        const double ulps = 8 * std::numeric_limits<T>::epsilon();
        for (int c = 0; c < 4; ++c)
          expect_close(mine[c], std::vector<double>(first[c].begin(), first[c].end()), ulps, "against the first build");
      }
    }
  }
}

TEST(GateKernels, EveryBuildComputesTheGatesFloat32) { check_every_build<float>(); }
TEST(GateKernels, EveryBuildComputesTheGatesFloat64) { check_every_build<double>(); }

TEST(GateKernels, SaturatedGatesAreExactlyZeroOrOne) {
  // σ(−100) is 0 and tanh(±1000) is ±1 in every build, never NaN (e^x overflows to +inf).
  for (const GateKernel<float>* k : fused::gate_kernels<float>()) {
    SCOPED_TRACE(k->name);
    const std::size_t H = 19;  // vectors and a tail
    std::vector<float> a(5 * H, -1000.f), bias(4 * H, 0.f), cp(H, 0.f), y(2 * H);
    LstmRow<float> p{a.data(), cp.data(), y.data(), nullptr, nullptr, nullptr, nullptr};
    k->lstm_forward(p, bias.data(), H);
    for (std::size_t j = 0; j < H; ++j) {
      EXPECT_EQ(a[j], 0.f);           // i = σ(−1000)
      EXPECT_EQ(a[2 * H + j], -1.f);  // g = tanh(−1000)
      EXPECT_EQ(y[j], 0.f);           // h = o · tanh(c)
    }
  }
}

TEST(GateKernels, BuildsAreListedWidestFirst) {
  arch_builds::expect_builds_widest_first(fused::gate_kernels<float>(),
                                      [](const char* n) -> auto& { return fused::choose_gate_kernel<float>(n); });
  arch_builds::expect_builds_widest_first(fused::gate_kernels<double>(),
                                      [](const char* n) -> auto& { return fused::choose_gate_kernel<double>(n); });
}

TEST(GateKernels, TheyFollowTheGemmKernel) {
  arch_builds::expect_build_follows_gemm_kernel(
      fused::gate_kernels<float>(), [](const char* n) -> auto& { return fused::choose_gate_kernel<float>(n); },
      fused::gate_kernel<float>());
  arch_builds::expect_build_follows_gemm_kernel(
      fused::gate_kernels<double>(), [](const char* n) -> auto& { return fused::choose_gate_kernel<double>(n); },
      fused::gate_kernel<double>());
}

#if defined(TAPEGRAD_ARCH_OBJECTS)
/// Whether `name` is an instantiation of an xsimd template for this build's own vector type only
/// (at -O1, the sanitizer builds', GCC leaves xsimd's exp out of line): "xsimd::fma3<xsimd::avx2>"
/// or "xsimd::avx2" in the AVX2 build, "xsimd::avx512f" in the AVX-512 build, and no other
/// instruction set's type. Such a function can only be replaced by the same instantiation from a
/// file compiled for the same instruction set. One typed for another set (an AVX2 helper
/// instantiated in the AVX-512 file) could replace the AVX2 build's copy with AVX-512 code.
bool own_xsimd_instantiation(std::string name, bool avx512) {
  const std::vector<std::string> own = avx512 ? std::vector<std::string>{"xsimd::avx512f"}
                                              : std::vector<std::string>{"xsimd::fma3<xsimd::avx2>", "xsimd::avx2"};
  if (name.rfind("xsimd::", 0) != 0 && name.find(" xsimd::") == std::string::npos) return false;
  bool mentioned = false;
  for (const std::string& token : own)
    for (std::size_t at; (at = name.find(token)) != std::string::npos;) name.erase(at, token.size()), mentioned = true;
  for (const char* other : {"xsimd::sse", "xsimd::avx", "xsimd::fma", "xsimd::neon", "xsimd::sve", "xsimd::wasm"})
    if (name.find(other) != std::string::npos) return false;
  return mentioned;
}

TEST(GateKernels, SharesNoCodeBetweenBuilds) {
  // Every function the AVX2 and AVX-512 object files (gate passes, GEMM kernel, vector math) may
  // hand the linker to choose between copies (weak and unique symbols) must be in that build's own
  // namespace, or xsimd's for that build's own vector type: any other could replace the portable
  // copy of the same function elsewhere.
  std::istringstream objects(TAPEGRAD_ARCH_OBJECTS);
  std::string object;
  int checked = 0;
  while (std::getline(objects, object, '|')) {
    const bool avx512 = object.find("avx512") != std::string::npos;
    const std::string arch = avx512 ? "avx512" : "avx2";
    if (object.find('\'') != std::string::npos) GTEST_SKIP() << "a quote in the build's path: " << object;
    FILE* nm = popen(("nm -C --defined-only '" + object + "' 2>/dev/null").c_str(), "r");
    if (!nm) GTEST_SKIP() << "cannot run nm";
    char line[4096];
    int symbols = 0;
    while (std::fgets(line, sizeof line, nm)) {
      std::string s(line);
      if (!s.empty() && s.back() == '\n') s.pop_back();
      if (s.size() < 20) continue;
      ++symbols;
      const char kind = s[17];  // "<16 hex digits> <kind> <name>"
      if (kind != 'W' && kind != 'V' && kind != 'u') continue;
      const std::string name = s.substr(19);
      // demangled, or mangled behind a sanitizer's prefix (__odr_asan._ZN8tapegrad5fused4avx2…)
      const std::string mangled = std::to_string(arch.size()) + arch;
      bool own = false;
      for (const char* ns : {"fused", "detail"})
        own = own || name.find(fmt::format("tapegrad::{}::{}::", ns, arch)) != std::string::npos ||
              name.find(fmt::format("8tapegrad{}{}{}", std::strlen(ns), ns, mangled)) != std::string::npos;
      const bool runtime = name.rfind("DW.ref.__gxx_personality_v0", 0) == 0;
      EXPECT_TRUE(own || runtime || own_xsimd_instantiation(name, avx512)) << object << ": " << name;
    }
    const int rc = pclose(nm);
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 127) GTEST_SKIP() << "no nm (binutils) here";
    ASSERT_TRUE(rc == 0 && symbols > 0) << "nm could not read " << object;
    ++checked;
  }
  EXPECT_EQ(checked, 6);  // {gate_kernels, packed_gemm, vector_math}_{avx2, avx512}
}

TEST(GateKernels, OwnXsimdInstantiationsAreRecognised) {
  // the rule above on the names GCC 12 printed for the sanitizer builds' out-of-line exp
  EXPECT_TRUE(own_xsimd_instantiation("xsimd::batch<float, xsimd::fma3<xsimd::avx2> > xsimd::kernel::detail::exp<"
                                      "(xsimd::kernel::detail::exp_reduction_tag)0, xsimd::fma3<xsimd::avx2> >("
                                      "xsimd::batch<float, xsimd::fma3<xsimd::avx2> > const&)", false));
  EXPECT_TRUE(own_xsimd_instantiation("xsimd::kernel::detail::exp_reduction<float, xsimd::avx512f, (xsimd::kernel::"
                                      "detail::exp_reduction_tag)0>::approx(xsimd::batch<float, xsimd::avx512f> const&)", true));
  // typed for another instruction set than the file's, or not xsimd's at all
  EXPECT_FALSE(own_xsimd_instantiation("xsimd::batch<float, xsimd::fma3<xsimd::avx2> > xsimd::kernel::detail::exp<"
                                       "(xsimd::kernel::detail::exp_reduction_tag)0, xsimd::fma3<xsimd::avx2> >("
                                       "xsimd::batch<float, xsimd::fma3<xsimd::avx2> > const&)", true));
  EXPECT_FALSE(own_xsimd_instantiation("xsimd::batch<float, xsimd::avx512f> xsimd::kernel::split(xsimd::batch<float, "
                                       "xsimd::avx512f> const&, xsimd::batch<float, xsimd::avx2>&)", true));
  EXPECT_FALSE(own_xsimd_instantiation("xsimd::batch<float, xsimd::sse2> xsimd::exp<float, xsimd::sse2>(xsimd::batch<"
                                       "float, xsimd::sse2> const&)", false));
  EXPECT_FALSE(own_xsimd_instantiation("float const& std::min<float>(float const&, float const&)", false));
  EXPECT_FALSE(own_xsimd_instantiation("xsimd::detail::some_scalar_helper(float)", false));
}
#endif

}  // namespace
