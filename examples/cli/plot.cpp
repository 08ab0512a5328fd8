// examples/cli/plot — see plot.hpp.
#include "cli/plot.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

#include "cli/cli.hpp"
#include "framework/error.hpp"

extern char** environ;

namespace cli::plot {

using tapegrad::FileError;

std::string format_for(const std::string& path, const std::string& flag) {
  auto ends = [&](const char* ext) {
    std::size_t n = std::strlen(ext);
    return path.size() > n && path.compare(path.size() - n, n, ext) == 0;
  };
  if (ends(".png")) return "png";
  if (ends(".svg")) return "svg";
  throw UsageError(fmt::format("{}: '{}' must end in .png or .svg", flag, path));
}

namespace {

bool safe_char(char32_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  // Not '%' (a tic label is a printf format: 'a%s' 1 prints "a1.000000") and not '~' (enhanced
  // text's overprint), besides the quotes, escapes and markup listed in plot.hpp.
  return std::strchr("!()*+,-./:<=>?[]|", static_cast<int>(c)) != nullptr && c != 0 && c < 0x80;
}

bool safe_path(const std::string& p) {
  for (char c : p)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
          c == '.' || c == '_' || c == '-'))
      return false;
  return !p.empty();
}

}  // namespace

std::string label(char32_t c) {
  if (c == U'\n') return "⏎";
  if (c == U' ') return "␠";
  if (c == U'\t') return "⇥";
  if (safe_char(c)) return std::string(1, static_cast<char>(c));
  return fmt::format("U+{:04X}", static_cast<std::uint32_t>(c));
}

std::string label(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    // Decode one UTF-8 character leniently (labels only; invalid bytes become U+FFFD).
    unsigned char b = static_cast<unsigned char>(s[i]);
    std::size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    char32_t cp = 0xFFFD;
    if (len && i + len <= s.size()) {
      cp = len == 1 ? b : b & (0x7F >> len);
      for (std::size_t k = 1; k < len; ++k) {
        unsigned char cc = static_cast<unsigned char>(s[i + k]);
        if ((cc >> 6) != 2) { cp = 0xFFFD, len = k; break; }
        cp = (cp << 6) | (cc & 0x3F);
      }
    } else {
      len = 1;
    }
    out += label(cp);
    i += len;
  }
  return out;
}

TempDir::TempDir() {
  const char* env = std::getenv("TMPDIR");
  // Absolute only: the script's path is gnuplot's argv[1], which must not start with '-'.
  std::string base = env && env[0] == '/' && safe_path(env) ? env : "/tmp";
  std::string tmpl = base + "/tapegrad_plot_XXXXXX";
  if (!::mkdtemp(tmpl.data()))
    throw FileError(fmt::format("cannot create a temporary directory in '{}': {}", base, std::strerror(errno)));
  dir_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) {
  if (!safe_path(name) || name.find('/') != std::string::npos)
    throw FileError(fmt::format("temporary file name '{}' is not a plain name", name));
  std::string path = dir_ + "/" + name;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) throw FileError(fmt::format("cannot create '{}': {}", path, std::strerror(errno)));
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      throw FileError(fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
    }
    done += std::size_t(n);
  }
  ::close(fd);
  return path;
}

std::string run_gnuplot(TempDir& dir, const std::string& script) {
  if (script.find("set output") != std::string::npos)
    throw FileError("internal: a plot script must not set its output");
  std::string script_path = dir.write("plot.gp", script);
  std::string err_path = dir.path() + "/gnuplot.err";

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw FileError(fmt::format("--plot: pipe: {}", std::strerror(errno)));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  std::string prog = "gnuplot";
  std::vector<char*> argv = {prog.data(), script_path.data(), nullptr};
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, "gnuplot", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    throw FileError(fmt::format("--plot: cannot start gnuplot ({}); Debian: apt-get install gnuplot-nox",
                                std::strerror(rc)));
  }
  std::string bytes;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    bytes.append(buf, std::size_t(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string messages;
  try {
    messages = cli::read_file(err_path, "gnuplot's messages", 1 << 20);
  } catch (const std::exception&) {
  }
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && !bytes.empty();
  if (!ok)
    throw FileError(fmt::format("--plot: gnuplot failed ({}){}{}",
                                WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                                  : fmt::format("signal {}", WTERMSIG(status)),
                                messages.empty() ? "" : ":\n", messages));
  return bytes;
}

void render(TempDir& dir, const std::string& script, const std::string& path) {
  write_file_atomic(path, run_gnuplot(dir, script));
}

}  // namespace cli::plot
