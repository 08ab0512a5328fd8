// Hostile input never becomes gnuplot (or shell) syntax (examples/cli/plot.hpp).
//
// The programs that plot (gradient_flow, in both modes, and gru_gates when it is built) are run
// with quotes, backticks, `system`, `$(...)`, newlines, backslashes and ';' in every string that
// reaches a plot: the --plot path, the --text, the characters of the model's vocabulary, the
// checkpoint's path. Each run happens in a fresh directory (gnuplot's working directory) with
// TMPDIR pointing into it; afterwards no file named PWNED exists anywhere in it, the picture is
// exactly at the path given (a real PNG or SVG), nothing else was created, and the private
// temporary directory is gone. Planted symlinks are never followed.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "char_model.hpp"
#include "cli/cli.hpp"
#include "cli/plot.hpp"
#include "process_support.hpp"

namespace fs = std::filesystem;
using namespace tapegrad;

namespace {

const std::string kBin = TAPEGRAD_EXAMPLES_BIN_DIR;

using process::Proc;
using process::ScratchDir;
using process::slurp;

/// Runs `program args` without a shell, in `cwd`, with TMPDIR=`tmpdir`; output captured.
Proc run(const std::string& program, const std::vector<std::string>& args, const std::string& cwd,
         const std::string& tmpdir) {
  return process::run(kBin + "/" + program, args, cwd, tmpdir);
}

bool built(const std::string& program) { return ::access((kBin + "/" + program).c_str(), X_OK) == 0; }

/// Every path under `root` (relative), symlinks not followed.
std::set<std::string> tree(const std::string& root) {
  std::set<std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it)
    out.insert(it->path().lexically_relative(root).string());  // fs::relative would resolve symlinks
  return out;
}

bool pwned(const std::string& root) {
  for (const std::string& p : tree(root))
    if (p.find("PWNED") != std::string::npos && fs::path(p).filename() == "PWNED") return true;
  return fs::exists("PWNED");
}

bool is_picture(const std::string& path) {
  std::string b = slurp(path);
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".png") == 0)
    return b.size() > 8 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
  return b.find("<svg") != std::string::npos && b.find("</svg>") != std::string::npos;
}

// The file names: each a legal name ending in .png or .svg, each an injection attempt if pasted
// into a script (or a shell command line).
const std::vector<std::string> kHostileNames = {
    "a.png'; system 'touch PWNED'; set output 'b.png",
    "q\".svg\"; system \"touch PWNED\"; set output \"r.svg",
    "`touch PWNED`.png",
    "$(touch PWNED).svg",
    "nl\nsystem 'touch PWNED'\nset output 'x.png",
    "semi;system('touch PWNED');.png",
    "back\\slash'\\''; !touch PWNED\n.svg",
    "-e system 'touch PWNED'.png",
};

/// A char_gru checkpoint whose vocabulary is full of characters that mean something to gnuplot
/// or a shell, at `path`.
const std::u32string kHostileAlphabet =
    U"abcdefghijklmnopqrstuvwxyzPWNED'\"`;\n\\$@^_{}&#%~ ()!<>|*?=+-.,:[]\t";

void make_checkpoint(const std::string& path) {
  char_model::Vocab vocab = char_model::Vocab::from_text(kHostileAlphabet);
  char_model::Config c;
  c.vocab_size = vocab.size();
  c.hidden = 6;
  Generator gen(1);
  char_model::CharGRU model(c, gen);
  char_model::save_checkpoint(path, model, vocab);
}

const std::string kHostileText =
    "a'`touch PWNED`;\nsystem(\"touch PWNED\") $(touch PWNED) %s%n~{x}_^@&#\\ '; system 'touch PWNED'; '\t!";

/// Runs one program with one hostile --plot name in a fresh directory and checks the outcome.
void expect_safe_plot(const std::string& program, std::vector<std::string> args, const std::string& name,
                      const std::string& checkpoint_name = "") {
  SCOPED_TRACE(program + " --plot '" + name + "'");
  ScratchDir dir;
  ASSERT_FALSE(dir.path.empty());
  const std::string tmp = dir.path + "/tmp";
  fs::create_directory(tmp);
  if (!checkpoint_name.empty()) make_checkpoint(dir.path + "/" + checkpoint_name);
  std::set<std::string> before = tree(dir.path);
  args.push_back("--plot=" + name);  // one argument: a name may start with '-' 
  Proc p = run(program, args, dir.path, tmp);
  EXPECT_EQ(p.code, 0) << p.err;
  EXPECT_FALSE(pwned(dir.path)) << "gnuplot or a shell ran an injected command";
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir.path + "/" + name))) << "the picture is not at the literal path";
  EXPECT_TRUE(is_picture(dir.path + "/" + name));
  std::set<std::string> after = tree(dir.path);
  before.insert(name);
  EXPECT_EQ(after, before) << "files other than the picture were created or left behind";
  // The labels made it into the picture only as label()s: no raw backtick, no '%' expansion.
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".svg") == 0) {
    std::string svg = slurp(dir.path + "/" + name);
    EXPECT_EQ(svg.find('`'), std::string::npos);
    if (!checkpoint_name.empty()) EXPECT_NE(svg.find("U+0060"), std::string::npos) << "the backtick's label";
  }
}

}  // namespace

// ---- the escaping function and the temporary directory, directly -----------------------------------

TEST(PlotSafety, LabelOfEveryCodePointIsInert) {
  const std::string forbidden = "'\"`\\@^_{}&$#;%~ \t\n\r\v\f";
  for (char32_t c = 0; c <= 0x10FFFF; ++c) {
    std::string l = cli::plot::label(c);
    ASSERT_FALSE(l.empty()) << std::hex << static_cast<unsigned>(c);
    ASSERT_EQ(l.find_first_of(forbidden), std::string::npos) << std::hex << static_cast<unsigned>(c) << " → " << l;
    for (unsigned char b : l) ASSERT_GE(b, 0x20) << std::hex << static_cast<unsigned>(c);
  }
  // Whole strings, invalid UTF-8 included.
  for (const std::string& s : {kHostileText, std::string("\xff\xfe'\xc3"), std::string("\xe2\x82"), std::string("a\0b", 3)}) {
    std::string l = cli::plot::label(s);
    EXPECT_EQ(l.find_first_of(forbidden), std::string::npos) << l;
  }
  EXPECT_EQ(cli::plot::label(U'`'), "U+0060");
  EXPECT_EQ(cli::plot::label(U'%'), "U+0025");  // a tic label is a printf format in gnuplot
  EXPECT_EQ(cli::plot::label(U'a'), "a");
}

TEST(PlotSafety, TempDirIsPrivateUniqueAndNeverFollowsASymlink) {
  std::string first, second;
  {
    cli::plot::TempDir a, b;
    first = a.path();
    second = b.path();
    EXPECT_NE(first, second);
    struct stat st {};
    ASSERT_EQ(::lstat(first.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    ScratchDir victim_dir;
    const std::string victim = victim_dir.path + "/victim";
    std::ofstream(victim) << "keep";
    ASSERT_EQ(::symlink(victim.c_str(), (first + "/data.dat").c_str()), 0);
    EXPECT_THROW(a.write("data.dat", "overwritten"), std::exception);  // O_EXCL | O_NOFOLLOW
    EXPECT_EQ(slurp(victim), "keep");
    EXPECT_THROW(a.write("../escape.dat", "x"), std::exception);
    EXPECT_THROW(a.write("a'b.dat", "x"), std::exception);
    std::string p = a.write("ok.dat", "1 2\n");
    EXPECT_EQ(slurp(p), "1 2\n");
    EXPECT_THROW(a.write("ok.dat", "again"), std::exception);
  }
  EXPECT_FALSE(fs::exists(first));
  EXPECT_FALSE(fs::exists(second));
}

TEST(PlotSafety, ScriptsMayNotSetTheirOutput) {
  cli::plot::TempDir d;
  EXPECT_THROW(cli::plot::run_gnuplot(d, "set terminal png\nset output 'x.png'\nplot x\n"), std::exception);
}

// ---- the programs ----------------------------------------------------------------------------------

TEST(PlotSafety, GradientFlowRandomExperimentWritesHostilePathsLiterally) {
  if (!built("gradient_flow")) GTEST_SKIP() << "gradient_flow is not built";
  for (const std::string& name : kHostileNames)
    expect_safe_plot("gradient_flow", {"--cell", "rnn", "--hidden", "2", "--steps", "3", "--json"}, name);
}

TEST(PlotSafety, GradientFlowCheckpointModeHostileTextVocabularyAndPaths) {
  if (!built("gradient_flow")) GTEST_SKIP() << "gradient_flow is not built";
  const std::string ck = "ck'; system 'touch PWNED'; `touch PWNED`.npz";
  for (const std::string& name : kHostileNames)
    expect_safe_plot("gradient_flow", {"--checkpoint", ck, "--text", kHostileText, "--json"}, name, ck);
}

TEST(PlotSafety, GruGatesHostileTextVocabularyAndPaths) {
  if (!built("gru_gates")) GTEST_SKIP() << "gru_gates is not built";
  const std::string ck = "ck'; system 'touch PWNED'.npz";
  for (const std::string& name : {kHostileNames[0], kHostileNames[1], kHostileNames[4]})
    expect_safe_plot("gru_gates", {"--checkpoint", ck, "--text", kHostileText, "--steps", "1", "--json"}, name, ck);
}

TEST(PlotSafety, PlantedSymlinksAreNotFollowed) {
  if (!built("gradient_flow")) GTEST_SKIP() << "gradient_flow is not built";
  ScratchDir dir;
  const std::string tmp = dir.path + "/tmp", victim = dir.path + "/victim.txt";
  fs::create_directory(tmp);
  std::ofstream(victim) << "precious";
  // Symlinks at the names an older version used for its data file, and at the output path.
  for (const char* planted : {"gradient_flow_plot.dat", "gradient_flow.dat", "tapegrad_plot.dat", "plot.gp"})
    fs::create_symlink(victim, tmp + "/" + planted);
  fs::create_symlink(victim, dir.path + "/out.png");
  Proc p = run("gradient_flow", {"--cell", "rnn", "--hidden", "2", "--steps", "3", "--plot", "out.png"}, dir.path, tmp);
  EXPECT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(slurp(victim), "precious");
  // The output symlink was replaced by the picture (rename), not written through.
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir.path + "/out.png")));
  EXPECT_TRUE(is_picture(dir.path + "/out.png"));
  // Nothing left in TMPDIR but the planted links.
  EXPECT_EQ(tree(tmp).size(), 4u);
  // A dangling symlink as the output: refused before any work.
  fs::create_symlink(dir.path + "/nowhere/x", dir.path + "/dangling.png");
  Proc d = run("gradient_flow", {"--cell", "rnn", "--steps", "3", "--plot", "dangling.png"}, dir.path, tmp);
  EXPECT_EQ(d.code, 2) << d.err;
  EXPECT_NE(d.err.find("--plot"), std::string::npos) << d.err;
  EXPECT_TRUE(d.out.empty()) << "work was done before the check";
}
