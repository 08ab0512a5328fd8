// tapegrad — strict, safe reader and writer for NumPy .npy and .npz files.
//
// Independent of the tensor class: an Array is a dtype, a C-order shape and raw little-endian
// bytes. Every error is a tapegrad::FileError whose message names the file and the entry:
//   "npz: file 'ckpt.npz': entry 'w': big-endian dtype '>f4' is not supported"
//   "npy: file 'x.npy': truncated: header says 12 elements (48 bytes) but 40 data bytes follow"
//
// Read: npy format versions 1.0, 2.0 and 3.0; dtypes '<f4' '<f8' '<i4' '<i8' '|u1' '|b1';
// fortran_order=True arrays are reordered to C order; npz archives stored (numpy.savez) or
// deflated (numpy.savez_compressed). Rejected: other dtypes, big-endian, object arrays
// (pickles), header dicts with other keys than descr/fortran_order/shape, size mismatches,
// empty or duplicate names, entries not ending in ".npy".
//
// Memory is bounded by the input's real size, never by sizes the input merely claims:
// the data size a header declares must equal the bytes that really follow, and a zip entry's
// declared uncompressed size must be
//   stored:   equal to its compressed size;
//   deflated: at most min(2 GiB, 1032 × compressed size + 1 MiB)  (1032:1 is deflate's maximum);
// the compressed sizes of all entries must fit together in the archive (no overlapping
// entries), and an entry that inflates past its declared size is an error (zip bomb).
//
// Write: atomic (a unique temporary "<path>.tmp.XXXXXX" made by mkstemp in the same directory,
// fsync, rename; the temporary is removed on failure); a target that exists and is not a regular
// file (a device, a directory, a FIFO) is refused; npy format 1.0, data aligned to 64 bytes like
// numpy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "framework/dtype.hpp"
#include "framework/error.hpp"

namespace tapegrad::npz {

/// Element types (framework/dtype.hpp), stored as the numpy descrs '<f4' '<f8' '<i4' '<i8'
/// '|u1' '|b1'.
using tapegrad::DType;

/// NumPy name of a dtype: "float32", "float64", "int32", "int64", "uint8" or "bool".
using tapegrad::dtype_name;

/// One array: dtype, C-order shape (empty = 0-d scalar) and raw little-endian bytes.
struct Array {
  DType dtype = DType::Float32;
  std::vector<std::size_t> shape;
  std::vector<unsigned char> data;  // size() == numel() * itemsize()

  /// Number of elements: product of shape, 1 for a 0-d array. Throws FileError on overflow.
  std::size_t numel() const;
  /// Bytes per element (4, 8, 4, 8, 1, 1).
  std::size_t itemsize() const;

  /// Elements as T (float, double, std::int32_t, std::int64_t, std::uint8_t or bool). T must
  /// hold every value of dtype exactly (float32 -> double, int32 -> int64 or double, uint8 and
  /// bool -> any numeric type); otherwise throws FileError naming both dtypes.
  template <class T>
  std::vector<T> to_vector() const;

  /// Copies numel(shape) values into a new Array of the matching dtype.
  static Array from_f32(std::vector<std::size_t> shape, const float* values);
  static Array from_f64(std::vector<std::size_t> shape, const double* values);
  static Array from_i32(std::vector<std::size_t> shape, const std::int32_t* values);
  static Array from_i64(std::vector<std::size_t> shape, const std::int64_t* values);
};

/// Named arrays in file order; names carry no ".npy" suffix.
using Archive = std::vector<std::pair<std::string, Array>>;

/// Default bound on the total uncompressed size of an archive's entries: 2 GiB.
constexpr std::uint64_t kDefaultMaxTotalBytes = 2ull << 30;

/// Loads every entry of an .npz file (stored or deflated), reading the file once. The entries'
/// declared uncompressed sizes together must not exceed max_total_bytes (checked from the
/// central directory before anything is inflated).
Archive load_npz(const std::string& path, std::uint64_t max_total_bytes = kDefaultMaxTotalBytes);
/// Loads an .npz held in memory; `label` stands for the file name in error messages.
Archive load_npz_from_memory(const void* data, std::size_t size, const std::string& label,
                             std::uint64_t max_total_bytes = kDefaultMaxTotalBytes);
/// Loads one .npy file.
Array load_npy(const std::string& path);
/// Loads an .npy held in memory; `label` stands for the file name in error messages.
Array load_npy_from_memory(const void* data, std::size_t size, const std::string& label);

/// Writes an .npz atomically: entries "<name>.npy", stored, or deflated when `compress`.
void save_npz(const std::string& path, const Archive& arrays, bool compress = false);
/// Writes an .npy atomically.
void save_npy(const std::string& path, const Array& array);
/// Writes `bytes` to `path` the way save_npz writes (a unique temporary beside it, fsync, rename;
/// a target that exists and is not a regular file is refused), for the library's other files,
/// such as a grader's reports. Throws FileError naming the file.
void write_file_atomically(const std::string& path, const std::string& bytes);

/// The array called `name`; throws "npz: file '<path_for_errors>': missing entry '<name>'".
const Array& find(const Archive& archive, const std::string& name,
                  const std::string& path_for_errors);

namespace detail {

template <class T>
DType dtype_of();
template <>
inline DType dtype_of<float>() { return DType::Float32; }
template <>
inline DType dtype_of<double>() { return DType::Float64; }
template <>
inline DType dtype_of<std::int32_t>() { return DType::Int32; }
template <>
inline DType dtype_of<std::int64_t>() { return DType::Int64; }
template <>
inline DType dtype_of<std::uint8_t>() { return DType::UInt8; }
template <>
inline DType dtype_of<bool>() { return DType::Bool; }

/// Throws FileError unless `to` holds every value of array.dtype exactly and array.data has
/// numel() * itemsize() bytes.
void check_convertible(const Array& array, DType to);

/// out[i] = T(i-th S value of src); memcpy because src need not be aligned for S.
template <class S, class T>
void convert(const unsigned char* src, std::vector<T>& out) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    S value;
    std::memcpy(&value, src + i * sizeof(S), sizeof(S));
    out[i] = static_cast<T>(value);
  }
}

}  // namespace detail

template <class T>
std::vector<T> Array::to_vector() const {
  detail::check_convertible(*this, detail::dtype_of<T>());
  std::vector<T> out(numel());
  const unsigned char* src = data.data();
  switch (dtype) {
    case DType::Float32: detail::convert<float>(src, out); break;
    case DType::Float64: detail::convert<double>(src, out); break;
    case DType::Int32: detail::convert<std::int32_t>(src, out); break;
    case DType::Int64: detail::convert<std::int64_t>(src, out); break;
    case DType::UInt8: detail::convert<std::uint8_t>(src, out); break;
    case DType::Bool:  // any nonzero byte is true, as in numpy
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(src[i] != 0);
      break;
  }
  return out;
}

}  // namespace tapegrad::npz
