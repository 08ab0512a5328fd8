// Shared by the tests that run an example program as a user would, without a shell
// (test_gradient_flow_trained.cpp, test_plot_safety.cpp): a private temporary directory, reading
// a whole file, and running a program with its stdout, stderr and exit code captured.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace tapegrad::process {

/// A private temporary directory (mkdtemp, named prefix_XXXXXX), removed with its contents.
struct ScratchDir {
  explicit ScratchDir(const std::string& prefix = "tapegrad_test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
    if (::mkdtemp(tmpl.data())) path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string path;
};

/// The whole file (empty when it cannot be read).
inline std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Proc {
  int code = -1;  // the exit code, or 128 + the signal
  std::string out, err;
};

/// Runs `exe args` without a shell, stdout and stderr captured. With `cwd` it runs there; with
/// `tmpdir` its TMPDIR is that (the rest of the environment is this process's).
inline Proc run(const std::string& exe, const std::vector<std::string>& args,
                const std::string& cwd = "", const std::string& tmpdir = "") {
  ScratchDir io;
  const std::string out = io.path + "/out", err = io.path + "/err";
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (tmpdir.empty() || std::strncmp(*e, "TMPDIR=", 7) != 0) env_strings.emplace_back(*e);
  if (!tmpdir.empty()) env_strings.push_back("TMPDIR=" + tmpdir);
  std::vector<char*> env;
  for (std::string& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  std::vector<char*> argv = {const_cast<char*>(exe.c_str())};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (o < 0 || e < 0 || (!cwd.empty() && ::chdir(cwd.c_str()) != 0)) ::_exit(127);
    ::dup2(o, 1);
    ::dup2(e, 2);
    ::execve(exe.c_str(), argv.data(), env.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  Proc p;
  p.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  p.out = slurp(out);
  p.err = slurp(err);
  return p;
}

}  // namespace tapegrad::process
