#!/usr/bin/python3
"""Where tapegrad's training time goes: samples one training step of S, M or L with `perf record`
(bench/bench_gru's BM_TrainStep, one OpenBLAS thread so that every sample is the training
thread's own work) and sums the self time of each symbol into categories:

  GEMM          OpenBLAS (kernels and packing) and the engine's own kernel (framework/packed_gemm_kernel.inc)
  GRU gates     the fused GRU's gate passes (forward, BPTT: layers/fast/gate_kernels.inc) and its small copies
  elementwise   xtensor expressions (bias add, Adam, clipping, ...), cross-entropy, exp/log, the
                vector math of exp, log, tanh and sigmoid (framework/vector_math.inc)
  tape          the engine's bookkeeping: Tensor/TensorImpl, shared_ptr, std::function, the tape,
                the backward loop, GradSink, shape handling
  allocation    malloc/free, page faults and the kernel zeroing fresh pages, memset
  threads       the rest of the kernel's time: waking and switching threads (the batch halves), futexes
  copies        memcpy/memmove (reshape, output and gradient copies)
  other         everything else (benchmark harness, libm not listed above, ...)

  /usr/bin/python3 tools/perf_breakdown.py --build build --config M [--path fused|composed]
Needs linux-perf (`perf`); prints one line per category with its share of the samples.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

CATEGORIES = [
    ("GEMM", [r"libopenblas", r"\bsgemm|\bdgemm|gemv", r"PackedKernel|PackedGemm|multiply_panels|multiply_unpacked"]),
    ("GRU gates", [r"layer_forward", r"gates_(forward|backward)", r"gru_fused",
                   r"fused::\w+::(gru|lstm)_(forward|backward)"]),
    ("allocation", [r"\bmalloc\b|_int_malloc|_int_free|\bcfree\b|\bfree\b|malloc_consolidate|unlink_chunk|"
                    r"_int_memalign|posix_memalign|aligned_alloc|memalign|operator new|operator delete|"
                    r"page_fault|clear_page|do_anonymous_page|handle_mm_fault|__memset|memset|mmap|munmap|brk|"
                    r"folio|lru|zap_|free_pages|alloc_pages|rmqueue|release_pages"]),
    ("threads", [r"\[kernel|futex|sched|pthread_cond|pthread_mutex|clone|start_thread"]),
    ("copies", [r"__memmove|__memcpy|memcpy|memmove"]),
    ("elementwise", [r"xt::|xsimd|cross_entropy|adam|Adam|clip_grad|__expf|__exp|__log|expf|logf|"
                     r"sum_to|broadcast|softmax", r"detail::\w+::(exp|log|tanh|sigmoid)_of"]),
    ("tape", [r"tapegrad::|std::_Function|_Sp_counted|shared_ptr|std::vector|svector|"
              r"BackwardPass|GradSink|push_node|Tensor"]),
]


def categorize(symbol, dso):
    text = f"{dso} {symbol}"
    for name, patterns in CATEGORIES:
        if any(re.search(p, text) for p in patterns):
            return name
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--config", choices=["S", "M", "L"], default="M")
    ap.add_argument("--path", choices=["fused", "composed"], default="fused")
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()
    bench = os.path.join(a.build, "bench", "bench_gru")
    if not os.path.exists(bench):
        sys.exit(f"error: {bench} not found (configure with -DTAPEGRAD_BUILD_BENCH=ON)")
    cfg = "SML".index(a.config)
    path = 1 if a.path == "fused" else 0
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        subprocess.run(["perf", "record", "-q", "-o", data, bench, f"--benchmark_filter=TrainStep/{cfg}/{path}/",
                        f"--benchmark_min_time={a.seconds}"], env=env, check=True, capture_output=True)
        rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol", "--stdio",
                              "--percent-limit", "0"], capture_output=True, text=True, check=True).stdout
    totals = {}
    for line in rep.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).split("  ")[0].strip()
        cat = categorize(sym, dso)
        totals[cat] = totals.get(cat, 0.0) + pct
    print(f"config {a.config}, {a.path} GRU, one OpenBLAS thread: share of samples")
    for name in [c[0] for c in CATEGORIES] + ["other"]:
        print(f"  {name:12s} {totals.get(name, 0.0):5.1f}%")


if __name__ == "__main__":
    main()
