#!/usr/bin/env bash
# Regenerates every picture of docs/gru.md and docs/gradient-flow.md:
#
#   docs/img/gradient_flow_cells.png  gradient_flow --cell all --update-bias 6
#                                     (GRU with b_z = +6, tanh RNN, LSTM: same size, init and data)
#   docs/img/gradient_flow_bias.png   gradient_flow --cell gru
#                                     (GRU at PyTorch init, and the sweep b_z = −6, −3, 0, 3, 6)
#   docs/img/gates_heatmap.png        gru_gates --plot: z and r of units 0–15 over a few words, from
#                                     a small char_gru model this script trains first
#                                     (char_gru train --steps 1500 --composed, seed 0: under a
#                                     minute; --composed trains through the composed GRU that
#                                     gru_gates inspects, so the gates match docs/gru.md)
#
# Usage:  tools/make_figures.sh BUILD_DIR
#   BUILD_DIR is a CMake build of this repository with the example programs built, e.g.
#     cmake -S . -B build && cmake --build build -j2 --target gradient_flow char_gru gru_gates
#     tools/make_figures.sh build
# Needs gnuplot with the pngcairo terminal (tools/setup.sh installs gnuplot-nox).
# The tables quoted in the docs are printed along the way (same commands, same seeds).
set -euo pipefail
source "$(dirname "$0")/script_args.sh"
script_args "tools/make_figures.sh BUILD_DIR" "$@"

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.."
bin="$build/examples"
for prog in gradient_flow char_gru gru_gates; do
  if [ ! -x "$bin/$prog" ]; then
    echo "error: $bin/$prog is missing; build it: cmake --build $1 --target gradient_flow char_gru gru_gates" >&2
    exit 1
  fi
done
command -v gnuplot >/dev/null || { echo "error: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }

out=docs/img
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run() {  # prints the command (shell-quoted, without the build path), then runs it
  printf '+'; printf ' %q' "$@" | sed "s|$bin/||g"; echo
  "$@"
}

echo "== 1. gradient flow through the cells (T = 100, H = 32, seed 0)"
run "$bin/gradient_flow" --cell all --update-bias 6 --plot "$out/gradient_flow_cells.png"
echo
echo "== 2. the update-gate bias sweep"
run "$bin/gradient_flow" --cell gru --plot "$out/gradient_flow_bias.png"
echo
echo "== 3. a small character model, and its gates over a few words"
run "$bin/char_gru" train --steps 1500 --checkpoint "$work/m.npz" --composed
text=$'abandon\nability\nable\nabout\nabove\nabroad\n'
run "$bin/gru_gates" --checkpoint "$work/m.npz" --text "$text" --steps 33,34 --plot "$out/gates_heatmap.png"
echo
echo "wrote $out/gradient_flow_cells.png $out/gradient_flow_bias.png $out/gates_heatmap.png"
