// examples/cli — the plumbing every command-line program here shares, kept out of the programs
// so that they read like the model they run.
//
//   run()            parses the flags (CLI11) and runs the program with one exit-code contract:
//                    0 ok, 1 runtime error ("error: ..."), 2 usage error (a bad flag or value,
//                    found before any work), 3 training diverged (a non-finite loss),
//                    130 interrupted (SIGINT, SIGTERM or SIGHUP).
//   validators       finite numbers, positive/non-negative finite numbers, integer ranges with
//                    readable bounds (CLI11's own checks accept "nan").
//   input files      a regular file (not a directory, FIFO or device) of at most a stated size,
//                    read once.
//   output files     checked before any work: the directory exists and is writable, the target is
//                    absent or a regular file, and it is none of the run's inputs.
//   stop signals     SIGINT, SIGTERM and SIGHUP only set a flag that a training loop polls;
//                    SignalBlock defers them while a checkpoint is being written.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace cli {

/// A bad flag value or a conflict between flags found after parsing: exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Exit codes shared by every program.
enum Exit : int { kOk = 0, kError = 1, kUsage = 2, kDiverged = 3, kInterrupted = 130 };

/// Parses argv into `app` and calls `body`. Help → 0; a parse error or UsageError → 2 with the
/// flag named; any other exception → 1 with "error: <message>". Returns the exit code.
int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

// ---- validators (attach with ->check(...)) ----------------------------------------------------
/// A finite number (rejects nan, inf).
extern const CLI::Validator Finite;
/// A finite number > 0.
extern const CLI::Validator PositiveFinite;
/// A finite number >= 0.
extern const CLI::Validator NonNegativeFinite;
/// An integer in [lo, hi], written as digits only (no sign for unsigned options, no 1e3, no
/// overflow): "--hidden: 0 is not in 1..8192".
CLI::Validator IntRange(std::int64_t lo, std::int64_t hi);
/// Any unsigned 64-bit integer written as digits (no sign, no wrap-around, nothing past 2^64 − 1).
extern const CLI::Validator UInt64;

/// Throws UsageError("--flag: message") unless `ok`.
void require(bool ok, const std::string& flag, const std::string& message);

// ---- input files ---------------------------------------------------------------------------------
/// Default upper bound on an input text file: 256 MiB.
constexpr std::uint64_t kMaxInputBytes = 256ull << 20;
/// Reads a whole regular file of at most max_bytes. Throws tapegrad::FileError naming `what`
/// (e.g. "--corpus") and the path when it is missing, a directory, a FIFO or device, unreadable
/// or too large. Never blocks on a FIFO and never reads without bound.
std::string read_file(const std::string& path, const std::string& what,
                      std::uint64_t max_bytes = kMaxInputBytes);
/// Checks, before any work, that `path` is an existing regular file of at most max_bytes (no
/// read). Throws UsageError naming `what` (exit 2).
void check_input_file(const std::string& path, const std::string& what,
                      std::uint64_t max_bytes = kMaxInputBytes);

// ---- output files --------------------------------------------------------------------------------
/// Checks, before any work, that `path` can be written atomically where the user meant: its
/// directory exists and is writable, the target does not exist or is a regular file (never a
/// device, directory, FIFO or socket), and it is not the same file as any of `inputs`.
/// Throws UsageError naming `flag`.
void check_output_path(const std::string& path, const std::string& flag,
                       const std::vector<std::string>& inputs = {});
/// Writes bytes to `path` atomically: a unique temporary in the same directory (O_EXCL, so it
/// never follows a planted symlink), fsync, rename. The temporary is removed on failure.
void write_file_atomic(const std::string& path, const std::string& bytes);

// ---- stop signals --------------------------------------------------------------------------------
/// Installs handlers for SIGINT, SIGTERM and SIGHUP that only record the signal (SIGHUP only
/// when it was not ignored at start, as under `nohup`). Restores the previous handlers on
/// destruction.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  /// True once any of the three signals arrived.
  static bool requested();
  /// The signal's name ("SIGTERM"), or "" when none arrived.
  static const char* name();

 private:
  void* old_;  // the previous struct sigaction of each signal
};

/// Blocks SIGINT, SIGTERM and SIGHUP for its lifetime (a checkpoint write is not cut in half);
/// a signal that arrives meanwhile is delivered when the block ends.
class SignalBlock {
 public:
  SignalBlock();
  ~SignalBlock();
  SignalBlock(const SignalBlock&) = delete;
  SignalBlock& operator=(const SignalBlock&) = delete;

 private:
  unsigned char old_[128];  // sigset_t
};

// ---- progress ------------------------------------------------------------------------------------
/// "step 120/2000 [##....] loss 2.3 | 284.1k chars/s | ETA 01:05" on stderr: redrawn in place on
/// a terminal, ten lines otherwise.
class Progress {
 public:
  Progress(std::size_t first_step, std::size_t total_steps, double units_per_step,
           const char* unit = "chars");
  /// Call after step `step` (0-based) finished with a smoothed loss.
  void update(std::size_t step, double loss);
  /// Ends the in-place line.
  void finish();
  bool tty() const { return tty_; }

 private:
  std::size_t first_, total_;
  double units_per_step_;
  const char* unit_;
  bool tty_;
  double t0_, last_ = -1;
};

/// Seconds on a monotonic clock.
double now_seconds();
/// Peak resident set size of this process, MB.
double peak_rss_mb();

}  // namespace cli
