// Shared by the PyTorch-parity tests (test_layers.cpp, test_layers_breadth.cpp): a fixture file
// made by tools/make_fixtures.py, read in float64 and float32, and the elementwise comparison.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "framework/xtensor_config.hpp"  // before any xtensor header: fixes xt::xarray's allocator
#include "framework/module.hpp"
#include "framework/npz.hpp"
#include "framework/ops.hpp"

#ifndef TAPEGRAD_FIXTURE_DIR
#define TAPEGRAD_FIXTURE_DIR "tests/fixtures"
#endif

namespace tapegrad::fixture {

/// A fixture's file suffix, dtype and tolerance: float64 to 1e-10, float32 to 1e-5.
struct Precision {
  const char* suffix;
  DType dtype;
  double tol;
};
inline const Precision kPrecisions[] = {{"f64", DType::Float64, 1e-10}, {"f32", DType::Float32, 1e-5}};

/// One fixture file: "<name>_<suffix>.npz".
struct Fixture {
  Fixture(const std::string& name, const Precision& p)
      : name(name),
        path(std::string(TAPEGRAD_FIXTURE_DIR) + "/" + name + "_" + p.suffix + ".npz"),
        archive(npz::load_npz(path)),
        precision(p) {}

  /// A float array as a leaf tensor (optionally requiring grad).
  Tensor get(const std::string& key, bool requires_grad = false) const {
    Tensor t = from_npz_array(npz::find(archive, key, path), path + ": " + key);
    EXPECT_EQ(t.dtype(), precision.dtype) << key;
    if (requires_grad) t.requires_grad_();
    return t;
  }
  std::vector<std::int64_t> ids(const std::string& key) const {
    return npz::find(archive, key, path).to_vector<std::int64_t>();
  }
  std::int64_t integer(const std::string& key) const { return ids(key).at(0); }
  /// An int64 0/1 array as a float 0/1 tensor of the file's dtype (a boolean mask).
  Tensor mask(const std::string& key) const {
    const npz::Array& a = npz::find(archive, key, path);
    std::vector<double> v;
    for (std::int64_t x : a.to_vector<std::int64_t>()) v.push_back(double(x));
    return from_vector(v, Shape(a.shape.begin(), a.shape.end()), precision.dtype);
  }
  /// Loads the module's parameters from the file (keys = the parameter names) after converting
  /// the module to the file's dtype.
  void load_into(Module& m) const {
    m.to(precision.dtype);
    load_state(path, m, /*strict=*/true);
  }

  std::string name, path;
  npz::Archive archive;
  Precision precision;
};

/// |actual − expected| ≤ tol · max(1, |expected|) elementwise, same shape and dtype.
/// TAPEGRAD_PRINT_ERRORS=1 prints every comparison's worst relative error.
inline void expect_close(const Tensor& actual, const Tensor& expected, double tol, const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << ": undefined";
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  EXPECT_EQ(actual.dtype(), expected.dtype()) << what;
  xt::xarray<double> a = actual.to_f64(), e = expected.to_f64();
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    double err = std::fabs(a.data()[i] - e.data()[i]) / std::max(1.0, std::fabs(e.data()[i]));
    if (!(err <= worst)) worst = err, at = i;
  }
  if (std::getenv("TAPEGRAD_PRINT_ERRORS"))
    std::printf("  %-40s %-8s worst rel. error %.3g\n", what.c_str(), dtype_name(actual.dtype()), worst);
  EXPECT_LE(worst, tol) << what << ": worst at flat index " << at << ": " << a.data()[at]
                        << " vs torch " << e.data()[at];
}

}  // namespace tapegrad::fixture
