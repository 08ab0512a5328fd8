// tapegrad grading — see grading.hpp. Two halves: the test program's harness (test_main: one
// test per process, its result written on a pipe with the grader's token) and the grader
// (grader_main: forks and execs the test program once per test, under limits, and scores).
#include "framework/grading/grading.hpp"

#include <cxxabi.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <typeinfo>
#include <utility>
#include <vector>

#include "framework/error.hpp"
#include "framework/module.hpp"
#include "framework/npz.hpp"

extern char** environ;

namespace tapegrad::grading {

// ==== writing tests ==================================================================================
Outcome& Outcome::add(std::string line) {
  lines.push_back(std::move(line));
  return *this;
}

std::string Context::fixture(const std::string& file) const { return fixture_dir + "/" + file; }

std::string Layout::describe_row(std::size_t row, std::size_t rows) const {
  if (labels.empty() || rows == 0 || rows % labels.size() != 0) return "";
  std::size_t block = rows / labels.size(), k = row / block;
  return fmt::format(" — the {} {} (rows {}..{})", labels[k], kind, k * block,
                     k * block + block - 1);
}

std::string index_str(const std::vector<std::size_t>& index) {
  return fmt::format("({})", fmt::join(index, ", "));
}

Diff compare(const Tensor& yours, const Tensor& expected, std::size_t keep) {
  Diff d;
  if (!yours.defined() || !expected.defined() || yours.shape() != expected.shape()) {
    d.same_shape = false;
    d.max_abs = INFINITY;
    d.shape_message =
        !yours.defined() ? "is undefined (no value: unused, or detached?)"
                         : fmt::format("has shape {}, expected {}", shape_str(yours.shape()),
                                       expected.defined() ? shape_str(expected.shape()) : "?");
    return d;
  }
  const Shape& s = yours.shape();
  std::vector<std::pair<double, std::size_t>> all;
  all.reserve(yours.numel());
  for (std::size_t k = 0; k < yours.numel(); ++k) {
    double e = std::fabs(yours.at(k) - expected.at(k));
    if (std::isnan(e)) e = INFINITY;
    all.emplace_back(e, k);
  }
  keep = std::min(keep, all.size());
  std::partial_sort(all.begin(), all.begin() + keep, all.end(),
                    [](auto& a, auto& b) { return a.first > b.first; });
  for (std::size_t j = 0; j < keep; ++j) {
    Position p;
    p.index.assign(s.size(), 0);
    for (std::size_t a = s.size(), rest = all[j].second; a-- > 0; rest /= s[a]) p.index[a] = rest % s[a];
    p.yours = yours.at(all[j].second), p.expected = expected.at(all[j].second);
    d.worst.push_back(p);
  }
  d.max_abs = all.empty() ? 0 : all[0].first;
  return d;
}

std::string describe(const std::string& what, const Diff& d, const Layout& layout,
                     const std::string& expected_label, std::size_t rows) {
  if (!d.same_shape) return fmt::format("{} {}", what, d.shape_message);
  if (d.worst.empty()) return fmt::format("{} is empty", what);
  std::string out = fmt::format("{} differs by up to {:.2e}", what, d.max_abs);
  for (std::size_t j = 0; j < d.worst.size(); ++j) {
    const Position& p = d.worst[j];
    if (j > 0 && std::fabs(p.yours - p.expected) == 0) break;
    std::string gate = p.index.empty() ? "" : layout.describe_row(p.index[0], rows);
    out += fmt::format("{}{}{}: yours {:.8f}, {} {:.8f}", j == 0 ? " at " : "; also at ",
                       index_str(p.index), gate, p.yours, expected_label, p.expected);
  }
  return out;
}

bool check_close(Outcome& o, const std::string& what, const Tensor& yours, const Tensor& expected,
                 double tol, const Layout& layout, const std::string& expected_label) {
  Diff d = compare(yours, expected);
  if (d.within(tol)) return true;
  o.passed = false;
  std::size_t rows = yours.defined() && yours.dim() > 0 ? yours.size(0) : 0;
  o.lines.push_back(describe(what, d, layout, expected_label, rows));
  return false;
}

std::optional<std::vector<std::string>> diagnose(const std::vector<Tensor>& yours,
                                                 const std::vector<Mistake>& mistakes,
                                                 const MistakeReference& reference, double tol,
                                                 int max_combined) {
  const std::size_t n = std::min<std::size_t>(mistakes.size(), 16);
  static const char* kCount[] = {"", "one", "two", "three", "four"};
  for (int k = 1; k <= max_combined && k <= 4; ++k)
    for (unsigned mask = 1; mask < (1u << n); ++mask) {
      if (__builtin_popcount(mask) != k) continue;
      std::vector<Tensor> ref;
      try {
        ref = reference(mask);
      } catch (const std::exception&) {
        continue;
      }
      bool all = ref.size() == yours.size();
      for (std::size_t j = 0; all && j < ref.size(); ++j) all = compare(yours[j], ref[j]).within(tol);
      if (!all) continue;
      std::vector<std::string> lines;
      if (k == 1) {
        for (std::size_t b = 0; b < n; ++b)
          if (mask >> b & 1u) lines.push_back("hint: " + mistakes[b].hint);
      } else {
        lines.push_back(fmt::format("hint: {} mistakes at once (each alone would not explain your "
                                    "result):", kCount[k]));
        int j = 0;
        for (std::size_t b = 0; b < n; ++b)
          if (mask >> b & 1u) lines.push_back(fmt::format("  ({}) {}", ++j, mistakes[b].hint));
      }
      return lines;
    }
  return std::nullopt;
}

std::vector<Tensor> leaves(const std::vector<Tensor>& in, bool requires_grad) {
  std::vector<Tensor> out;
  for (const Tensor& t : in) out.push_back(t.detach().requires_grad_(requires_grad));
  return out;
}

Fixture::Fixture(std::string path)
    : path_(std::move(path)), archive_(std::make_shared<npz::Archive>(npz::load_npz(path_))) {}

Tensor Fixture::operator[](const std::string& key) const {
  return from_npz_array(npz::find(*archive_, key, path_), path_ + ":" + key);
}

std::string gradcheck_line(const InputCheck& c, const Tensor& x) {
  if (c.passed) return fmt::format("{}: relative error {:.2e}", c.name, c.relative_error);
  std::size_t flat = 0;
  bool element = c.worst_index.size() == x.dim();
  for (std::size_t a = 0; element && a < x.dim(); ++a) flat = flat * x.size(a) + c.worst_index[a];
  return fmt::format("relative error {:.2e}; worst element {}{}{}: your backward gives {:.8f}, "
                     "central differences {:.8f}",
                     c.relative_error, c.name, index_str(c.worst_index),
                     element && flat < x.numel() ? fmt::format(" = {}", x.at(flat)) : "",
                     c.analytic, c.numeric);
}

// ==== the test program ===============================================================================
namespace {

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : name;
  std::free(d);
  return out;
}

Outcome run_one(const TestFn& fn, const Context& ctx, std::size_t memory_mb) {
  try {
    return fn(ctx);
  } catch (const NotImplemented& e) {
    return Outcome{}.add(fmt::format("not implemented yet ({})", e.what()));
  } catch (const std::bad_alloc&) {
    return Outcome{}.add(fmt::format(
        "your code ran out of memory (std::bad_alloc; this test may use {} MB of address space)",
        memory_mb));
  } catch (const tapegrad::Error& e) {
    return Outcome{}.add(fmt::format("your code raised an error: {}", e.what()));
  } catch (const std::logic_error& e) {
    return Outcome{}.add(fmt::format(
        "your code raised {}: {} — a bug in the code (an index out of range with .at(), a "
        "failed check), not a TODO",
        demangle(typeid(e).name()), e.what()));
  } catch (const std::exception& e) {
    return Outcome{}.add(fmt::format("your code raised {}: {}", demangle(typeid(e).name()), e.what()));
  } catch (...) {
    return Outcome{}.add("your code threw something that is not a std::exception");
  }
}

bool write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    off += static_cast<std::size_t>(w);
  }
  return true;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

constexpr const char* kMagic = "TGR1";

}  // namespace

int test_main(int argc, char** argv, const Manifest& manifest, const std::vector<TestImpl>& tests) {
  for (std::size_t i = 0; i < std::max(manifest.tests.size(), tests.size()); ++i)
    if (i >= tests.size() || i >= manifest.tests.size() || tests[i].name != manifest.tests[i].name) {
      std::fprintf(stderr, "test program: test %zu does not match the manifest\n", i);
      return 2;
    }
  long run = -1;
  int result_fd = -1, token_fd = -1;
  bool list = false, all = false;
  Context ctx;
  auto usage = [&](const std::string& problem) {
    if (!problem.empty()) std::fprintf(stderr, "error: %s\n", problem.c_str());
    std::fprintf(stderr,
                 "usage: %s --list | --all [--fixtures DIR] | --run-test N --result-fd R "
                 "--token-fd T [--fixtures DIR]\n(run by the grader; not a grade by itself)\n",
                 argv[0]);
    return 2;
  };
  // A whole number in [0, limit] written in decimal digits only, or -1.
  auto whole = [](const std::string& text, long limit) -> long {
    if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos) return -1;
    const long v = std::stol(text);
    return v <= limit ? v : -1;
  };
  for (int a = 1; a < argc; ++a) {
    std::string arg = argv[a];
    if (arg == "--list") { list = true; continue; }
    if (arg == "--all") { all = true; continue; }
    if (arg != "--run-test" && arg != "--result-fd" && arg != "--token-fd" && arg != "--fixtures")
      return usage("unknown option '" + arg + "'");
    if (a + 1 >= argc) return usage(arg + " needs a value");
    const std::string value = argv[++a];
    if (arg == "--fixtures") {
      ctx.fixture_dir = value;
      continue;
    }
    const long v = whole(value, arg == "--run-test" ? 1000000 : 1000000000);
    if (v < 0) return usage(arg + ": '" + value + "' is not a whole number");
    if (arg == "--run-test") run = v;
    else if (arg == "--result-fd") result_fd = static_cast<int>(v);
    else token_fd = static_cast<int>(v);
  }
  if (list) {
    for (const TestSpec& t : manifest.tests) std::printf("%s\n", t.name.c_str());
    return 0;
  }
  if (all) {  // the instructor's debugging mode: no isolation and no score
    bool ok = true;
    for (std::size_t i = 0; i < tests.size(); ++i) {
      Outcome o = run_one(tests[i].fn, ctx, manifest.tests[i].memory_limit_mb);
      ok = ok && o.passed;
      std::printf("[%s] %s\n", o.passed ? "PASS" : "FAIL", tests[i].name.c_str());
      for (const auto& l : o.lines) std::printf("       %s\n", l.c_str());
    }
    std::printf("(--all runs every test in one process, unisolated: use the grader for a score)\n");
    return ok ? 0 : 1;
  }
  if (run < 0 || static_cast<std::size_t>(run) >= tests.size() || result_fd < 0 || token_fd < 0) {
    std::fprintf(stderr, "test program: --run-test N (0..%zu), --result-fd and --token-fd are needed\n",
                 tests.size() - 1);
    return 2;
  }
  std::string token;
  char buf[128];
  for (ssize_t r; (r = ::read(token_fd, buf, sizeof buf)) != 0;) {
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || token.size() > 256) break;
    token.append(buf, static_cast<std::size_t>(r));
  }
  ::close(token_fd);
  while (!token.empty() && (token.back() == '\n' || token.back() == ' ')) token.pop_back();
  std::fflush(stdout);
  Outcome o = run_one(tests[run].fn, ctx, manifest.tests[run].memory_limit_mb);
  std::fflush(stdout);
  std::fflush(stderr);
  std::string body = join_lines(o.lines);
  std::string record = fmt::format("{} {} {} {} {}\n{}", kMagic, token, run,
                                   o.passed ? "PASS" : "FAIL", body.size(), body);
  write_all(result_fd, record);
  ::close(result_fd);
  std::_Exit(0);  // no static destructors or atexit handlers of the submission after the result
}

// ==== the grader =====================================================================================
namespace {

struct RunResult {
  bool passed = false;
  std::vector<std::string> lines;
  std::string printed;  // the test program's stdout + stderr
  double seconds = 0;
};

std::string random_token() {
  unsigned char bytes[16] = {};
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  bool ok = fd >= 0 && ::read(fd, bytes, sizeof bytes) == static_cast<ssize_t>(sizeof bytes);
  if (fd >= 0) ::close(fd);
  if (!ok) throw std::runtime_error("grader: cannot read /dev/urandom for the run's token");
  std::string hex;
  for (unsigned char b : bytes) hex += fmt::format("{:02x}", b);
  return hex;
}

std::string signal_text(int sig, const TestSpec& spec) {
  switch (sig) {
    case SIGSEGV:
      return "crashed: segmentation fault (a read or write out of bounds, e.g. through data<T>() "
             "or a dangling reference?)";
    case SIGBUS: return "crashed: bus error";
    case SIGFPE: return "crashed: arithmetic exception (an integer division by zero?)";
    case SIGABRT:
      return "aborted (std::terminate: an exception escaping a destructor or noexcept function, "
             "a failed assert, or memory exhausted inside the runtime)";
    case SIGXCPU:
      return fmt::format("used more than {:g} s of CPU time: stopped (an infinite loop?)",
                         std::ceil(spec.time_limit_s) + 1);
    case SIGKILL: return "was killed (SIGKILL: out of memory, or the CPU-time limit)";
    default: return fmt::format("was killed by signal {} ({})", sig, strsignal(sig));
  }
}

// A program built with -fsanitize=address/undefined does not die by a signal when it faults: the
// sanitizer prints a report and exits with code 1. Name that as the crash it is, quoting the
// report's first line (a student who prints such a line only loses the test, so it cannot be used
// to forge a pass).
std::string sanitizer_report(const std::string& printed) {
  for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error: "}) {
    auto at = printed.find(marker);
    if (at == std::string::npos) continue;
    auto begin = printed.rfind('\n', at);
    begin = begin == std::string::npos ? 0 : begin + 1;
    auto end = printed.find('\n', at);
    std::string line = printed.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    if (line.size() > 200) line = line.substr(0, 200) + "…";
    return line;
  }
  return {};
}

RunResult run_test(const std::string& program, std::size_t index, const TestSpec& spec,
                   const std::string& fixtures, bool memory_limit) {
  RunResult rr;
  const std::string token = random_token();
  int res[2], tok[2], out[2];
  if (::pipe2(res, O_CLOEXEC) || ::pipe2(tok, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC))
    throw std::runtime_error(std::string("grader: pipe: ") + std::strerror(errno));
  // Everything the child needs is prepared before fork: between fork and exec it only makes
  // async-signal-safe calls.
  std::vector<std::string> args = {program,       "--run-test",          std::to_string(index),
                                   "--result-fd", std::to_string(res[1]), "--token-fd",
                                   std::to_string(tok[0]), "--fixtures", fixtures};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_store = {"OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1"};
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "OPENBLAS_NUM_THREADS=", 21) && std::strncmp(*e, "OMP_NUM_THREADS=", 16))
      env_store.push_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  const rlim_t cpu = static_cast<rlim_t>(std::ceil(spec.time_limit_s)) + 1;
  const rlim_t mem = static_cast<rlim_t>(spec.memory_limit_mb) << 20;
  const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  auto start = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("grader: fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::fcntl(res[1], F_SETFD, 0);  // keep the result and token pipes across exec
    ::fcntl(tok[0], F_SETFD, 0);
    struct rlimit l;
    l.rlim_cur = cpu, l.rlim_max = cpu + 1;
    ::setrlimit(RLIMIT_CPU, &l);
    l.rlim_cur = l.rlim_max = 0;
    ::setrlimit(RLIMIT_CORE, &l);
    l.rlim_cur = l.rlim_max = rlim_t(256) << 20;
    ::setrlimit(RLIMIT_FSIZE, &l);
    if (memory_limit) {
      l.rlim_cur = l.rlim_max = mem;
      ::setrlimit(RLIMIT_AS, &l);
    }
    ::execve(program.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from here: no race with the child's own call
  ::close(res[1]), ::close(tok[0]), ::close(out[1]);
  if (devnull >= 0) ::close(devnull);
  std::string tok_line = token + "\n";
  write_all(tok[1], tok_line);
  ::close(tok[1]);

  std::string result, printed;
  bool res_open = true, out_open = true, timed_out = false, exited = false;
  int status = 0;
  const auto deadline = start + std::chrono::duration<double>(spec.time_limit_s);
  char buf[8192];
  constexpr std::size_t kMaxResult = 1 << 20, kMaxPrinted = 1 << 16;
  while (true) {
    pollfd fds[2];
    nfds_t n = 0;
    if (res_open) fds[n++] = {res[0], POLLIN, 0};
    if (out_open) fds[n++] = {out[0], POLLIN, 0};
    int wait_ms = 50;
    if (n > 0) ::poll(fds, n, wait_ms);
    else ::poll(nullptr, 0, wait_ms);
    for (nfds_t k = 0; k < n; ++k) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t r = ::read(fds[k].fd, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      bool is_res = fds[k].fd == res[0];
      if (r <= 0) {
        (is_res ? res_open : out_open) = false;
        continue;
      }
      std::string& dst = is_res ? result : printed;
      if (dst.size() < (is_res ? kMaxResult : kMaxPrinted)) dst.append(buf, static_cast<std::size_t>(r));
    }
    if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) exited = true;
    if (exited && !res_open && !out_open) break;
    if (exited) {  // a grandchild may hold the pipes: drain what is there, then stop
      ::kill(-pid, SIGKILL);
      for (int fd : {res[0], out[0]}) ::fcntl(fd, F_SETFL, O_NONBLOCK);
      for (int fd : {res[0], out[0]}) {
        if ((fd == res[0] && !res_open) || (fd == out[0] && !out_open)) continue;
        std::string& dst = fd == res[0] ? result : printed;
        for (ssize_t r; (r = ::read(fd, buf, sizeof buf)) > 0;)
          if (dst.size() < kMaxResult) dst.append(buf, static_cast<std::size_t>(r));
      }
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      exited = true;
      break;
    }
  }
  ::kill(-pid, SIGKILL);  // whatever the test process started
  ::close(res[0]), ::close(out[0]);
  rr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rr.printed = printed;

  // ---- the verdict: only a well-formed record carrying this run's token counts --------------------
  auto nl = result.find('\n');
  if (!result.empty() && nl != std::string::npos) {
    char magic[8] = {}, verdict[8] = {}, tok_got[80] = {};
    long idx = -1;
    unsigned long len = 0;
    std::string head = result.substr(0, nl);
    bool parsed = std::sscanf(head.c_str(), "%7s %79s %ld %7s %lu", magic, tok_got, &idx, verdict,
                              &len) == 5;
    if (parsed && std::string(magic) == kMagic && tok_got == token &&
        idx == static_cast<long>(index) && len == result.size() - nl - 1 &&
        (std::string(verdict) == "PASS" || std::string(verdict) == "FAIL")) {
      rr.passed = std::string(verdict) == "PASS";
      std::string body = result.substr(nl + 1);
      for (std::size_t p = 0, q; p < body.size(); p = q + 1) {
        q = body.find('\n', p);
        if (q == std::string::npos) q = body.size();
        rr.lines.push_back(body.substr(p, q - p));
      }
      return rr;
    }
    rr.lines.push_back(
        "the test program wrote a result that does not carry this run's token (or is malformed): "
        "ignored, the test fails");
    return rr;
  }
  if (timed_out)
    rr.lines.push_back(fmt::format(
        "timed out: no result within {:g} s of wall-clock time (an infinite loop, or far too "
        "slow?): stopped",
        spec.time_limit_s));
  else if (WIFSIGNALED(status))
    rr.lines.push_back("the test " + signal_text(WTERMSIG(status), spec));
  else if (std::string report = sanitizer_report(printed); !report.empty())
    rr.lines.push_back("the test crashed: a sanitizer stopped it (" + report + ")");
  else if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && printed.empty())
    rr.lines.push_back("the grader could not start the test program " + program);
  else
    rr.lines.push_back(fmt::format(
        "the test program exited (code {}) before the test reported a result: exit(), _Exit() "
        "or quick_exit() was called by your code (perhaps in a static initializer), or the test "
        "program is broken",
        WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  return rr;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04x}", c);
        else out += static_cast<char>(c);
    }
  }
  return out;
}

/// Replaces bytes that are not valid UTF-8 (a student's output may hold anything) with '?'.
std::string sanitize_utf8(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 2;
    if (ok) out.append(s, i, n), i += n;
    else out += '?', ++i;
  }
  return out;
}

/// Writes a report atomically (npz::write_file_atomically: Gradescope never reads half of one, and
/// an interrupted run leaves no stub); false, with the reason on stderr, when it cannot.
bool write_text_file(const std::string& path, const std::string& text) {
  try {
    npz::write_file_atomically(path, text);
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return false;
  }
}

/// The upper bound of --time-limit, in seconds (a day): beyond it a limit is a typing error, and
/// the resource limits derived from it would overflow.
constexpr double kMaxTimeLimit = 86400;

/// --time-limit's value: a finite number of seconds in (0, kMaxTimeLimit], else an error message.
bool parse_time_limit(const std::string& text, double& out, std::string& error) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(v) || v <= 0 ||
      v > kMaxTimeLimit) {
    error = fmt::format("--time-limit: '{}' is not a number of seconds in (0, {:g}]", text, kMaxTimeLimit);
    return false;
  }
  out = v;
  return true;
}

/// Why a report cannot be written to `path` (given with `flag`), or "" when it can be: checked
/// before any test runs, so that a mistyped path does not cost a whole grading run.
std::string unwritable_reason(const std::string& flag, const std::string& path) {
  if (path.empty()) return flag + ": the path is empty";
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return fmt::format("{}: '{}' is a directory", flag, path);
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    return fmt::format("{}: '{}' exists and is not a regular file", flag, path);
  const std::size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return fmt::format("{}: cannot write '{}': directory '{}' does not exist", flag, path, dir);
  if (::access(dir.c_str(), W_OK) != 0)
    return fmt::format("{}: cannot write '{}': directory '{}' is not writable", flag, path, dir);
  return "";
}

/// Whether two report paths name the same file (the same string, or one existing file).
bool same_file(const std::string& a, const std::string& b) {
  if (a == b) return true;
  struct stat sa {}, sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

}  // namespace

int grader_main(int argc, char** argv, const Manifest& manifest, const GraderConfig& config) {
  std::string results_path, text_path, fixtures = config.fixture_dir, program = config.test_program;
  bool memory_limit = true;
  double time_limit = 0;  // 0: each test's own
  bool results_given = false, text_given = false, fixtures_given = false, program_given = false;
#if defined(__SANITIZE_ADDRESS__)
  memory_limit = false;  // AddressSanitizer reserves terabytes of address space
#endif
  for (int a = 1; a < argc; ++a) {
    std::string arg = argv[a];
    auto value = [&]() -> std::string {
      if (a + 1 >= argc) {
        std::fprintf(stderr, "error: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++a];
    };
    if (arg == "--results") results_path = value(), results_given = true;
    else if (arg == "--text") text_path = value(), text_given = true;
    else if (arg == "--fixtures") fixtures = value(), fixtures_given = true;
    else if (arg == "--tests") program = value(), program_given = true;
    else if (arg == "--no-memory-limit") memory_limit = false;
    else if (arg == "--time-limit") {
      std::string error;
      if (!parse_time_limit(value(), time_limit, error)) {
        std::fprintf(stderr, "error: %s\n", error.c_str());
        return 2;
      }
    } else if (arg == "--help" || arg == "-h") {
      std::printf(
          "%s — grades a submission: %s\n\n"
          "  --results FILE      write Gradescope's results.json\n"
          "  --text FILE         also write the report to FILE\n"
          "  --fixtures DIR      PyTorch fixtures (default %s)\n"
          "  --tests PROGRAM     the compiled tests (default %s)\n"
          "  --time-limit S      every test's wall-clock limit, in seconds, at most a day (default: the manifest's)\n"
          "  --no-memory-limit   no address-space limit (sanitizer builds)\n\n"
          "Each test runs in its own process with time and memory limits. Exit 0 only when every "
          "test passes.\n",
          argv[0], manifest.title.c_str(), config.fixture_dir.c_str(), config.test_program.c_str());
      return 0;
    } else {
      std::fprintf(stderr, "error: unknown option '%s' (see --help)\n", arg.c_str());
      return 2;
    }
  }
  // Everything the flags name is checked before the first test runs.
  std::vector<std::string> errors;
  for (const std::string& why : {results_given ? unwritable_reason("--results", results_path) : "",
                                 text_given ? unwritable_reason("--text", text_path) : ""})
    if (!why.empty()) errors.push_back(why);
  if (!results_path.empty() && !text_path.empty() && same_file(results_path, text_path))
    errors.push_back(fmt::format("--results and --text both name '{}': give two files", results_path));
  struct stat st {};
  if (fixtures_given && (::stat(fixtures.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)))
    errors.push_back(fmt::format("--fixtures: '{}' is not a directory", fixtures));
  if (program_given && (::stat(program.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
                        (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0 || ::access(program.c_str(), X_OK) != 0))
    errors.push_back(fmt::format("--tests: '{}' is not an executable file", program));
  if (!errors.empty()) {
    for (const std::string& e : errors) std::fprintf(stderr, "error: %s\n", e.c_str());
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::fflush(stdout);

  std::string text = fmt::format("Grading submission {} — {}\n\n", config.submission, manifest.title);
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  double score = 0, max_score = 0;
  std::size_t passed = 0;
  std::string tests_json;
  for (std::size_t i = 0; i < manifest.tests.size(); ++i) {
    TestSpec spec = manifest.tests[i];
    if (time_limit > 0) spec.time_limit_s = time_limit;
    RunResult r;
    try {
      r = run_test(program, i, spec, fixtures, memory_limit);
    } catch (const std::exception& e) {
      r.lines = {e.what()};
    }
    if (!r.printed.empty()) {
      r.lines.push_back("your code printed (first 2000 bytes, for information; it does not count):");
      std::string shown = sanitize_utf8(r.printed.substr(0, 2000));
      for (std::size_t p = 0, q; p < shown.size(); p = q + 1) {
        q = shown.find('\n', p);
        if (q == std::string::npos) q = shown.size();
        r.lines.push_back("  | " + shown.substr(p, q - p));
      }
    }
    double got = r.passed ? spec.points : 0;
    score += got, max_score += spec.points, passed += r.passed;
    std::string block = fmt::format("[{}] {}\n", r.passed ? "PASS" : "FAIL", spec.name);
    std::string output;
    for (const std::string& l : r.lines) {
      block += "       " + l + "\n";
      output += l + "\n";
    }
    std::fputs(block.c_str(), stdout);
    std::fflush(stdout);
    text += block;
    tests_json += fmt::format(
        "{}    {{\"name\": \"{}\", \"score\": {}, \"max_score\": {}, \"status\": \"{}\", "
        "\"execution_time\": {:.3f}, \"output\": \"{}\"}}",
        i ? ",\n" : "", json_escape(spec.name), got, spec.points, r.passed ? "passed" : "failed",
        r.seconds, json_escape(sanitize_utf8(output)));
  }
  const bool all = passed == manifest.tests.size();
  std::string tail = fmt::format("\nscore: {:g}/{:g}{}\n", score, max_score,
                                 all ? " — all tests pass" : "");
  std::fputs(tail.c_str(), stdout);
  text += tail;
  int rc = all ? 0 : 1;
  if (!results_path.empty()) {
    std::string json = fmt::format(
        "{{\n  \"score\": {},\n  \"max_score\": {},\n  \"output\": \"{}\",\n  \"tests\": [\n{}\n  ]\n}}\n",
        score, max_score, json_escape(sanitize_utf8(manifest.title)), tests_json);
    if (!write_text_file(results_path, json)) rc = 2;
  }
  if (!text_path.empty() && !write_text_file(text_path, text)) rc = 2;
  return rc;
}

}  // namespace tapegrad::grading
