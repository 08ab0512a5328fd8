// tapegrad — strict, safe .npy/.npz reader and writer (see npz.hpp for the format and limits).
//
// Layout: helpers (errors, sizes) · the header parser · read_npy, the one reader behind every
// load (file, memory, zip entry all feed it through a ReadFn) · npz reading with the zip-bomb
// checks · writing (npy header, atomic file replacement) · the public API.
#include "framework/npz.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string_view>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "npz stores raw little-endian bytes: a big-endian host would need byte swapping");

namespace tapegrad::npz {
namespace {

constexpr std::string_view kNpyMagic{"\x93NUMPY", 6};
constexpr std::size_t kMaxHeaderBytes = 1 << 16;      // numpy itself refuses > 10000 by default
constexpr std::size_t kMaxSavedDims = 64;             // numpy >= 2 allows 64 dimensions
constexpr std::uint64_t kMaxInflatedBytes = 2ull << 30;  // 2 GiB per deflated entry
constexpr std::uint64_t kMaxDeflateRatio = 1032;        // deflate cannot compress better
constexpr zip_int64_t kMaxEntries = 100000;             // arrays in one archive
constexpr std::uint64_t kInflateSlackBytes = 1 << 20;

struct DTypeInfo {
  DType dtype;
  const char* descr;  // numpy's descr string
  const char* name;   // numpy's dtype name
  std::size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::Float32, "<f4", "float32", 4}, {DType::Float64, "<f8", "float64", 8},
    {DType::Int32, "<i4", "int32", 4},     {DType::Int64, "<i8", "int64", 8},
    {DType::UInt8, "|u1", "uint8", 1},     {DType::Bool, "|b1", "bool", 1},
};

const DTypeInfo& info(DType dtype) {
  for (const auto& i : kDTypes)
    if (i.dtype == dtype) return i;
  throw FileError("npz: invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

[[noreturn]] void fail(const std::string& where, const std::string& problem) {
  throw FileError(where + ": " + problem);
}

std::string npy_where(const std::string& path) { return "npy: file '" + path + "'"; }
std::string npz_where(const std::string& path) { return "npz: file '" + path + "'"; }
std::string entry_where(const std::string& file_where, const std::string& name) {
  return file_where + ": entry '" + name + "'";
}

std::string errno_text() { return std::strerror(errno); }

/// Python tuple spelling of a shape: "()", "(3,)", "(2, 3)".
std::string shape_str(const std::vector<std::size_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

/// numel(shape) * itemsize, or nullopt when the product overflows size_t.
std::optional<std::size_t> checked_nbytes(const std::vector<std::size_t>& shape,
                                          std::size_t itemsize) {
  std::size_t n = itemsize;
  for (std::size_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return std::nullopt;
  return n;
}

/// Throws FileError unless a.data holds exactly numel * itemsize bytes.
void check_array(const Array& a, const std::string& where) {
  const auto nbytes = checked_nbytes(a.shape, info(a.dtype).size);
  if (!nbytes) fail(where, "shape " + shape_str(a.shape) + " product overflows");
  if (*nbytes != a.data.size())
    fail(where, "data holds " + std::to_string(a.data.size()) + " bytes but shape " +
                    shape_str(a.shape) + " of " + info(a.dtype).name + " needs " +
                    std::to_string(*nbytes));
}

// ---------------------------------------------------------------------------------------------
// Header dict parser.

struct Header {
  DType dtype;
  bool fortran_order;
  std::vector<std::size_t> shape;
};

/// Recursive-descent parser for the header, a Python dict literal such as
///   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
/// followed by padding. Exactly the keys descr, fortran_order and shape, each once.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& where) : text_(text), where_(where) {}

  Header parse() {
    Header h{};
    bool has_descr = false, has_order = false, has_shape = false;
    skip_space();
    expect('{');
    while (true) {
      skip_space();
      if (eat('}')) break;
      const std::string key = parse_string();
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        mark_seen(has_descr, key);
        h.dtype = parse_descr();
      } else if (key == "fortran_order") {
        mark_seen(has_order, key);
        h.fortran_order = parse_bool();
      } else if (key == "shape") {
        mark_seen(has_shape, key);
        h.shape = parse_shape();
      } else {
        error("unexpected key '" + key + "'");
      }
      skip_space();
      if (!eat(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    if (pos_ != text_.size()) error("unexpected text after '}'");
    if (!has_descr) error("missing key 'descr'");
    if (!has_order) error("missing key 'fortran_order'");
    if (!has_shape) error("missing key 'shape'");
    return h;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(where_, "malformed header: " + what + " (at offset " + std::to_string(pos_) + ")");
  }
  void mark_seen(bool& seen, const std::string& key) const {
    if (seen) error("duplicate key '" + key + "'");
    seen = true;
  }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\r' || text_[pos_] == '\n'))
      ++pos_;
  }
  bool eat(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) return ++pos_, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) error(std::string("expected '") + c + "'");
  }
  bool starts_with(std::string_view word) const { return text_.substr(pos_, word.size()) == word; }

  /// A quoted string without escapes: 'abc' or "abc".
  std::string parse_string() {
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"'))
      error("expected a quoted string");
    const char quote = text_[pos_++];
    const std::size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) error("unterminated string");
    std::string s(text_.substr(pos_, end - pos_));
    if (s.find('\\') != std::string::npos) error("escape sequences are not supported");
    pos_ = end + 1;
    return s;
  }

  DType parse_descr() {
    if (pos_ < text_.size() && text_[pos_] == '[')
      fail(where_, "structured dtypes are not supported");
    const std::string descr = parse_string();
    for (const auto& i : kDTypes)
      if (descr == i.descr) return i.dtype;
    if (descr.size() > 1 && descr[0] == '>')
      fail(where_, "big-endian dtype '" + descr + "' is not supported (save as '<" +
                       descr.substr(1) + "')");
    if (descr.find('O') != std::string::npos)
      fail(where_, "object dtype '" + descr + "' (pickled data) is not supported");
    fail(where_, "unsupported dtype '" + descr + "' (supported: <f4 <f8 <i4 <i8 |u1 |b1)");
  }

  bool parse_bool() {
    for (const bool value : {true, false}) {
      const std::string_view word = value ? "True" : "False";
      if (starts_with(word)) return pos_ += word.size(), value;
    }
    error("expected True or False");
  }

  /// A tuple of non-negative integers; one element needs its trailing comma, as in Python.
  std::vector<std::size_t> parse_shape() {
    std::vector<std::size_t> shape;
    bool comma_after_last = false;
    expect('(');
    while (true) {
      skip_space();
      if (eat(')')) break;
      shape.push_back(parse_dim());
      skip_space();
      comma_after_last = eat(',');
      if (!comma_after_last) {
        expect(')');
        break;
      }
    }
    if (shape.size() == 1 && !comma_after_last) error("a one-element shape needs a comma");
    return shape;
  }

  std::size_t parse_dim() {
    if (pos_ >= text_.size() || !std::isdigit(static_cast<unsigned char>(text_[pos_])))
      error("expected a dimension");
    std::size_t value = 0;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      if (__builtin_mul_overflow(value, 10, &value) ||
          __builtin_add_overflow(value, std::size_t(text_[pos_] - '0'), &value))
        fail(where_, "shape dimension overflows");
      ++pos_;
    }
    return value;
  }

  std::string_view text_;
  const std::string& where_;
  std::size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Reading one .npy stream.

/// Reads up to n bytes into dst; returns fewer only at the end of the stream.
using ReadFn = std::function<std::size_t(unsigned char* dst, std::size_t n)>;

void read_exact(const ReadFn& read, unsigned char* dst, std::size_t n, const std::string& where,
                const std::string& what) {
  const std::size_t got = read(dst, n);
  if (got != n)
    fail(where, "truncated " + what + ": expected " + std::to_string(n) + " bytes, got " +
                    std::to_string(got));
}

/// Reorders data stored in Fortran order (first index fastest) into C order.
std::vector<unsigned char> fortran_to_c(const std::vector<unsigned char>& src,
                                        const std::vector<std::size_t>& shape,
                                        std::size_t itemsize) {
  const std::size_t ndim = shape.size();
  std::vector<std::size_t> c_stride(ndim, itemsize);  // C-order byte strides
  for (std::size_t k = ndim; k-- > 1;) c_stride[k - 1] = c_stride[k] * shape[k];
  std::vector<unsigned char> dst(src.size());
  std::vector<std::size_t> index(ndim, 0);
  std::size_t c_offset = 0;
  for (std::size_t f_offset = 0; f_offset < src.size(); f_offset += itemsize) {
    std::memcpy(&dst[c_offset], &src[f_offset], itemsize);
    for (std::size_t k = 0; k < ndim; ++k) {  // next index in Fortran order
      if (++index[k] < shape[k]) {
        c_offset += c_stride[k];
        break;
      }
      index[k] = 0;
      c_offset -= (shape[k] - 1) * c_stride[k];
    }
  }
  return dst;
}

/// Reads one .npy stream that holds exactly `size` bytes; `where` prefixes error messages.
/// Allocates only after checking the declared data size against the bytes that follow.
Array read_npy(const ReadFn& read, std::uint64_t size, const std::string& where) {
  unsigned char prefix[12];  // magic, major, minor, header length (2 or 4 bytes)
  if (size < 10) fail(where, "truncated: " + std::to_string(size) + " bytes is too short for .npy");
  read_exact(read, prefix, 8, where, "magic");
  if (std::string_view(reinterpret_cast<char*>(prefix), 6) != kNpyMagic)
    fail(where, "not a .npy file (bad magic bytes)");
  const unsigned major = prefix[6], minor = prefix[7];
  if (major < 1 || major > 3 || minor != 0)
    fail(where, "unsupported .npy format version " + std::to_string(major) + "." +
                    std::to_string(minor));
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  read_exact(read, prefix + 8, length_bytes, where, "header length");
  std::size_t header_len = 0;
  for (std::size_t i = length_bytes; i-- > 0;) header_len = header_len << 8 | prefix[8 + i];
  if (header_len > kMaxHeaderBytes)
    fail(where, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                    std::to_string(kMaxHeaderBytes));
  const std::uint64_t data_start = 8 + length_bytes + header_len;
  if (data_start > size)
    fail(where, "truncated: header of " + std::to_string(header_len) +
                    " bytes runs past the end (" + std::to_string(size) + " bytes)");
  std::string text(header_len, '\0');
  read_exact(read, reinterpret_cast<unsigned char*>(text.data()), header_len, where, "header");
  const Header h = HeaderParser(text, where).parse();

  const std::size_t itemsize = info(h.dtype).size;
  const auto nbytes = checked_nbytes(h.shape, itemsize);
  if (!nbytes) fail(where, "shape " + shape_str(h.shape) + " product overflows");
  const std::uint64_t available = size - data_start;
  if (*nbytes != available)
    fail(where, std::string(*nbytes > available ? "truncated: " : "trailing bytes: ") +
                    "header says " + std::to_string(*nbytes / itemsize) + " elements (" +
                    std::to_string(*nbytes) + " bytes) but " + std::to_string(available) +
                    " data bytes follow");
  Array a{h.dtype, h.shape, std::vector<unsigned char>(*nbytes)};
  read_exact(read, a.data.data(), *nbytes, where, "data");
  if (h.fortran_order) a.data = fortran_to_c(a.data, a.shape, itemsize);
  return a;
}

ReadFn memory_reader(const void* data, std::size_t size) {
  return [p = static_cast<const unsigned char*>(data), size, pos = std::size_t{0}](
             unsigned char* dst, std::size_t n) mutable {
    n = std::min(n, size - pos);
    if (n) std::memcpy(dst, p + pos, n);
    pos += n;
    return n;
  };
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

/// Opens a regular file for reading and returns it with its size.
FilePtr open_regular(const std::string& path, const std::string& where, std::uint64_t& size) {
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) fail(where, "cannot open: " + errno_text());
  struct stat st {};
  if (fstat(fileno(f.get()), &st) != 0) fail(where, "cannot stat: " + errno_text());
  if (!S_ISREG(st.st_mode)) fail(where, "not a regular file");
  size = static_cast<std::uint64_t>(st.st_size);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Reading an .npz (libzip).

struct ZipDiscard {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFileClose {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};
using ZipPtr = std::unique_ptr<zip_t, ZipDiscard>;

/// Refuses an entry whose sizes claim more than its compressed bytes can honestly hold;
/// `compressed_total` accumulates the compressed sizes of the entries checked so far.
void check_entry_sizes(const zip_stat_t& st, std::uint64_t archive_size,
                       std::uint64_t& compressed_total, const std::string& where) {
  if (st.encryption_method != ZIP_EM_NONE) fail(where, "encrypted entries are not supported");
  if (st.comp_size > archive_size - compressed_total)
    fail(where, "compressed size " + std::to_string(st.comp_size) + " plus " +
                    std::to_string(compressed_total) + " of earlier entries exceeds the " +
                    std::to_string(archive_size) + "-byte archive (truncated or overlapping)");
  compressed_total += st.comp_size;
  const std::string sizes = "declares " + std::to_string(st.size) + " bytes from " +
                            std::to_string(st.comp_size) + " compressed bytes";
  if (st.comp_method == ZIP_CM_STORE) {
    if (st.size != st.comp_size) fail(where, "stored entry " + sizes);
  } else if (st.comp_method == ZIP_CM_DEFLATE) {
    const std::uint64_t limit =  // no overflow: comp_size <= the archive's real size
        std::min(kMaxInflatedBytes, st.comp_size * kMaxDeflateRatio + kInflateSlackBytes);
    if (st.size > limit)
      fail(where, sizes + ", over the limit of " + std::to_string(limit) + " (zip bomb?)");
  } else {
    fail(where, "unsupported compression method " + std::to_string(st.comp_method) +
                    " (only stored and deflate)");
  }
}

/// Reads entry `index`, whose central directory declares `size` uncompressed bytes.
Array read_entry(zip_t* za, zip_uint64_t index, std::uint64_t size, const std::string& where) {
  std::unique_ptr<zip_file_t, ZipFileClose> file(zip_fopen_index(za, index, 0));
  if (!file) fail(where, std::string("cannot open: ") + zip_strerror(za));
  const ReadFn read = [&](unsigned char* dst, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
      const zip_int64_t r = zip_fread(file.get(), dst + got, n - got);
      if (r < 0) fail(where, std::string("cannot read: ") + zip_file_strerror(file.get()));
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  };
  Array a = read_npy(read, size, where);
  unsigned char extra;  // reading at the end also makes libzip verify the CRC
  if (read(&extra, 1) != 0)
    fail(where, "inflates beyond its declared size of " + std::to_string(size) +
                    " bytes (zip bomb?)");
  return a;
}

/// Message for a zip_open failure; `head` (the first bytes) tells what the file is instead.
std::string open_error(zip_error_t* error, std::string_view head) {
  if (zip_error_code_zip(error) != ZIP_ER_NOZIP)
    return std::string("cannot open as zip: ") + zip_error_strerror(error);
  if (head.substr(0, 4) == std::string_view("PK\x03\x04", 4))
    return "truncated or corrupt zip archive (no end of central directory record)";
  if (head.substr(0, 6) == kNpyMagic) return "not a zip archive but an .npy file";
  return "not a zip archive (bad magic bytes)";
}

/// Opens the zip read by `source` (taking ownership of it) and reads every entry. Every
/// entry's sizes are checked before anything is inflated, and their declared total must not pass
/// `max_total_bytes`.
Archive read_npz(zip_source_t* source, std::uint64_t archive_size, std::string_view head,
                 const std::string& path, std::uint64_t max_total_bytes) {
  zip_error_t error;
  zip_error_init(&error);
  ZipPtr za(zip_open_from_source(source, ZIP_RDONLY, &error));
  if (!za) {
    zip_source_free(source);
    const std::string problem = open_error(&error, head);
    zip_error_fini(&error);
    fail(npz_where(path), problem);
  }
  Archive archive;
  std::set<std::string> names;
  std::uint64_t compressed_total = 0, declared_total = 0;
  const zip_int64_t count = zip_get_num_entries(za.get(), 0);
  if (count > kMaxEntries)
    fail(npz_where(path), std::to_string(count) + " entries (at most " +
                              std::to_string(kMaxEntries) + " are read)");
  std::vector<zip_stat_t> stats(static_cast<std::size_t>(std::max<zip_int64_t>(count, 0)));
  for (zip_int64_t i = 0; i < count; ++i) {  // pass 1: the central directory only
    zip_stat_t& st = stats[static_cast<std::size_t>(i)];
    constexpr zip_uint64_t needed = ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE |
                                    ZIP_STAT_COMP_METHOD | ZIP_STAT_ENCRYPTION_METHOD;
    if (zip_stat_index(za.get(), i, 0, &st) != 0 || (st.valid & needed) != needed)
      fail(npz_where(path), "cannot read entry #" + std::to_string(i) + ": " +
                                zip_strerror(za.get()));
    const std::string entry = st.name;
    const std::string where = entry_where(npz_where(path), entry);
    const std::string_view suffix = ".npy";
    if (entry.size() < suffix.size() || entry.compare(entry.size() - 4, 4, suffix) != 0)
      fail(where, "not an array (the name does not end in .npy)");
    const std::string name = entry.substr(0, entry.size() - suffix.size());
    if (name.empty()) fail(where, "empty array name");
    if (!names.insert(name).second) fail(where, "duplicate array name '" + name + "'");
    check_entry_sizes(st, archive_size, compressed_total, where);
    declared_total += st.size;  // no overflow: each size is at most 2 GiB and count < 2^32
    if (declared_total > max_total_bytes)
      fail(npz_where(path), "its entries declare more than " + std::to_string(max_total_bytes) +
                                " bytes in total (the limit for this file; zip bomb?)");
  }
  archive.reserve(stats.size());
  for (zip_int64_t i = 0; i < count; ++i) {  // pass 2: inflate, each entry bounded by its size
    const zip_stat_t& st = stats[static_cast<std::size_t>(i)];
    const std::string entry = st.name;
    const std::string where = entry_where(npz_where(path), entry);
    archive.emplace_back(entry.substr(0, entry.size() - 4), read_entry(za.get(), i, st.size, where));
  }
  return archive;
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// The npy 1.0 prefix (magic, version, length, header dict) for `a`, padded with spaces and a
/// final newline so the data starts at a multiple of 64 bytes, like numpy.
std::string npy_prefix(const Array& a, const std::string& where) {
  check_array(a, where);
  if (a.shape.size() > kMaxSavedDims)
    fail(where, std::to_string(a.shape.size()) + " dimensions (numpy reads at most " +
                    std::to_string(kMaxSavedDims) + ")");
  std::string dict = std::string("{'descr': '") + info(a.dtype).descr +
                     "', 'fortran_order': False, 'shape': " + shape_str(a.shape) + ", }";
  const std::size_t unpadded = 10 + dict.size() + 1;  // 10 = magic, version, 2-byte length
  dict.append((64 - unpadded % 64) % 64, ' ').push_back('\n');
  const std::size_t len = dict.size();  // < 64 KiB thanks to kMaxSavedDims
  return std::string(kNpyMagic) + '\x01' + '\x00' + char(len & 0xFF) + char(len >> 8) + dict;
}

/// Writes `chunks` to a new file `path`.
void write_bytes(const std::string& path, std::initializer_list<std::string_view> chunks,
                 const std::string& where) {
  FilePtr f(std::fopen(path.c_str(), "wb"));
  if (!f) fail(where, "cannot create '" + path + "': " + errno_text());
  for (std::string_view c : chunks)
    if (!c.empty() && std::fwrite(c.data(), 1, c.size(), f.get()) != c.size())
      fail(where, "cannot write: " + errno_text());
  if (std::fclose(f.release()) != 0) fail(where, "cannot write: " + errno_text());
}

/// Flushes a file (or directory) to disk.
void fsync_path(const std::string& path, int flags, const std::string& where) {
  const int fd = ::open(path.c_str(), O_RDONLY | flags);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string problem = errno_text();
    if (fd >= 0) ::close(fd);
    fail(where, "cannot sync '" + path + "': " + problem);
  }
  ::close(fd);
}

/// Replaces `path` atomically: `write_tmp` fills a unique "<path>.tmp.XXXXXX", which is synced and
/// renamed over `path`. On any failure the temporary file is removed and the error rethrown.
void write_atomically(const std::string& path, const std::string& where,
                      const std::function<void(const std::string& tmp)>& write_tmp) {
  struct stat target {};
  if (::stat(path.c_str(), &target) == 0 && !S_ISREG(target.st_mode))
    fail(where, "exists and is not a regular file; refusing to replace it");
  // A unique temporary next to the target (O_EXCL: never a planted symlink, never another
  // process's file).
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) fail(where, "cannot create a temporary file next to it: " + errno_text());
  ::fchmod(fd, 0644);
  ::close(fd);
  try {
    write_tmp(tmp);
    fsync_path(tmp, 0, where);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      fail(where, "cannot rename '" + tmp + "' to it: " + errno_text());
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  fsync_path(dir.empty() ? "." : dir, O_DIRECTORY, where);  // makes the rename durable
}

/// Adds "<name>.npy" = prefix + array data to `za` without copying (libzip reads the bytes
/// at zip_close, so `prefix` and `array` must outlive it).
void add_entry(zip_t* za, const std::string& name, const std::string& prefix, const Array& array,
               bool compress, const std::string& where) {
  const zip_buffer_fragment_t parts[2] = {
      {reinterpret_cast<zip_uint8_t*>(const_cast<char*>(prefix.data())), prefix.size()},
      {const_cast<zip_uint8_t*>(array.data.data()), array.data.size()}};
  zip_source_t* source = zip_source_buffer_fragment(za, parts, array.data.empty() ? 1 : 2, 0);
  if (!source) fail(where, std::string("cannot add: ") + zip_strerror(za));
  const zip_int64_t index = zip_file_add(za, (name + ".npy").c_str(), source, ZIP_FL_ENC_UTF_8);
  if (index < 0) {
    zip_source_free(source);
    fail(where, std::string("cannot add: ") + zip_strerror(za));
  }
  if (zip_set_file_compression(za, index, compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0) != 0)
    fail(where, std::string("cannot set compression: ") + zip_strerror(za));
}

/// Writes the zip of `arrays` (whose npy prefixes are `prefixes`) to a new file `path`.
void write_zip(const std::string& path, const Archive& arrays,
               const std::vector<std::string>& prefixes, bool compress,
               const std::string& where) {
  if (arrays.empty()) {  // libzip writes no file for an empty archive: write the bare
    write_bytes(path, {std::string_view("PK\x05\x06", 4), std::string(18, '\0')}, where);
    return;  // end-of-central-directory record, as Python's zipfile does
  }
  int code = 0;
  ZipPtr za(zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code));
  if (!za) {
    zip_error_t error;
    zip_error_init_with_code(&error, code);
    const std::string problem = zip_error_strerror(&error);
    zip_error_fini(&error);
    fail(where, "cannot create '" + path + "': " + problem);
  }
  for (std::size_t i = 0; i < arrays.size(); ++i)
    add_entry(za.get(), arrays[i].first, prefixes[i], arrays[i].second, compress,
              entry_where(where, arrays[i].first));
  if (zip_close(za.get()) != 0) fail(where, std::string("cannot write: ") + zip_strerror(za.get()));
  (void)za.release();  // zip_close succeeded and freed it
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API.


std::size_t Array::numel() const {
  const auto n = checked_nbytes(shape, 1);
  if (!n) throw FileError("npz: shape " + shape_str(shape) + " product overflows");
  return *n;
}

std::size_t Array::itemsize() const { return info(dtype).size; }

namespace {
Array make_array(DType dtype, std::vector<std::size_t> shape, const void* values) {
  Array a{dtype, std::move(shape), {}};
  const auto nbytes = checked_nbytes(a.shape, a.itemsize());
  if (!nbytes) throw FileError("npz: shape " + shape_str(a.shape) + " product overflows");
  const auto* bytes = static_cast<const unsigned char*>(values);
  a.data.assign(bytes, bytes + *nbytes);
  return a;
}
}  // namespace

Array Array::from_f32(std::vector<std::size_t> shape, const float* values) {
  return make_array(DType::Float32, std::move(shape), values);
}
Array Array::from_f64(std::vector<std::size_t> shape, const double* values) {
  return make_array(DType::Float64, std::move(shape), values);
}
Array Array::from_i32(std::vector<std::size_t> shape, const std::int32_t* values) {
  return make_array(DType::Int32, std::move(shape), values);
}
Array Array::from_i64(std::vector<std::size_t> shape, const std::int64_t* values) {
  return make_array(DType::Int64, std::move(shape), values);
}

void detail::check_convertible(const Array& array, DType to) {
  const DType from = array.dtype;
  bool lossless = from == to || from == DType::Bool;
  if (from == DType::UInt8) lossless = to != DType::Bool;
  if (from == DType::Int32) lossless |= to == DType::Int64 || to == DType::Float64;
  if (from == DType::Float32) lossless |= to == DType::Float64;
  if (!lossless)
    throw FileError(std::string("npz: cannot convert a ") + dtype_name(from) + " array to " + dtype_name(to) +
                    " without loss");
  check_array(array, std::string("npz: ") + dtype_name(from) + " array");
}

Archive load_npz(const std::string& path, std::uint64_t max_total_bytes) {
  std::uint64_t size = 0;
  FilePtr f = open_regular(path, npz_where(path), size);
  char head[6] = {};
  const std::size_t head_size = std::fread(head, 1, sizeof head, f.get());
  std::rewind(f.get());
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_filep_create(f.get(), 0, -1, &error);
  if (!source) fail(npz_where(path), std::string("cannot open: ") + zip_error_strerror(&error));
  (void)f.release();  // the source owns the FILE now
  return read_npz(source, size, std::string_view(head, head_size), path, max_total_bytes);
}

Archive load_npz_from_memory(const void* data, std::size_t size, const std::string& label,
                             std::uint64_t max_total_bytes) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(data, size, 0, &error);
  if (!source) fail(npz_where(label), std::string("cannot open: ") + zip_error_strerror(&error));
  const std::string_view head(static_cast<const char*>(data), std::min<std::size_t>(size, 6));
  return read_npz(source, size, head, label, max_total_bytes);
}

Array load_npy(const std::string& path) {
  std::uint64_t size = 0;
  FilePtr f = open_regular(path, npy_where(path), size);
  const ReadFn read = [&](unsigned char* dst, std::size_t n) {
    return std::fread(dst, 1, n, f.get());
  };
  return read_npy(read, size, npy_where(path));
}

Array load_npy_from_memory(const void* data, std::size_t size, const std::string& label) {
  return read_npy(memory_reader(data, size), size, npy_where(label));
}

void save_npz(const std::string& path, const Archive& arrays, bool compress) {
  const std::string where = npz_where(path);
  std::vector<std::string> prefixes;  // validated before touching the disk
  std::set<std::string> names;
  for (const auto& [name, array] : arrays) {
    const std::string entry = entry_where(where, name);
    if (name.empty()) fail(entry, "empty array name");
    if (!names.insert(name).second) fail(entry, "duplicate array name '" + name + "'");
    prefixes.push_back(npy_prefix(array, entry));
  }
  write_atomically(path, where, [&](const std::string& tmp) {
    write_zip(tmp, arrays, prefixes, compress, where);
  });
}

void save_npy(const std::string& path, const Array& array) {
  const std::string where = npy_where(path);
  const std::string prefix = npy_prefix(array, where);
  const std::string_view data(reinterpret_cast<const char*>(array.data.data()), array.data.size());
  write_atomically(path, where, [&](const std::string& tmp) {
    write_bytes(tmp, {prefix, data}, where);
  });
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string where = "file '" + path + "'";
  write_atomically(path, where, [&](const std::string& tmp) { write_bytes(tmp, {bytes}, where); });
}

const Array& find(const Archive& archive, const std::string& name,
                  const std::string& path_for_errors) {
  for (const auto& [n, array] : archive)
    if (n == name) return array;
  throw FileError(npz_where(path_for_errors) + ": missing entry '" + name + "'");
}

}  // namespace tapegrad::npz
