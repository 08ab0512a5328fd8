#!/usr/bin/python3
"""Every command block of README.md and docs/*.md, run as written (issue 11, item 5).

    /usr/bin/python3 tools/check_doc_commands.py BUILD_DIR [--only FILE[:LINE]] [--list] [--keep] [--update]
                                                           [--kernel]

BUILD_DIR is the configured, built tapegrad build under test (CI: `build`). Standard library only.

Which blocks
  Every fenced block of README.md and docs/*.md is one of:
  - a shell block (```sh, ```bash, ```console): run, unless the line before it (blank lines
    between are allowed) is a comment `<!-- not run: REASON -->`;
  - a code snippet (```cpp, ```python, ...): it must carry `<!-- not run: REASON -->` saying why it
    is not run here (a fragment, or which test or tool runs it); an unmarked snippet is a failure;
  - text (```text, or no language): output or a diagram, not a command.
  `<!-- excerpt of: PATH -->` (with `not run`) says the snippet is copied from PATH: every code line
  of it (comments, blank lines and `...` aside; spaces collapsed) must be a line of PATH.
  Indented (unfenced) blocks are not run; fence a command as ```sh to have it run.

How a block runs
  - In a scratch copy of the repository (the working tree's tracked files, copied afresh for each
    Markdown file), so that no command can overwrite a tracked file or leave files behind.
    `build` in the copy is a symbolic link to BUILD_DIR: `build/examples/...` is the path the docs
    write, and it reaches the build under test.
  - ```console: every `$ ` line is a command (continued on the next lines while it ends with `\\`
    or a quote is open); the lines up to the next `$ ` are its expected output. A command followed
    by no output lines has its output not shown in the doc, so it is not compared.
    ```sh / ```bash: every complete command of the block is a command (comments skipped); a
    ```text block right after it is the expected output of the whole block.
  - Each command runs on its own, as `bash` with `set -euo pipefail`, stdin from /dev/null, so a
    failure anywhere (also the left side of `a && b`, or inside a pipe) fails the block. Shell
    variables a command sets (`TEXT=$'...'`) carry over to the later commands of the same file, as
    in one terminal session. TMPDIR points into the scratch area, so `mktemp -d` leaves nothing.
  - `<!-- setup: COMMAND -->` before a block runs COMMAND first, in the same place, without
    comparing its output (e.g. the program whose output file the block reads).
  - Substitutions (the only change made to any command; printed when applied):
      `cmake -S . -B build` -> `cmake -S <repository root> -B <BUILD_DIR>`: the build under test was
      configured from the repository, and CMake refuses another source directory (the scratch
      copy) for it; configured through the copy's `build` link, it would record the scratch path.
    Any other CMake configure of `build` fails the block (it would reconfigure the build under test
    from the scratch copy), and so does a block after which the build's CMakeCache.txt names another
    directory than before.
  - A tracked file of the copy that a block rewrites (a regenerated picture) and that then differs
    from the committed one is reported, not failed: pictures and Graphviz files (whose node names
    are addresses) differ from run to run.

Expected output
  Compared line by line with the command's standard output (or, if that differs, with its standard
  output followed by its standard error: a closing `wrote FILE` on stderr is what a reader sees
  last), digit for digit, trailing spaces and trailing blank lines ignored. A line `...` (any indentation) stands for any number of lines. Only
  measurements of the moment are masked, on both sides: wall times (`14.5 s`, `(853 ms total)`),
  speeds (`106179 chars/s`) and memory (`peak RSS 70 MB`).

Which BLAS kernel
  float32 results depend on the order in which a GEMM adds its products, and OpenBLAS picks that
  order with its kernel, at run time: from the CPU, or from OPENBLAS_CORETYPE. The outputs written
  in the docs come from DOCS_KERNEL (Haswell, AVX2). The checker asks the OpenBLAS library that the
  build's programs load which kernel it runs here (openblas_get_corename, in this environment,
  which it leaves as it is). With the docs' kernel, or one measured to round the same
  (SAME_ROUNDING), every output is compared with the doc's, digit for digit. With another kernel,
  an output that differs from the doc's is compared, digit for digit, with the one recorded for
  that kernel in tools/doc_outputs/KERNEL.json, next to a hash of the doc's output it stands for:
  when the doc's output changes, the recorded one is stale and fails until it is recorded again.
  `--update` run with such a kernel (on such a machine, or OPENBLAS_CORETYPE=SkylakeX or Cooperlake
  on one that has AVX-512 and bfloat16) records the outputs there instead of writing them into the
  docs. Recorded so far: SkylakeX and Cooperlake (which OpenBLAS 0.3.21 picks by itself on AVX-512
  Xeons and on AMD's Zen 4).

Prints one line per block (file:line, seconds, PASS / FAIL / SKIP with the reason), the details of
every failure, and the total; exits 1 if any block failed, 2 on a usage error.
"""
import argparse
import ctypes
import difflib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHELL_LANGS = {"sh", "bash", "console", "shell", "shell-session"}
TEXT_LANGS = {"", "text", "output", "plain"}
COMMAND_TIMEOUT = 1800  # seconds; the longest documented command (the demo) takes about 2 minutes
LOCK = "/tmp/tapegrad_doc_commands.lock"  # the docs write fixed /tmp paths (/tmp/m.npz)

DOCS_KERNEL = "Haswell"  # the OpenBLAS kernel the docs' outputs were computed with
# Kernels measured to give every documented output bit for bit the same as another kernel: this
# checker run with OPENBLAS_CORETYPE=Zen on a machine where Haswell passes. (Not so Cooperlake and
# SkylakeX: OpenBLAS 0.3.21's two AVX-512 kernels round differently, and each has its own record.)
SAME_ROUNDING = {"Zen": "Haswell"}
ALT_DIR = os.path.join(ROOT, "tools", "doc_outputs")

VOLATILE = [  # measurements of the moment, masked on both sides before comparing
    (re.compile(r"\(\d+ ms total\)"), "(<ms> ms total)"),
    (re.compile(r"\b\d+(?:\.\d+)?k? chars/s\b"), "<speed> chars/s"),
    (re.compile(r"peak RSS \d+(?:\.\d+)? MB\b"), "peak RSS <memory> MB"),
    (re.compile(r"\b\d+(?:\.\d+)? s\b"), "<seconds> s"),
]

CONFIGURE_BUILD = re.compile(r"\bcmake\s(?![^\n;&|]*--(build|install|open)\b)[^\n;&|]*-B\s*build(?=[\s/;&|]|$)")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)[^`]*$")
MARK = re.compile(r"^\s*<!--\s*(not run|setup|excerpt of)\s*:\s*(.*?)\s*-->\s*$")


class Block:
    def __init__(self, path, line, lang, body, marks):
        self.path, self.line, self.lang, self.body = path, line, lang, body
        self.not_run = next((v for k, v in marks if k == "not run"), None)
        self.setup = [v for k, v in marks if k == "setup"]
        self.excerpt_of = next((v for k, v in marks if k == "excerpt of"), None)
        self.output = None  # expected output of a sh block: the ```text block right after it
        self.output_line = None

    @property
    def where(self):
        return f"{self.path}:{self.line}"

    @property
    def kind(self):
        if self.lang in SHELL_LANGS:
            return "shell"
        if self.lang in TEXT_LANGS:
            return "text"
        return "code"


class Command:
    def __init__(self, src, line, expected):
        self.src, self.line, self.expected = src, line, expected
        self.expected_line = None  # the doc's line number of the first expected-output line


def parse(relpath):
    """The fenced blocks of one Markdown file, with their `<!-- ... -->` marks."""
    lines = open(os.path.join(ROOT, relpath), encoding="utf-8").read().split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        start = i
        marks, k = [], i - 1
        while k >= 0 and lines[k].strip() == "":
            k -= 1
        while k >= 0 and MARK.match(lines[k]):
            mm = MARK.match(lines[k])
            marks.insert(0, (mm.group(1), mm.group(2)))
            k -= 1
        body, i = [], i + 1
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                      and lines[i].strip().strip(fence[0]) == ""):
            line = lines[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        if i == len(lines):
            sys.exit(f"{relpath}:{start + 1}: unterminated fenced block")
        i += 1
        blk = Block(relpath, start + 1, lang, body, marks)
        if blocks and blk.kind == "text" and blocks[-1].kind == "shell" and blocks[-1].lang != "console" \
                and blocks[-1].end == start_of_previous_gap(lines, start):
            blocks[-1].output, blocks[-1].output_line = body, start + 1
            continue
        blk.end = i  # the line after the closing fence (0-based)
        blocks.append(blk)
    return blocks


def start_of_previous_gap(lines, start):
    """The index of the first line of the blank run that ends just before line `start`."""
    k = start
    while k > 0 and lines[k - 1].strip() == "":
        k -= 1
    return k


def complete(src):
    """Is `src` one complete shell command? (no trailing `\\`, no open quote or compound)"""
    if src.rstrip().endswith("\\"):
        return False
    r = subprocess.run(["bash", "-n", "-c", src], capture_output=True, text=True)
    if r.returncode == 0:
        return True
    if "unexpected end of file" in r.stderr or "unexpected EOF" in r.stderr:
        return False
    raise ValueError(f"shell syntax error: {r.stderr.strip()}")


def commands(blk):
    """The commands of a shell block, each with its expected output (None: not shown)."""
    out = []
    body = blk.body
    i = 0
    while i < len(body):
        line, lineno = body[i], blk.line + 1 + i
        if blk.lang == "console":
            if line.startswith("$ ") or line == "$":
                src, i = line[2:], i + 1
                while not complete(src):
                    if i == len(body):
                        raise ValueError(f"line {lineno}: the command never ends")
                    src, i = src + "\n" + body[i], i + 1
                out.append(Command(src, lineno, []))
            elif not out:
                raise ValueError(f"line {lineno}: output before the first `$ ` command")
            else:
                if not out[-1].expected:
                    out[-1].expected_line = lineno
                out[-1].expected.append(line)
                i += 1
        else:
            if line.strip() == "" or line.lstrip().startswith("#"):
                i += 1
                continue
            src, i = line, i + 1
            while not complete(src):
                if i == len(body):
                    raise ValueError(f"line {lineno}: the command never ends")
                src, i = src + "\n" + body[i], i + 1
            out.append(Command(src, lineno, None))
    for c in out:
        if c.expected is not None and all(l.strip() == "" for l in c.expected):
            c.expected = None
    return out


def code_lines(lines):
    """Lines of code, comments (// and #) cut, spaces collapsed, blank and `...` lines dropped."""
    out = []
    for l in lines:
        l = re.sub(r"\s+//.*$|^\s*(//|#(?!include|define|if|endif|pragma)).*$", "", l)
        l = " ".join(l.split())
        if l and l != "...":
            out.append(l)
    return out


def check_excerpt(blk):
    """The lines of `blk` that are not lines of the file it says it is an excerpt of."""
    path = os.path.join(ROOT, blk.excerpt_of)
    if not os.path.isfile(path):
        return [f"no such file: {blk.excerpt_of}"]
    have = set(code_lines(open(path, encoding="utf-8").read().split("\n")))
    return [f"not in {blk.excerpt_of}: {l}" for l in code_lines(blk.body) if l not in have]


def mask(line):
    line = line.rstrip()
    for rx, rep in VOLATILE:
        line = rx.sub(rep, line)
    return line


def trim(lines):
    lines = [mask(l) for l in lines]
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def segments(expected):
    """The runs of expected lines between the `...` lines."""
    segs, cur = [], []
    for l in expected:
        if l.strip() == "...":
            segs.append(cur)
            cur = []
        else:
            cur.append(l)
    segs.append(cur)
    return segs


def matches(expected, actual):
    """Line-by-line match; an expected line `...` stands for any number of actual lines."""
    segs = segments(expected)
    if len(segs) == 1:
        return expected == actual
    first, last, middle = segs[0], segs[-1], segs[1:-1]
    if actual[:len(first)] != first:
        return False
    pos, end = len(first), len(actual) - len(last)
    if end < pos or (last and actual[end:] != last):
        return False
    for seg in middle:
        if not seg:
            continue
        for p in range(pos, end - len(seg) + 1):
            if actual[p:p + len(seg)] == seg:
                pos = p + len(seg)
                break
        else:
            return False
    return True


def explain(expected, actual, limit=40):
    """The differing lines, doc against program, around each difference."""
    exp = [l for l in expected if l.strip() != "..."]
    elided = len(exp) != len(expected)
    sm = difflib.SequenceMatcher(a=exp, b=actual, autojunk=False)
    out = []
    for tag, a0, a1, b0, b1 in sm.get_opcodes():
        if tag == "equal" or (tag == "insert" and elided):
            continue  # with `...` in the doc, extra program lines are the elided ones
        if elided and tag == "replace":
            b1 = min(b1, b0 + (a1 - a0))
        for l in exp[a0:a1]:
            out.append(f"      doc:     {l}")
        for l in actual[b0:b1]:
            out.append(f"      program: {l}")
        out.append("      --")
    if len(out) > limit:
        out = out[:limit] + [f"      ... ({len(out) - limit} more lines)"]
    return out


def blas_kernel(build):
    """(kernel, how found): the OpenBLAS kernel that the build's programs run with in this environment."""
    prog = os.path.join(build, "examples", "char_gru")
    try:
        ldd = subprocess.run(["ldd", prog], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"ldd {prog}: {e}"
    m = re.search(r"^\s*lib(?:open)?blas[^\s]*\s*=>\s*(\S+)", ldd, re.M)
    if not m:
        return None, f"{prog} loads no libopenblas/libblas (ldd)"
    try:
        lib = ctypes.CDLL(m.group(1))
        corename = lib.openblas_get_corename
    except (OSError, AttributeError) as e:
        return None, f"{m.group(1)} is not OpenBLAS ({e})"
    corename.restype = ctypes.c_char_p
    return corename().decode(), m.group(1)


def rounding_of(kernel):
    return SAME_ROUNDING.get(kernel, kernel)


def doc_hash(path, src, expected):
    h = hashlib.sha256()
    h.update("\n".join([path, src] + trim(expected)).encode())
    return h.hexdigest()[:16]


class Recorded:
    """Outputs recorded for one BLAS kernel whose float32 rounding differs from the docs' kernel."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.path = os.path.join(ALT_DIR, f"{kernel}.json")
        self.entries = []
        if os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    self.entries = json.load(f)["outputs"]
                keys = {"file", "line", "command", "doc_output_sha256", "output"}
                if not isinstance(self.entries, list) or not all(
                        isinstance(e, dict) and keys <= e.keys() for e in self.entries):
                    raise ValueError(f"every entry of \"outputs\" needs {', '.join(sorted(keys))}")
            except (OSError, ValueError, KeyError, TypeError) as e:
                sys.exit(f"error: {os.path.relpath(self.path, ROOT)}: not a record of outputs ({e}); "
                         "restore it with git checkout, or record it again with --update")
        self.used = set()
        self.changed = False

    def find(self, path, src):
        return [e for e in self.entries if e["file"] == path and e["command"] == src]

    def check(self, path, c, actual_variants):
        """(ok, detail) for a command whose output differs from the doc's."""
        found = self.find(path, c.src)
        h = doc_hash(path, c.src, c.expected)
        fresh = [e for e in found if e["doc_output_sha256"] == h]
        if not fresh:
            why = ("recorded for an earlier version of the doc's output (stale)" if found
                   else "none recorded")
            return False, [f"    line {c.line}: the output recorded for OpenBLAS kernel {self.kernel} "
                           f"({os.path.relpath(self.path, ROOT)}): {why}; after checking that the doc's output is "
                           f"right, record this kernel's with --update"]
        e = fresh[0]
        self.used.add(id(e))
        if any(matches(e["output"], a) for a in actual_variants):
            return True, [f"    line {c.line}: the {self.kernel} kernel's output, as recorded "
                          f"({os.path.relpath(self.path, ROOT)})"]
        return False, [f"    line {c.line}: its output differs from the one recorded for OpenBLAS kernel "
                       f"{self.kernel} ({os.path.relpath(self.path, ROOT)}):"] + explain(e["output"], actual_variants[0])

    def record(self, path, c, pattern):
        h = doc_hash(path, c.src, c.expected)
        self.entries = [e for e in self.entries if not (e["file"] == path and e["command"] == c.src
                                                        and e["doc_output_sha256"] == h)]
        e = {"file": path, "line": c.line, "command": c.src, "doc_output_sha256": h, "output": pattern}
        self.entries.append(e)
        self.used.add(id(e))
        self.changed = True

    def save(self, prune):
        if prune:
            kept = [e for e in self.entries if id(e) in self.used]
            self.changed |= len(kept) != len(self.entries)
            self.entries = kept
        if not self.changed:
            return False
        os.makedirs(ALT_DIR, exist_ok=True)
        doc = {"kernel": self.kernel,
               "about": "Outputs of the docs' commands with this OpenBLAS kernel, where they differ from the docs' "
                        f"({DOCS_KERNEL} kernel). Written by tools/check_doc_commands.py --update; see its docstring.",
               "outputs": sorted(self.entries, key=lambda e: (e["file"], e["line"]))}
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, self.path)
        return True


def as_pattern(expected, actual):
    """`actual` in the shape of `expected`: where the doc elides lines (`...`), so does the result,
    each shown segment taken from the actual lines that resemble it most (in order)."""
    segs = segments(expected)
    if len(segs) == 1:
        return list(actual)
    first, last, middle = segs[0], segs[-1], segs[1:-1]
    out = list(actual[:len(first)])
    pos, end = len(first), len(actual) - len(last)
    for seg in middle:
        out.append("...")
        if not seg:
            continue
        best, best_p = -1.0, pos
        for p in range(pos, end - len(seg) + 1):
            score = sum(difflib.SequenceMatcher(a=x, b=y, autojunk=False).ratio()
                        for x, y in zip(seg, actual[p:p + len(seg)]))
            if score > best:
                best, best_p = score, p
        out += actual[best_p:best_p + len(seg)]
        pos = best_p + len(seg)
    out.append("...")
    out += actual[end:] if last else []
    return out


def scratch_copy(dest, build):
    """The working tree's tracked files (as they are now) copied to `dest`; `build` -> BUILD_DIR."""
    r = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True)
    if r.returncode == 0:
        files = [f for f in r.stdout.decode().split("\0") if f]
    else:  # not a git checkout: every file but the build directories
        files = []
        for d, dirs, names in os.walk(ROOT):
            dirs[:] = [x for x in dirs if x != ".git" and not (d == ROOT and x.startswith("build"))]
            files += [os.path.relpath(os.path.join(d, n), ROOT) for n in names]
    tracked = []
    for f in files:
        src = os.path.join(ROOT, f)
        if not os.path.lexists(src):
            continue  # deleted in the working tree
        os.makedirs(os.path.dirname(os.path.join(dest, f)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, f), follow_symlinks=False)
        tracked.append(f)
    if not os.path.lexists(os.path.join(dest, "build")):
        os.symlink(build, os.path.join(dest, "build"))
    return tracked


def snapshot(dest, tracked):
    st = {}
    for f in tracked:
        try:
            s = os.lstat(os.path.join(dest, f))
            st[f] = (s.st_size, s.st_mtime_ns)
        except FileNotFoundError:
            st[f] = None
    return st


def is_text(data):
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


class Session:
    """One Markdown file's commands: one scratch copy, shell variables carried between commands."""

    def __init__(self, tmp, name, build):
        self.dir = os.path.join(tmp, name.replace("/", "_").replace(".md", ""), "tapegrad")
        self.build = build
        os.makedirs(self.dir)
        self.tracked = scratch_copy(self.dir, build)
        self.state = os.path.join(tmp, name.replace("/", "_") + ".vars")
        open(self.state, "w").close()
        env = dict(os.environ)
        env["TMPDIR"] = os.path.join(tmp, "tmp")  # mktemp -d in a command: removed with the rest
        os.makedirs(env["TMPDIR"], exist_ok=True)
        env.pop("BASH_ENV", None)
        env.pop("ENV", None)
        self.env = env
        base = subprocess.run(["bash", "--noprofile", "--norc", "-c", "compgen -v"], env=env,
                              capture_output=True, text=True).stdout.split()
        self.env["TG_DOC_BASE"] = " " + " ".join(base + ["TG_DOC_BASE"]) + " "
        self.updates = None  # --update: (first line, number of lines, new lines) to write into the doc
        self.recorded = None  # Recorded: with a kernel that rounds unlike the docs' one

    def substitute(self, src):
        notes = []
        # -B: the directory the build's cache was made in (what CMake compares), else BUILD_DIR
        real = f"cmake -S {shlex.quote(ROOT)} -B {shlex.quote(cache_dir(self.build) or self.build)}"
        new = re.sub(r"\bcmake -S \. -B build(?=\s|$)", lambda m: real, src)
        if new != src:
            notes.append(f"substituted `cmake -S . -B build` -> `{real}`")
        if CONFIGURE_BUILD.search(new):
            raise ValueError("a CMake configure of `build` other than `cmake -S . -B build` would reconfigure "
                             "the build under test from the scratch copy")
        return new, notes

    def run(self, src):
        try:
            src, notes = self.substitute(src)
        except ValueError as e:
            return str(e), "", "", []
        script = (
            "set -euo pipefail\n"
            f"source {shlex.quote(self.state)}\n"
            f"{src}\n"
            "for tg_doc_v in $(compgen -v); do\n"
            '  case "$TG_DOC_BASE" in *" $tg_doc_v "*) ;; tg_doc_v) ;; *) declare -p "$tg_doc_v" ;; esac\n'
            f"done > {shlex.quote(self.state)}.new 2>/dev/null || true\n"
        )
        try:
            r = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=self.dir, env=self.env,
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=COMMAND_TIMEOUT)
            rc, out, err = r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = f"timeout after {COMMAND_TIMEOUT} s", e.stdout or b"", e.stderr or b""
        if rc == 0 and os.path.exists(self.state + ".new"):
            os.replace(self.state + ".new", self.state)
        return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), notes


def short(src, n=90):
    s = " ".join(src.split())
    return s if len(s) <= n else s[:n - 3] + "..."


def tail(text, n=15):
    lines = text.rstrip("\n").split("\n")
    return ["      | " + l for l in lines[-n:]] if text.strip() else []


def cache_dir(build):
    try:
        for line in open(os.path.join(build, "CMakeCache.txt"), encoding="utf-8", errors="replace"):
            if line.startswith("CMAKE_CACHEFILE_DIR:"):
                return line.split("=", 1)[1].strip()
    except OSError:
        return None
    return None


def run_block(blk, sess):
    """Runs one shell block; returns (ok, detail lines)."""
    cache = cache_dir(sess.build)
    ok, detail = run_block_commands(blk, sess)
    if cache_dir(sess.build) != cache:
        ok = False
        detail += [f"    the block reconfigured the build under test from elsewhere: its CMakeCache.txt now names "
                   f"{cache_dir(sess.build)} (was {cache}); repair: cmake -S {ROOT} -B {sess.build}"]
    return ok, detail


def run_block_commands(blk, sess):
    detail, ok = [], True
    for s in blk.setup:
        rc, out, err, notes = sess.run(s)
        detail += ["    " + n for n in notes]
        if rc != 0:
            return False, detail + [f"    setup `{short(s)}` failed (exit {rc}):"] + tail(err or out)
    cmds = commands(blk)
    before = snapshot(sess.dir, sess.tracked)
    outputs = []
    for c in cmds:
        rc, out, err, notes = sess.run(c.src)
        detail += ["    " + n for n in notes]
        if rc != 0:
            detail += [f"    line {c.line}: `{short(c.src)}` exited {rc}:"] + tail(err + out)
            return False, detail
        outputs.append(out)
        if c.expected is not None:
            exp, act = trim(c.expected), trim(out.split("\n"))
            both = trim((out + err).split("\n"))
            if not matches(exp, act) and not matches(exp, both):
                if sess.recorded is not None:
                    if sess.updates is not None:
                        use_both = abs(len(both) - len(exp)) < abs(len(act) - len(exp))
                        sess.recorded.record(blk.path, c, as_pattern(exp, both if use_both else act))
                        detail += [f"    line {c.line}: recorded the {sess.recorded.kernel} kernel's output "
                                   f"(differs from the doc's)"]
                        continue
                    rec_ok, rec_detail = sess.recorded.check(blk.path, c, [act, both])
                    if not rec_ok:
                        ok = False
                        detail += [f"    line {c.line}: `{short(c.src)}`: its output differs from the doc's "
                                   f"({DOCS_KERNEL} kernel):"] + explain(exp, act)
                    detail += rec_detail
                    continue
                ok = False
                detail += [f"    line {c.line}: `{short(c.src)}`: its output differs from the doc's:"]
                detail += explain(exp, act)
                if sess.updates is not None:
                    if any(l.strip() == "..." for l in exp):
                        detail += ["    not updated: the expected output elides lines (`...`): edit it by hand"]
                    else:
                        # stdout, or stdout + stderr when that is what the doc showed (`wrote FILE`)
                        both = trim((out + err).split("\n"))
                        new = both if abs(len(both) - len(exp)) < abs(len(act) - len(exp)) else act
                        blank = len(c.expected) - len(trim(c.expected))
                        sess.updates.append((c.expected_line, len(c.expected), new + [""] * blank))
                        detail += [f"    updated: lines {c.expected_line}..{c.expected_line + len(c.expected) - 1}"]
    if blk.output is not None:
        exp, act = trim(blk.output), trim("".join(outputs).split("\n"))
        if not matches(exp, act):
            ok = False
            detail += [f"    the output at line {blk.output_line} differs from the commands' output:"]
            detail += explain(exp, act)
    after = snapshot(sess.dir, sess.tracked)
    for f in sess.tracked:
        if before[f] == after[f]:
            continue
        new_path = os.path.join(sess.dir, f)
        new = open(new_path, "rb").read() if os.path.exists(new_path) else None
        old = open(os.path.join(ROOT, f), "rb").read()
        if new == old:
            continue
        if new is None:
            detail += [f"    note: removed {f}"]
        elif is_text(new) and is_text(old):
            a, b = old.decode().split("\n"), new.decode().split("\n")
            same = sum(x == y for x, y in zip(a, b))
            detail += [f"    note: rewrote {f}, which differs from the committed file "
                       f"({max(len(a), len(b)) - same} of {max(len(a), len(b))} lines)"]
        else:
            detail += [f"    note: rewrote {f}, which differs byte-wise from the committed file"]
    return ok, detail


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", help="the build directory under test (configured and built)")
    ap.add_argument("--only", action="append", default=[], metavar="FILE[:LINE]",
                    help="run only these files or blocks (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the blocks and what happens to each; run nothing")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copies (their path is printed)")
    ap.add_argument("--update", action="store_true",
                    help="write each differing console output into the doc (outputs with `...` excepted): "
                         "after a change that moves numbers, review the diff with git diff")
    ap.add_argument("--kernel", action="store_true",
                    help="print the OpenBLAS kernel the build's programs run with here, and what is compared; run nothing")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    if not args.list and not os.path.isfile(os.path.join(build, "CMakeCache.txt")):
        print(f"error: {args.build} is not a configured build directory (no CMakeCache.txt)", file=sys.stderr)
        return 2
    recorded = None
    if not args.list:
        kernel, lib = blas_kernel(build)
        if kernel is None:
            print(f"BLAS kernel: unknown ({lib}); outputs compared with the docs' ({DOCS_KERNEL} kernel)", flush=True)
        elif rounding_of(kernel) == rounding_of(DOCS_KERNEL):
            same = "" if kernel == DOCS_KERNEL else f", which rounds as {DOCS_KERNEL} does"
            print(f"BLAS kernel: OpenBLAS {kernel}{same} ({lib}, OPENBLAS_CORETYPE="
                  f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')}): outputs compared with the docs'", flush=True)
        else:
            recorded = Recorded(rounding_of(kernel))
            print(f"BLAS kernel: OpenBLAS {kernel} ({lib}, OPENBLAS_CORETYPE="
                  f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')}), the docs' outputs come from {DOCS_KERNEL}: "
                  f"an output that differs from the doc's is compared with the one recorded in "
                  f"{os.path.relpath(recorded.path, ROOT)} ({len(recorded.entries)} recorded)", flush=True)
        if args.kernel:
            return 0

    files = ["README.md"] + sorted("docs/" + f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    only = [o.split(":") for o in args.only]

    def wanted(blk):
        if not only:
            return True
        return any(o[0] == blk.path and (len(o) == 1 or int(o[1]) == blk.line) for o in only)

    lock = open(LOCK, "w")
    if not args.list:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another check_doc_commands run ({LOCK}) ...", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)

    tmp = tempfile.mkdtemp(prefix="tapegrad_doc_commands_")
    t_all = time.monotonic()
    failed, counts = [], {"PASS": 0, "FAIL": 0, "SKIP": 0}
    try:
        for path in files:
            blocks = [b for b in parse(path) if wanted(b)]
            sess = None
            for blk in blocks:
                if blk.kind == "text":
                    print(f"----  {blk.where:28s}          text block ({blk.lang or 'no language'}): not a command",
                          flush=True)
                    continue
                try:
                    cmds = commands(blk) if blk.kind == "shell" else []
                except ValueError as e:
                    print(f"FAIL  {blk.where:28s}          {blk.lang}: {e}", flush=True)
                    failed.append(blk.where)
                    counts["FAIL"] += 1
                    continue
                if blk.excerpt_of is not None:
                    missing = check_excerpt(blk)
                    if missing:
                        print(f"FAIL  {blk.where:28s}          {blk.lang} excerpt differs from its source:", flush=True)
                        for m in missing:
                            print("    " + m, flush=True)
                        failed.append(blk.where)
                        counts["FAIL"] += 1
                        continue
                if blk.not_run is not None:
                    checked = f" (an excerpt of {blk.excerpt_of}: checked)" if blk.excerpt_of else ""
                    print(f"SKIP  {blk.where:28s}          {blk.lang}, not run: {blk.not_run}{checked}", flush=True)
                    counts["SKIP"] += 1
                    continue
                if blk.kind == "code":
                    print(f"FAIL  {blk.where:28s}          {blk.lang} snippet, neither run here nor marked "
                          "`<!-- not run: REASON -->`", flush=True)
                    failed.append(blk.where)
                    counts["FAIL"] += 1
                    continue
                n_out = sum(c.expected is not None for c in cmds) + (blk.output is not None)
                what = f"{blk.lang}, {len(cmds)} command{'s' * (len(cmds) != 1)}, " \
                       f"{n_out} output{'s' * (n_out != 1)} compared"
                if args.list:
                    print(f"RUN   {blk.where:28s}          {what}" +
                          (f" (setup: {'; '.join(blk.setup)})" if blk.setup else ""), flush=True)
                    continue
                if sess is None:
                    sess = Session(tmp, path, build)
                    sess.updates = [] if args.update else None
                    sess.recorded = recorded
                t0 = time.monotonic()
                ok, detail = run_block(blk, sess)
                dt = time.monotonic() - t0
                status = "PASS" if ok else "FAIL"
                counts[status] += 1
                if not ok:
                    failed.append(blk.where)
                print(f"{status}  {blk.where:28s} {dt:7.1f} s  {what}", flush=True)
                for d in detail:
                    print(d, flush=True)
            if sess is not None and sess.updates:
                doc = os.path.join(ROOT, path)
                lines = open(doc, encoding="utf-8").read().split("\n")
                for first, count, new in sorted(sess.updates, reverse=True):  # bottom up: line numbers hold
                    lines[first - 1:first - 1 + count] = new
                with open(doc, "w", encoding="utf-8") as f:
                    f.write("\n".join(lines))
                print(f"      updated {path}: {len(sess.updates)} output{'s' * (len(sess.updates) != 1)}", flush=True)
        if recorded is not None and args.update and recorded.save(prune=not only and not failed):
            print(f"      recorded outputs written: {os.path.relpath(recorded.path, ROOT)} "
                  f"({len(recorded.entries)} outputs)", flush=True)
    finally:
        if args.keep:
            print(f"scratch copies kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    total = time.monotonic() - t_all
    print(f"check_doc_commands: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} not run "
          f"(marked), {total:.1f} s")
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
