// Tests for framework/npz: round trips, numpy-made files, broken files, atomic writes.
// The files under tests/data/npz/ come from tools/make_broken_npz.py.
#include "framework/npz.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>

#ifndef TAPEGRAD_TEST_DATA_DIR
#define TAPEGRAD_TEST_DATA_DIR "tests/data"
#endif

namespace fs = std::filesystem;
using namespace tapegrad;
using namespace tapegrad::npz;

namespace {

std::string data_file(const std::string& name) {
  return std::string(TAPEGRAD_TEST_DATA_DIR) + "/npz/" + name;
}

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Expects `f` to throw FileError whose message contains every one of `parts`.
void expect_file_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no FileError thrown; expected " << parts.front();
  } catch (const FileError& e) {
    for (const auto& part : parts)
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message: " << e.what() << "\nmissing: " << part;
  }
}

Array raw(DType dtype, std::vector<std::size_t> shape, std::vector<unsigned char> bytes) {
  return Array{dtype, std::move(shape), std::move(bytes)};
}

/// One array of every dtype, plus a 0-d and two empty ones.
Archive sample_archive() {
  const float f32[] = {0.5f, -1.25f, 3.0f, 1e-30f, 7.0f, -0.0f};
  const double f64[] = {1.5, -2.25, 1e300};
  const std::int32_t i32[] = {1, -2, 3, 2147483647};
  const std::int64_t i64[] = {INT64_MIN, INT64_MAX, 7};
  const double scalar = 3.5;
  return {{"f32", Array::from_f32({2, 3}, f32)},
          {"f64", Array::from_f64({3}, f64)},
          {"i32", Array::from_i32({2, 2}, i32)},
          {"i64", Array::from_i64({3, 1}, i64)},
          {"u8", raw(DType::UInt8, {3}, {0, 1, 255})},
          {"b", raw(DType::Bool, {1, 3}, {1, 0, 1})},
          {"scalar", Array::from_f64({}, &scalar)},
          {"empty", Array::from_f32({0, 3}, nullptr)},
          {"empty_i64", Array::from_i64({4, 0}, nullptr)}};
}

void expect_same(const Array& a, const Array& b) {
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.shape, b.shape);
  EXPECT_EQ(a.data, b.data);
}

/// A fresh directory under the test temp dir, removed afterwards.
class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "tapegrad_npz_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

// ---------------------------------------------------------------------------------------------
// Round trips.

class RoundTrip : public TempDir, public ::testing::WithParamInterface<bool> {};

TEST_P(RoundTrip, NpzKeepsEveryDtypeShapeAndOrder) {
  const Archive saved = sample_archive();
  save_npz(path("a.npz"), saved, /*compress=*/GetParam());
  const Archive loaded = load_npz(path("a.npz"));
  ASSERT_EQ(loaded.size(), saved.size());
  for (std::size_t i = 0; i < saved.size(); ++i) {
    SCOPED_TRACE(saved[i].first);
    EXPECT_EQ(loaded[i].first, saved[i].first);
    expect_same(loaded[i].second, saved[i].second);
  }
  EXPECT_EQ(listing(), std::vector<std::string>{"a.npz"});  // no temporary left behind
}

TEST_P(RoundTrip, FromMemoryMatchesFromFile) {
  save_npz(path("a.npz"), sample_archive(), GetParam());
  const auto bytes = read_bytes(path("a.npz"));
  const Archive loaded = load_npz_from_memory(bytes.data(), bytes.size(), "mem");
  EXPECT_EQ(loaded.size(), sample_archive().size());
  expect_same(find(loaded, "i64", "mem"), find(sample_archive(), "i64", "sample"));
}

INSTANTIATE_TEST_SUITE_P(StoredAndDeflated, RoundTrip, ::testing::Bool());

TEST_F(TempDir, NpyRoundTripsEveryDtype) {
  for (const auto& [name, array] : sample_archive()) {
    SCOPED_TRACE(name);
    save_npy(path(name + ".npy"), array);
    expect_same(load_npy(path(name + ".npy")), array);
    const auto bytes = read_bytes(path(name + ".npy"));
    expect_same(load_npy_from_memory(bytes.data(), bytes.size(), name), array);
    EXPECT_EQ((bytes.size() - array.data.size()) % 64, 0u);  // data aligned like numpy's
  }
}

TEST_F(TempDir, EmptyArchiveRoundTrips) {
  save_npz(path("empty.npz"), {});
  EXPECT_TRUE(load_npz(path("empty.npz")).empty());
}

// ---------------------------------------------------------------------------------------------
// Files written by numpy.

void expect_sample_values(const Archive& a, const std::string& file) {
  EXPECT_EQ(a.size(), 8u);
  EXPECT_EQ(a.front().first, "f32");  // file order kept
  const Array& f32 = find(a, "f32", file);
  EXPECT_EQ(f32.shape, (std::vector<std::size_t>{2, 3}));
  EXPECT_EQ(f32.to_vector<float>(), (std::vector<float>{0, 0.25f, 0.5f, 0.75f, 1, 1.25f}));
  EXPECT_EQ(find(a, "f64", file).to_vector<double>(), (std::vector<double>{1.5, -2.25, 1e300}));
  EXPECT_EQ(find(a, "i32", file).to_vector<std::int32_t>(),
            (std::vector<std::int32_t>{1, -2, 3, 2147483647}));
  EXPECT_EQ(find(a, "i64", file).to_vector<std::int64_t>(),
            (std::vector<std::int64_t>{INT64_MIN, INT64_MAX, 7}));
  EXPECT_EQ(find(a, "u8", file).to_vector<std::uint8_t>(), (std::vector<std::uint8_t>{0, 1, 255}));
  EXPECT_EQ(find(a, "b", file).to_vector<bool>(), (std::vector<bool>{true, false, true}));
  const Array& scalar = find(a, "scalar", file);
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.to_vector<double>(), std::vector<double>{3.5});
  const Array& empty = find(a, "empty", file);
  EXPECT_EQ(empty.shape, (std::vector<std::size_t>{0, 3}));
  EXPECT_EQ(empty.numel(), 0u);
}

TEST(NumpyFiles, Savez) {
  expect_sample_values(load_npz(data_file("numpy_savez.npz")), "numpy_savez.npz");
}

TEST(NumpyFiles, SavezCompressed) {
  const std::string file = data_file("numpy_savez_compressed.npz");
  expect_sample_values(load_npz(file), file);
  const auto bytes = read_bytes(file);
  expect_sample_values(load_npz_from_memory(bytes.data(), bytes.size(), "mem"), "mem");
}

TEST(NumpyFiles, NpyVersions1To3) {
  std::vector<double> expected;
  for (int i = 0; i < 12; ++i) expected.push_back(i - 5.5);
  for (const char* file : {"numpy_v1.npy", "numpy_v2.npy", "numpy_v3.npy"}) {
    SCOPED_TRACE(file);
    const Array a = load_npy(data_file(file));
    EXPECT_EQ(a.dtype, DType::Float64);
    EXPECT_EQ(a.shape, (std::vector<std::size_t>{3, 4}));
    EXPECT_EQ(a.to_vector<double>(), expected);
  }
}

TEST(NumpyFiles, ZeroDimensional) {
  const Array a = load_npy(data_file("numpy_scalar.npy"));
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.numel(), 1u);
  EXPECT_EQ(a.to_vector<std::int64_t>(), std::vector<std::int64_t>{-7});
}

TEST(NumpyFiles, FortranOrderIsReorderedToC) {
  // np.asfortranarray(np.arange(24).reshape(2, 3, 4)): C-order values are 0, 1, ..., 23.
  const Array a = load_npy(data_file("numpy_fortran.npy"));
  EXPECT_EQ(a.shape, (std::vector<std::size_t>{2, 3, 4}));
  std::vector<std::int32_t> expected(24);
  for (int i = 0; i < 24; ++i) expected[i] = i;
  EXPECT_EQ(a.to_vector<std::int32_t>(), expected);
}

// ---------------------------------------------------------------------------------------------
// Conversions.

TEST(ToVector, WidensLosslesslyAndRefusesNarrowing) {
  const float f[] = {1.5f, -2};
  const Array a = Array::from_f32({2}, f);
  EXPECT_EQ(a.to_vector<double>(), (std::vector<double>{1.5, -2}));
  expect_file_error([&] { a.to_vector<std::int32_t>(); }, {"float32", "int32"});
  const double d = 0.1;
  expect_file_error([&] { Array::from_f64({}, &d).to_vector<float>(); }, {"float64", "float32"});
  const Array b = raw(DType::Bool, {3}, {0, 2, 1});
  EXPECT_EQ(b.to_vector<std::int64_t>(), (std::vector<std::int64_t>{0, 1, 1}));
  const Array bad = raw(DType::Float32, {3}, {0, 0, 0, 0});
  expect_file_error([&] { bad.to_vector<float>(); }, {"holds 4 bytes", "needs 12"});
}

// ---------------------------------------------------------------------------------------------
// Broken files: each error names the file (and entry) and the specific problem.

struct Broken {
  const char* file;
  std::vector<std::string> message_parts;
};

/// Loads `b.file` as .npz (or .npy), from its path and from memory: both must fail with the
/// expected message, naming the path or the memory label.
void expect_broken(const Broken& b, bool as_npz) {
  SCOPED_TRACE(b.file);
  const std::string path = data_file(b.file);
  auto parts = b.message_parts;
  parts.push_back("file '" + path + "'");
  expect_file_error([&] { as_npz ? (void)load_npz(path) : (void)load_npy(path); }, parts);
  const auto bytes = read_bytes(path);
  parts.back() = "file 'label'";
  expect_file_error(
      [&] {
        as_npz ? (void)load_npz_from_memory(bytes.data(), bytes.size(), "label")
               : (void)load_npy_from_memory(bytes.data(), bytes.size(), "label");
      },
      parts);
}

TEST(BrokenNpy, EachGivesASpecificError) {
  const std::vector<Broken> cases = {
      {"truncated_data.npy", {"npy: file '", "truncated", "12 elements (96 bytes)", "91 data"}},
      {"wrong_magic.npy", {"bad magic"}},
      {"garbage_header.npy", {"malformed header", "unexpected key 'extra'"}},
      {"dtype_c8.npy", {"unsupported dtype '<c8'"}},
      {"dtype_object.npy", {"object dtype '|O'"}},
      {"big_endian.npy", {"big-endian dtype '>f4'"}},
      {"huge_shape.npy", {"shape (1099511627776, 1099511627776) product overflows"}},
      {"numpy_savez.npz", {"not a .npy file"}},
  };
  for (const auto& c : cases) expect_broken(c, /*as_npz=*/false);
}

TEST(BrokenNpz, EachGivesASpecificError) {
  const std::vector<Broken> cases = {
      {"truncated.npz", {"npz: file '", "truncated or corrupt zip"}},
      {"not_a_zip.npz", {"not a zip archive"}},
      {"numpy_v1.npy", {"not a zip archive but an .npy file"}},
      {"huge_elements.npz",
       {"entry 'w.npy'", "header says 1000000000 elements (4000000000 bytes) but 48 data"}},
      {"duplicate.npz", {"entry 'a.npy'", "duplicate array name 'a'"}},
      {"empty_name.npz", {"entry '.npy'", "empty array name"}},
      {"zip_bomb.npz", {"entry 'w.npy'", "inflates beyond its declared size of 144 bytes"}},
      {"zip_huge_declared.npz", {"entry 'w.npy'", "declares 2147483649 bytes", "zip bomb"}},
      {"overlapping.npz", {"entry 'b.npy'", "plus 1345 of earlier entries exceeds", "overlapping"}},
  };
  for (const auto& c : cases) expect_broken(c, /*as_npz=*/true);
}

TEST(BrokenNpz, MissingFileNamesIt) {
  expect_file_error([] { load_npz("/nonexistent/x.npz"); },
                    {"npz: file '/nonexistent/x.npz'", "cannot open"});
  expect_file_error([] { load_npy("/nonexistent/x.npy"); },
                    {"npy: file '/nonexistent/x.npy'", "cannot open"});
}

TEST(Find, MissingEntryNamesFileAndEntry) {
  const Archive a = sample_archive();
  EXPECT_EQ(find(a, "u8", "ckpt.npz").dtype, DType::UInt8);
  expect_file_error([&] { find(a, "nope", "ckpt.npz"); },
                    {"file 'ckpt.npz': missing entry 'nope'"});
}

// ---------------------------------------------------------------------------------------------
// Writing: validation and atomicity.

TEST_F(TempDir, SaveRejectsInvalidArchivesBeforeWriting) {
  const float f = 1;
  const Array one = Array::from_f32({1}, &f);
  expect_file_error([&] { save_npz(path("x.npz"), {{"a", one}, {"a", one}}); },
                    {"entry 'a'", "duplicate array name"});
  expect_file_error([&] { save_npz(path("x.npz"), {{"", one}}); }, {"empty array name"});
  expect_file_error([&] { save_npz(path("x.npz"), {{"w", raw(DType::Float32, {2}, {0})}}); },
                    {"entry 'w'", "data holds 1 bytes but shape (2,) of float32 needs 8"});
  const Array huge = raw(DType::Int64, {1u << 31, 1u << 31, 8}, {});
  expect_file_error([&] { save_npy(path("x.npy"), huge); }, {"product overflows"});
  EXPECT_TRUE(listing().empty());
}

TEST_F(TempDir, WriteIntoMissingDirectoryThrowsAndLeavesNothing) {
  const std::string npz = path("missing/a.npz"), npy = path("missing/a.npy");
  expect_file_error([&] { save_npz(npz, sample_archive()); }, {npz});
  expect_file_error([&] { save_npz(npz, {}); }, {npz});
  expect_file_error([&] { save_npy(npy, sample_archive()[0].second); }, {npy});
  EXPECT_TRUE(listing().empty());
}

TEST_F(TempDir, NonRegularTargetIsRefusedAndLeavesNoTemporary) {
  fs::create_directories(path("dest/keep"));  // a directory is never replaced
  expect_file_error([&] { save_npz(path("dest"), sample_archive()); }, {path("dest"), "not a regular file"});
  expect_file_error([&] { save_npy(path("dest"), sample_archive()[0].second); },
                    {path("dest"), "not a regular file"});
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);  // nor a FIFO (or a device: /dev/null as root)
  expect_file_error([&] { save_npz(path("fifo"), sample_archive()); }, {path("fifo"), "not a regular file"});
  EXPECT_EQ(listing(), (std::vector<std::string>{"dest", "fifo"}));
}

TEST_F(TempDir, OverwriteReplacesTheWholeFile) {
  for (bool compress : {false, true}) {
    std::ofstream(path("a.npz"), std::ios::binary) << std::string(100000, 'x');
    std::ofstream(path("a.npy"), std::ios::binary) << std::string(100000, 'x');
    const std::int32_t v = 42;
    const Array small = Array::from_i32({}, &v);
    save_npz(path("a.npz"), {{"v", small}}, compress);
    save_npy(path("a.npy"), small);
    EXPECT_LT(fs::file_size(path("a.npz")), 1000u);
    EXPECT_EQ(fs::file_size(path("a.npy")), 128u + 4u);
    expect_same(find(load_npz(path("a.npz")), "v", "a.npz"), small);
    expect_same(load_npy(path("a.npy")), small);
    EXPECT_EQ(listing(), (std::vector<std::string>{"a.npy", "a.npz"}));
  }
}

}  // namespace
