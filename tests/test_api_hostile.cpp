// The public API never crashes on bad arguments (issue 12): hostile shapes, offsets, sizes and
// threads give a tapegrad error naming the op and the shape, never a crash, a wrong result or an
// attempt to allocate an absurd amount of memory.
//
// Nothing here allocates more than a few MiB: every oversized request must be refused before any
// allocation (ShapeError above the element limit), and the out-of-memory test lowers the
// process's address-space limit so that a 1 GiB request fails inside malloc.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <string>
#include <thread>
#include <typeinfo>

#include "framework/tapegrad.hpp"
#include "layers/layers.hpp"

using namespace tapegrad;

namespace {

/// Runs f, expects exactly an E (or a subclass) whose message contains every string of `parts`.
template <class E>
void expect_error(const std::function<void()>& f, std::initializer_list<std::string> parts,
                  const char* what) {
  try {
    f();
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos)
          << what << ": message lacks \"" << p << "\": " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": expected " << typeid(E).name() << ", got " << typeid(e).name()
                  << ": " << e.what();
    return;
  }
  ADD_FAILURE() << what << ": no exception";
}

#define EXPECT_ERROR(E, stmt, ...) expect_error<E>([&] { stmt; }, {__VA_ARGS__}, #stmt)

constexpr std::size_t k2_20 = std::size_t(1) << 20;
constexpr std::size_t k2_30 = std::size_t(1) << 30;

}  // namespace

// ---- 1. every shape product and offset sum is overflow-checked ----------------------------------

TEST(ApiHostile, ShapeProductsAndOffsetsAreOverflowChecked) {
  // The reproduced cases, literally.
  EXPECT_ERROR(ShapeError, zeros({1ull << 32, 1ull << 32}), "zeros", "(4294967296, 4294967296)");
  EXPECT_ERROR(ShapeError, reshape(ones({4}), {(1ll << 62) + 1, 4}), "reshape",
               "4611686018427387905");
  EXPECT_ERROR(ShapeError, reshape(ones({4}), std::vector<std::ptrdiff_t>{(1ll << 62) + 1, 4}),
               "reshape", "4611686018427387905");
  EXPECT_ERROR(ShapeError, ones({4}).reshape({(1ll << 62) + 1, 4}), "reshape",
               "4611686018427387905");
  EXPECT_ERROR(ShapeError, from_vector({1, 2, 3, 4}, {(1ull << 62) + 1, 4}), "from_vector",
               "(4611686018427387905, 4)");
  EXPECT_ERROR(IndexError, pad_narrow(ones({1}), 0, SIZE_MAX, 1), "pad_narrow", "(1,)");

  // The same class elsewhere: products wrapping to a small number.
  EXPECT_ERROR(ShapeError, ones({(1ull << 62) + 1, 4}), "ones", "(4611686018427387905, 4)");
  EXPECT_ERROR(ShapeError, full({1ull << 63, 2}, 1.0), "full", "9223372036854775808");
  EXPECT_ERROR(ShapeError, reshape(ones({4}), Shape{(1ull << 62) + 1, 4}), "reshape",
               "4611686018427387905");
  EXPECT_ERROR(ShapeError, reshape(ones({4}), std::vector<std::ptrdiff_t>{-1, 1ll << 62, 4}),
               "reshape", "4611686018427387904");
  EXPECT_ERROR(ShapeError, randn({1ull << 32, 1ull << 32}), "randn", "(4294967296, 4294967296)");
  EXPECT_ERROR(ShapeError, uniform({1ull << 32, 1ull << 32}, 0.0, 1.0), "uniform",
               "(4294967296, 4294967296)");
  EXPECT_ERROR(ShapeError, one_hot({0, 1}, SIZE_MAX / 2 + 2), "one_hot", "(2, ");
  EXPECT_ERROR(ShapeError, broadcast_to(ones({1, 1}), {1ull << 32, 1ull << 32}), "broadcast_to",
               "(4294967296, 4294967296)");

  // Offsets: narrow / select / slicing / split / concat / stack never add past the limit.
  Tensor x = ones({3, 2});
  EXPECT_ERROR(IndexError, narrow(x, 0, SIZE_MAX, 2), "narrow", "(3, 2)");
  EXPECT_ERROR(IndexError, narrow(x, 0, 2, SIZE_MAX), "narrow", "(3, 2)");
  EXPECT_ERROR(IndexError, select(x, 0, PTRDIFF_MAX), "select", "(3, 2)");  // SIZE_MAX is -1: the last row
  EXPECT_ERROR(IndexError, select(x, 0, PTRDIFF_MIN), "select", "(3, 2)");
  EXPECT_ERROR(IndexError, select(x, -1, 2), "select", "(3, 2)");
  EXPECT_ERROR(IndexError, slice_rows(x, 1, SIZE_MAX), "narrow", "(3, 2)");
  EXPECT_ERROR(IndexError, pad_narrow(x, 0, 2, 4), "pad_narrow", "(3, 2)");
  EXPECT_ERROR(ShapeError, split(x, {SIZE_MAX, 4}), "split", "(3, 2)");
  // Zero-element parts with a big axis: no memory, but the joined axis exceeds the limit.
  Tensor big = zeros({k2_30, 0});
  EXPECT_ERROR(ShapeError, concat({big, big, big}, 0), "concat", "(1073741824, 0)");
  EXPECT_ERROR(ShapeError, stack({big, big, big}, 0), "stack", "(3, 1073741824, 0)");

  // gather / scatter / index_add with hostile shapes.
  xt::xarray<std::int64_t> idx = xt::zeros<std::int64_t>({2});
  EXPECT_ERROR(ShapeError, scatter_add({1ull << 62, 4}, 1, xt::zeros<std::int64_t>({2, 1}), ones({2, 1})),
               "scatter_add", "(4611686018427387904, 4)");
  EXPECT_ERROR(ShapeError, index_add({(1ull << 62) + 1, 4}, 1, {0}, ones({2, 1})), "index_add",
               "(4611686018427387905, 4)");
  EXPECT_ERROR(IndexError, gather(ones({2}), 0, xt::xarray<std::int64_t>{5}), "gather");

  // Layers multiply their sizes too.
  EXPECT_ERROR(ShapeError, GRUCell(GRUCellOptions(3, (1ull << 62) + 1)), "GRUCell");
  EXPECT_ERROR(ShapeError, LSTMCell(LSTMCellOptions(3, 1ull << 62)), "LSTMCell");
  EXPECT_ERROR(ShapeError, GRU(GRUOptions(3, 4).num_layers(1ull << 40)), "GRU");
  EXPECT_ERROR(ShapeError, Linear(1ull << 32, 1ull << 32), "Linear", "(4294967296, 4294967296)");
  Embedding emb(5, 2);
  EXPECT_ERROR(ShapeError, emb.forward({1, 2, 3, 4}, {(1ull << 62) + 1, 4}), "Embedding",
               "(4611686018427387905, 4");
  GRU gru(GRUOptions(3, 2));
  EXPECT_ERROR(ShapeError, gru.forward_ids({0, 1}, 1ull << 33, 1ull << 33, 3), "GRU::forward_ids",
               "(8589934592, 8589934592)");
}

// ---- 2. an absurd but not overflowing size is refused before allocating -------------------------

TEST(ApiHostile, AbsurdSizesAreRefusedBeforeAllocation) {
  // 2^40 elements (4 TiB of float32): no overflow, but far above the element limit.
  EXPECT_ERROR(ShapeError, zeros({k2_20, k2_20}), "zeros", "(1048576, 1048576)", "limit");
  EXPECT_ERROR(ShapeError, ones({1ull << 40}), "ones", "(1099511627776,)");
  EXPECT_ERROR(ShapeError, zeros({1ull << 40}, DType::Float64), "zeros", "(1099511627776,)");
  EXPECT_ERROR(ShapeError, randn({k2_20, k2_20}), "randn", "(1048576, 1048576)");
  EXPECT_ERROR(ShapeError, arange(0.0, 1e12), "arange", "limit");
  EXPECT_ERROR(ShapeError, arange(0.0, 1.0, 1e-300), "arange", "limit");
  EXPECT_ERROR(ShapeError, arange(-1e308, 1e308), "arange");
  // Broadcasting two small tensors into a huge one: refused by the op, not by the allocator.
  Tensor col = ones({k2_20, 1}), row = ones({1, k2_20});
  EXPECT_ERROR(ShapeError, add(col, row), "add", "(1048576, 1048576)");
  EXPECT_ERROR(ShapeError, mul(col, row), "mul", "(1048576, 1048576)");
  EXPECT_ERROR(ShapeError, where(col, col, row), "where", "(1048576, 1048576)");
  // matmul of an outer product.
  EXPECT_ERROR(ShapeError, matmul(col, row), "matmul", "(1048576, 1048576)");
  EXPECT_ERROR(ShapeError, matmul(row, row, true, false), "matmul", "(1048576, 1048576)");
  // A zero-size input whose result would be huge.
  EXPECT_ERROR(ShapeError, matmul(zeros({k2_30, 0}), zeros({0, 4})), "matmul", "(1073741824, 4)");
  EXPECT_ERROR(ShapeError, one_hot(std::vector<std::int64_t>(4, 0), 1ull << 30), "one_hot",
               "(4, 1073741824)");
  // Small legitimate calls still work.
  EXPECT_EQ(zeros({0, k2_30}).numel(), 0u);
  EXPECT_EQ(add(ones({3, 1}), ones({1, 4})).shape(), (Shape{3, 4}));
  EXPECT_EQ(arange(0.0, 5.0).numel(), 5u);
  EXPECT_EQ(arange(5.0, 0.0).numel(), 0u);
}

// ---- 3. zero-size layers and initialisers -----------------------------------------------------

TEST(ApiHostile, ZeroSizeLayersRaiseValueErrorAndInitIsANoOp) {
  // Every layer rejects a zero size with a ValueError naming the layer and the argument.
  EXPECT_ERROR(ValueError, Linear(3, 0), "Linear", "out_features");
  EXPECT_ERROR(ValueError, Linear(0, 3), "Linear", "in_features");
  EXPECT_ERROR(ValueError, Linear(LinearOptions(3, 0).bias(false)), "Linear", "out_features");
  EXPECT_ERROR(ValueError, RNNCell(RNNCellOptions(3, 0)), "RNNCell", "hidden_size");
  EXPECT_ERROR(ValueError, RNNCell(RNNCellOptions(0, 3)), "RNNCell", "input_size");
  EXPECT_ERROR(ValueError, GRUCell(GRUCellOptions(3, 0)), "GRUCell", "hidden_size");
  EXPECT_ERROR(ValueError, GRUCell(GRUCellOptions(0, 3)), "GRUCell", "input_size");
  EXPECT_ERROR(ValueError, LSTMCell(LSTMCellOptions(3, 0)), "LSTMCell", "hidden_size");
  EXPECT_ERROR(ValueError, LSTMCell(LSTMCellOptions(0, 3)), "LSTMCell", "input_size");
  EXPECT_ERROR(ValueError, GRU(GRUOptions(3, 0)), "GRU", "hidden_size");
  EXPECT_ERROR(ValueError, GRU(GRUOptions(0, 3)), "GRU", "input_size");
  EXPECT_ERROR(ValueError, GRU(GRUOptions(3, 3).num_layers(0)), "GRU", "num_layers");
  EXPECT_ERROR(ValueError, Embedding(0, 3), "Embedding", "num_embeddings");
  EXPECT_ERROR(ValueError, Embedding(3, 0), "Embedding", "embedding_dim");

  // init::* on zero-element tensors: a no-op (PyTorch's behaviour), never a division by zero.
  Tensor w0k = zeros({0, 5});  // fan_out 0
  Tensor wk0 = zeros({5, 0});  // fan_in 0
  EXPECT_EQ(init::fan_in(w0k), 5u);
  EXPECT_EQ(init::fan_in(wk0), 0u);
  init::kaiming_uniform_(w0k);
  init::kaiming_uniform_(wk0, std::sqrt(5.0));
  init::uniform_(w0k, -1.0, 1.0);
  init::normal_(wk0);
  EXPECT_EQ(w0k.shape(), (Shape{0, 5}));
  EXPECT_EQ(wk0.shape(), (Shape{5, 0}));
  // Non-empty weights are unchanged in behaviour: bound 1/sqrt(fan_in) with a = sqrt(5).
  Generator gen(3);
  Tensor w = zeros({4, 9});
  init::kaiming_uniform_(w, std::sqrt(5.0), gen);
  for (std::size_t i = 0; i < w.numel(); ++i) EXPECT_LE(std::abs(w.at(i)), 1.0 / 3.0 + 1e-6);
  EXPECT_ERROR(ShapeError, init::fan_in(zeros({3})), "fan_in", "(3,)");
}

// ---- 4. allocation failure becomes a tapegrad error --------------------------------------------

#if defined(__SANITIZE_ADDRESS__)
#define TAPEGRAD_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TAPEGRAD_TEST_ASAN 1
#endif
#endif

namespace {

/// Lowers RLIMIT_AS to the current address-space size plus `headroom` bytes for its lifetime, so
/// a larger allocation fails in malloc without touching memory.
class AddressSpaceLimit {
 public:
  explicit AddressSpaceLimit(std::size_t headroom) {
    getrlimit(RLIMIT_AS, &saved_);
    std::size_t pages = 0;
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%zu", &pages) != 1) pages = 0;
      std::fclose(f);
    }
    if (pages == 0) return;
    rlimit lim = saved_;
    lim.rlim_cur = pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE)) + headroom;
    ok_ = setrlimit(RLIMIT_AS, &lim) == 0;
  }
  ~AddressSpaceLimit() { setrlimit(RLIMIT_AS, &saved_); }
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
};

}  // namespace

TEST(ApiHostile, AllocationFailureBecomesMemoryError) {
#ifdef TAPEGRAD_TEST_ASAN
  GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space; RLIMIT_AS cannot be used";
#else
  // Operands made before the limit: 2 × 128 KiB.
  Tensor col = ones({1u << 14, 1}), row = ones({1, 1u << 14});
  Tensor a = ones({1u << 14, 1}, DType::Float64);
  std::string zeros_msg, add_msg, matmul_msg, expand_msg;
  {
    AddressSpaceLimit limit(std::size_t(256) << 20);  // 256 MiB of headroom
    ASSERT_TRUE(limit.ok()) << "could not set RLIMIT_AS";
    // Each request is 1 GiB: under the element limit, so it reaches the allocator, which fails.
    EXPECT_ERROR(MemoryError, zeros({1u << 28}), "zeros", "(268435456,)", "float32");
    EXPECT_ERROR(MemoryError, add(col, row), "add", "(16384, 16384)");
    EXPECT_ERROR(MemoryError, matmul(col, row), "matmul", "(16384, 16384)");
    EXPECT_ERROR(MemoryError, broadcast_to(a, {1u << 14, 1u << 13}), "broadcast_to",
                 "(16384, 8192)", "float64");
    EXPECT_ERROR(MemoryError, randn({1u << 28}), "randn", "(268435456,)");
    // A MemoryError is a tapegrad::Error like every other.
    EXPECT_ERROR(Error, full({1u << 28}, 2.0), "full");
  }
  // And nothing is left broken: small work still runs.
  EXPECT_DOUBLE_EQ(add(col, ones({1, 4})).sum().item(), double(1u << 14) * 4 * 2.0);
#endif
}

// ---- 5. tensors from another thread's tape ------------------------------------------------------

TEST(ApiHostile, TensorFromAnotherThreadsTapeIsAnError) {
  Tensor x = ones({2, 3}).requires_grad_();
  Tensor y;  // made on a worker thread's tape
  std::thread worker([&] { y = mul(x, 2.0); });
  worker.join();
  ASSERT_FALSE(y.is_leaf());

  // In an op on this thread: the op and the shape are named.
  EXPECT_ERROR(AutogradError, add(y, 1.0), "add_scalar", "another thread", "(2, 3)");
  EXPECT_ERROR(AutogradError, matmul(y, x, false, true), "matmul", "another thread", "(2, 3)");
  // In backward on this thread.
  EXPECT_ERROR(AutogradError, y.sum().backward(), "another thread");
  EXPECT_ERROR(AutogradError, y.backward(ones({2, 3})), "backward", "another thread", "(2, 3)");
  EXPECT_FALSE(x.grad().defined());
  // Values may still cross threads: without grad, or detached.
  {
    NoGradGuard no_grad;
    EXPECT_DOUBLE_EQ(add(y, 1.0).sum().item(), 18.0);
  }
  Tensor z = mul(y.detach(), x).sum();
  z.backward();
  EXPECT_DOUBLE_EQ(x.grad().sum().item(), 12.0);
  // A freed tape on this thread still gets its own message.
  Tensor w = mul(x, 3.0);
  w.sum().backward();
  EXPECT_ERROR(AutogradError, w.sum().backward(), "freed tape");
  tape().clear();
}

// ---- 6. negative sizes through signed parameters ---------------------------------------------

TEST(ApiHostile, NegativeSizesAreErrorsNamingTheOp) {
  Tensor x = ones({2, 6});
  EXPECT_ERROR(ShapeError, reshape(x, std::vector<std::ptrdiff_t>{-2, -6}), "reshape",
               "negative", "(2, 6)");
  EXPECT_ERROR(ShapeError, x.reshape({3, -4}), "reshape", "-4", "(2, 6)");
  EXPECT_ERROR(ShapeError, x.reshape({-1, -1}), "reshape", "-1", "(2, 6)");
  EXPECT_ERROR(ShapeError, x.reshape({-1, 5}), "reshape", "(2, 6)");
  EXPECT_ERROR(ShapeError, x.reshape({-1, 0}), "reshape", "(2, 6)");
  EXPECT_EQ(x.reshape({-1, 3}).shape(), (Shape{4, 3}));
  EXPECT_EQ(zeros({0, 3}).reshape({3, -1, 1}).shape(), (Shape{3, 0, 1}));
  // Signed axes and indices.
  EXPECT_ERROR(IndexError, x.size(-3), "size");
  EXPECT_ERROR(IndexError, narrow(x, -3, 0, 1), "narrow");
  EXPECT_ERROR(IndexError, unsqueeze(x, 4), "unsqueeze");
  EXPECT_ERROR(IndexError, index_select(x, 1, {0, -1}), "index_select", "-1");
  EXPECT_ERROR(IndexError, one_hot({-3}, 4), "one_hot", "-3");
  EXPECT_ERROR(IndexError, cross_entropy(ones({2, 3}), {0, -1}), "cross_entropy", "-1");
  EXPECT_ERROR(IndexError, gather(x, 1, xt::xarray<std::int64_t>{{0, -2}, {0, 0}}), "gather", "-2");
  EXPECT_ERROR(ValueError, arange(0.0, 1.0, 0.0), "arange");
  EXPECT_ERROR(ValueError, uniform({2}, 1.0, -1.0), "uniform", "(2,)");
}
