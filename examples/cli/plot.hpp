// examples/cli/plot — drawing with gnuplot without ever letting user input become gnuplot (or
// shell) syntax.
//
// How: gnuplot is started without a shell (posix_spawn, argv only) and writes the picture to its
// standard output, which we read and then write to the user's path ourselves, atomically; the
// path never reaches gnuplot. Numbers and labels go to gnuplot as a data file in a private
// temporary directory (mkdtemp: a unique name, no symlink followed) that gnuplot reads as data,
// where nothing is substituted. A label is further restricted by label() to characters that mean
// nothing to gnuplot's string and enhanced-text parsers. The script itself is built only from
// our own constants, numbers and label() output.
#pragma once

#include <string>
#include <vector>

namespace cli::plot {

/// "png" or "svg" from the file name's extension; throws cli::UsageError naming `flag`
/// otherwise.
std::string format_for(const std::string& path, const std::string& flag);

/// A label safe inside a gnuplot single-quoted string or a data file: ASCII letters, digits and
/// a few punctuation marks are kept; newline → "\n" shown as "⏎", space → "␠", any other
/// character → "U+XXXX". Never contains quotes, backslashes, backticks, '@', '^', '_', '{', '}',
/// '&', '$', '#', ';', '%' (tic labels are printf formats), '~' or whitespace.
std::string label(char32_t c);
std::string label(const std::string& utf8_text);

/// A private temporary directory (mkdtemp) removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  /// Creates a new file in the directory (O_EXCL) holding `content`; returns its path, which
  /// consists of safe characters only.
  std::string write(const std::string& name, const std::string& content);
  const std::string& path() const { return dir_; }

 private:
  std::string dir_;
};

/// Runs gnuplot on `script` (saved in `dir`; it must not contain "set output") with its picture
/// going to stdout, and returns the picture's bytes. Throws tapegrad::FileError with gnuplot's
/// messages when it cannot be started or fails.
std::string run_gnuplot(TempDir& dir, const std::string& script);

/// run_gnuplot + write the bytes to `path` atomically.
void render(TempDir& dir, const std::string& script, const std::string& path);

}  // namespace cli::plot
