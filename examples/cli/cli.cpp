// examples/cli — see cli.hpp.
#include "cli/cli.hpp"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string_view>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "framework/error.hpp"

namespace cli {

using tapegrad::FileError;

// ---- run -----------------------------------------------------------------------------------------

int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);  // prints the help text, or the error with a hint
    return rc == 0 ? kOk : kUsage;
  }
  try {
    return body();
  } catch (const UsageError& e) {
    fmt::print(stderr, "error: {}\nRun with --help for more information.\n", e.what());
    return kUsage;
  } catch (const CLI::ParseError& e) {  // a CLI11 check raised after parsing
    fmt::print(stderr, "error: {}\n", e.what());
    return kUsage;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "error: out of memory\n");
    return kError;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return kError;
  }
}

// ---- validators ----------------------------------------------------------------------------------

namespace {

bool parse_double(const std::string& s, double& out) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(s.c_str(), &end);
  return end != s.c_str() && *end == '\0';
}

CLI::Validator number_check(const char* name, bool (*ok)(double), const char* what) {
  return CLI::Validator(
      [ok, what](std::string& v) -> std::string {
        double d = 0;
        if (!parse_double(v, d) || !std::isfinite(d)) return "'" + v + "' is not a finite number";
        if (!ok(d)) return "'" + v + "' is not " + what;
        return {};
      },
      name);
}

}  // namespace

const CLI::Validator Finite = number_check("FINITE", [](double) { return true; }, "finite");
const CLI::Validator PositiveFinite =
    number_check("POSITIVE", [](double d) { return d > 0; }, "a positive number");
const CLI::Validator NonNegativeFinite =
    number_check("NONNEGATIVE", [](double d) { return d >= 0; }, "a non-negative number");

CLI::Validator IntRange(std::int64_t lo, std::int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) -> std::string {
        std::string_view s = v;
        bool neg = !s.empty() && s[0] == '-';
        if (neg) s.remove_prefix(1);
        bool digits = !s.empty() && s.size() <= 19;
        for (char c : s) digits = digits && c >= '0' && c <= '9';
        if (!digits) return fmt::format("'{}' is not a whole number in {}..{}", v, lo, hi);
        errno = 0;
        std::int64_t x = std::strtoll(v.c_str(), nullptr, 10);
        if (errno == ERANGE || x < lo || x > hi)
          return fmt::format("{} is not in {}..{}", v, lo, hi);
        return {};
      },
      fmt::format("INT in {}..{}", lo, hi));
}

const CLI::Validator UInt64(
    [](std::string& v) -> std::string {
      bool digits = !v.empty() && v.size() <= 20;
      for (char c : v) digits = digits && c >= '0' && c <= '9';
      errno = 0;
      if (digits) std::strtoull(v.c_str(), nullptr, 10);
      if (!digits || errno == ERANGE) return fmt::format("'{}' is not a whole number in 0..2^64-1", v);
      return {};
    },
    "UINT64");

void require(bool ok, const std::string& flag, const std::string& message) {
  if (!ok) throw UsageError(flag + ": " + message);
}

// ---- input files ---------------------------------------------------------------------------------

namespace {

std::string size_str(std::uint64_t bytes) {
  if (bytes >= (1ull << 30)) return fmt::format("{:.1f} GiB", double(bytes) / double(1ull << 30));
  if (bytes >= (1ull << 20)) return fmt::format("{:.1f} MiB", double(bytes) / double(1ull << 20));
  return fmt::format("{} bytes", bytes);
}

const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

}  // namespace

void check_input_file(const std::string& path, const std::string& what, std::uint64_t max_bytes) {
  struct stat st {};
  if (path.empty()) throw UsageError(what + ": empty path");
  if (::stat(path.c_str(), &st) != 0)
    throw UsageError(fmt::format("{}: cannot open '{}': {}", what, path, std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    throw UsageError(fmt::format("{}: '{}' is {}, not a regular file", what, path, kind_of(st.st_mode)));
  if (std::uint64_t(st.st_size) > max_bytes)
    throw UsageError(fmt::format("{}: '{}' is {}; at most {} is read", what, path,
                                size_str(std::uint64_t(st.st_size)), size_str(max_bytes)));
}

std::string read_file(const std::string& path, const std::string& what, std::uint64_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw FileError(fmt::format("{}: cannot open '{}': {}", what, path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FileError(fmt::format("{}: '{}' is {}, not a regular file", what, path, kind_of(st.st_mode)));
  }
  if (std::uint64_t(st.st_size) > max_bytes) {
    ::close(fd);
    throw FileError(fmt::format("{}: '{}' is {}; at most {} is read", what, path,
                                size_str(std::uint64_t(st.st_size)), size_str(max_bytes)));
  }
  std::string out;
  out.resize(std::size_t(st.st_size));
  std::size_t got = 0;
  while (true) {
    if (got == out.size()) {  // the file may have grown since fstat: read on, up to the bound
      if (out.size() >= max_bytes + 1) break;
      out.resize(std::min<std::uint64_t>(max_bytes + 1, out.size() + 65536));
    }
    ssize_t n = ::read(fd, &out[got], out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw FileError(fmt::format("{}: cannot read '{}': {}", what, path, std::strerror(err)));
    }
    if (n == 0) break;
    got += std::size_t(n);
  }
  ::close(fd);
  if (got > max_bytes)
    throw FileError(fmt::format("{}: '{}' is larger than {}", what, path, size_str(max_bytes)));
  out.resize(got);
  return out;
}

// ---- output files --------------------------------------------------------------------------------

void check_output_path(const std::string& path, const std::string& flag,
                       const std::vector<std::string>& inputs) {
  if (path.empty()) throw UsageError(flag + ": empty path");
  if (path.back() == '/') throw UsageError(fmt::format("{}: '{}' names a directory, not a file", flag, path));
  std::string dir = ".";
  if (auto slash = path.rfind('/'); slash != std::string::npos) dir = slash == 0 ? "/" : path.substr(0, slash);
  struct stat ds {};
  if (::stat(dir.c_str(), &ds) != 0)
    throw UsageError(fmt::format("{}: cannot write '{}': directory '{}' {}", flag, path, dir,
                                 errno == ENOENT ? "does not exist" : std::strerror(errno)));
  if (!S_ISDIR(ds.st_mode))
    throw UsageError(fmt::format("{}: cannot write '{}': '{}' is not a directory", flag, path, dir));
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw UsageError(fmt::format("{}: cannot write '{}': directory '{}' is not writable ({})", flag,
                                 path, dir, std::strerror(errno)));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode) && ::stat(path.c_str(), &st) != 0)
      throw UsageError(fmt::format("{}: '{}' is a dangling symbolic link", flag, path));
    if (!S_ISREG(st.st_mode))
      throw UsageError(fmt::format("{}: '{}' exists and is {}; refusing to replace it", flag, path,
                                   kind_of(st.st_mode)));
    for (const std::string& in : inputs) {
      struct stat is {};
      if (!in.empty() && ::stat(in.c_str(), &is) == 0 && is.st_dev == st.st_dev && is.st_ino == st.st_ino)
        throw UsageError(fmt::format("{}: '{}' is the input '{}'; refusing to overwrite an input", flag,
                                     path, in));
    }
  }
  // A real probe: create and remove a unique file next to the target (read-only file systems,
  // quotas and ACLs that access() does not see).
  std::string probe = dir + "/.tapegrad_probe_XXXXXX";
  int fd = ::mkstemp(probe.data());
  if (fd < 0)
    throw UsageError(fmt::format("{}: cannot write '{}' in '{}': {}", flag, path, dir, std::strerror(errno)));
  ::close(fd);
  ::unlink(probe.c_str());
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(tmp.data());  // O_CREAT | O_EXCL: never follows a symlink
  if (fd < 0) throw FileError(fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
  std::size_t done = 0;
  bool ok = true;
  while (ok && done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ok = false;
    else done += std::size_t(n);
  }
  int err = errno;
  ok = ok && ::fchmod(fd, 0644) == 0 && ::fsync(fd) == 0;
  if (!ok) err = errno;
  ok = (::close(fd) == 0) && ok;
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) ok = false, err = errno;
  if (!ok) {
    ::unlink(tmp.c_str());
    throw FileError(fmt::format("cannot write '{}': {}", path, std::strerror(err)));
  }
}

// ---- signals -------------------------------------------------------------------------------------

namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void record_signal(int sig) { g_signal = sig; }
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};
}  // namespace

StopSignals::StopSignals() : old_(new struct ::sigaction[3]) {
  struct ::sigaction sa {};
  sa.sa_handler = record_signal;
  sigemptyset(&sa.sa_mask);
  auto* old = static_cast<struct ::sigaction*>(old_);
  for (int i = 0; i < 3; ++i) {
    ::sigaction(kStopSignals[i], nullptr, &old[i]);
    // A hangup ignored when the program started stays ignored: `nohup char_gru train ... &`
    // must outlive the terminal, as it would without this handler. SIGINT and SIGTERM are
    // always caught (a script's background job inherits SIGINT ignored, and `kill -INT` to it
    // still means "save and stop").
    if (kStopSignals[i] == SIGHUP && old[i].sa_handler == SIG_IGN) continue;
    ::sigaction(kStopSignals[i], &sa, nullptr);
  }
}

StopSignals::~StopSignals() {
  auto* old = static_cast<struct ::sigaction*>(old_);
  for (int i = 0; i < 3; ++i) ::sigaction(kStopSignals[i], &old[i], nullptr);
  delete[] old;
}

bool StopSignals::requested() { return g_signal != 0; }

const char* StopSignals::name() {
  switch (g_signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "";
  }
}

SignalBlock::SignalBlock() {
  static_assert(sizeof(sigset_t) <= sizeof(old_), "sigset_t does not fit");
  sigset_t set;
  sigemptyset(&set);
  for (int s : kStopSignals) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, reinterpret_cast<sigset_t*>(old_));
}

SignalBlock::~SignalBlock() { ::sigprocmask(SIG_SETMASK, reinterpret_cast<sigset_t*>(old_), nullptr); }

// ---- progress ------------------------------------------------------------------------------------

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

namespace {
std::string clock_str(double seconds) {
  auto s = static_cast<long>(std::max(0.0, std::min(seconds, 359999.0)));
  return s >= 3600 ? fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60)
                   : fmt::format("{:02d}:{:02d}", s / 60, s % 60);
}
}  // namespace

Progress::Progress(std::size_t first_step, std::size_t total_steps, double units_per_step,
                   const char* unit)
    : first_(first_step), total_(total_steps), units_per_step_(units_per_step), unit_(unit),
      tty_(::isatty(STDERR_FILENO) != 0), t0_(now_seconds()) {}

void Progress::update(std::size_t step, double loss) {
  double now = now_seconds(), elapsed = now - t0_;
  std::size_t done = step + 1 - first_;
  bool report = tty_ ? now - last_ > 0.2 : (step + 1) % std::max<std::size_t>(1, total_ / 10) == 0;
  if (!report && step + 1 != total_) return;
  last_ = now;
  double rate = double(done) * units_per_step_ / std::max(elapsed, 1e-9);
  double eta = elapsed / double(done) * double(total_ - step - 1);
  std::size_t width = 24, fill = width * (step + 1) / total_;
  fmt::print(stderr, "{}step {:>6}/{} [{}{}] loss {:.4f} | {:.1f}k {}/s | ETA {}{}", tty_ ? "\r" : "",
             step + 1, total_, std::string(fill, '#'), std::string(width - fill, '.'), loss,
             rate / 1000, unit_, clock_str(eta), tty_ ? "   " : "\n");
}

void Progress::finish() {
  if (tty_) fmt::print(stderr, "\n");
}

}  // namespace cli
