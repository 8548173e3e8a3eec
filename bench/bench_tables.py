#!/usr/bin/python3
"""Prints one table of docs/benchmarks.md as markdown, measured on this machine now.

    python3 bench/bench_tables.py TOPIC [--rounds N] [--dry-run] [--fer PATH] [--facet-bench PATH]

TOPIC is one of:
  machine    the CPU, its caches, its FMA peak and its bf16 dot-product peak (BM_FmaPeak), 1 and 2 threads
  gemm       SGEMM GFLOP/s on fer-cnn-s's shapes: facet, Eigen and OpenBLAS (AVX-512 kernels)
  convstack  the six 3x3 convolutions of fer-cnn-s, forward + both backward products, batch 64:
             facet against PyTorch's (oneDNN), in alternating processes
  layers     `fer bench`'s per-layer training-step table, 1 and 2 threads
  pytorch    fer-cnn-s training step, inference, latency, memory: facet against PyTorch
  threads    training images/s at 1 and 2 threads, round by round, and the ratio
  memory     peak resident memory of `fer bench --throughput` and of one epoch of `fer train`

scripts/bench_tables.sh installs the packages a topic needs and runs this. It builds what the topic
needs (Release) in build/bench (fer) and build/bench-native (facet_bench, -march=native so that
Eigen is vectorised at its best; facet dispatches at run time either way). The first line printed
says where and when the figures were taken; --dry-run prints it and the commands, and runs nothing.
Compare figures within one table: a shared host's speed drifts between runs.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FER_BUILD = os.path.join(ROOT, "build", "bench")
BENCH_BUILD = os.path.join(ROOT, "build", "bench-native")
JOBS = str(os.cpu_count() or 2)

# SGEMM shapes (M x N x K, op(A) op(B)) of fer-cnn-s's convolutions as im2col + GEMM at batch 64:
# forward of the whole batch (NN) and weight gradients (NT), then every per-image forward product
# and every per-image data-gradient product (TN), then a square one.
GEMM_SHAPES = ["32x147456x288_NN", "64x36864x576_NN", "128x9216x1152_NN", "32x288x147456_NT",
               "64x576x36864_NT", "128x1152x9216_NT", "32x2304x288_NN", "64x576x288_NN",
               "64x576x576_NN", "128x144x576_NN", "128x144x1152_NN", "288x2304x32_TN",
               "576x576x64_TN", "1152x144x128_TN", "1024x1024x1024_NN"]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header(topic):
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    print(f"`scripts/bench_tables.sh {topic}`: {cpu_name()}, {os.cpu_count()} CPUs, commit {commit}, "
          f"{now}, load average {load:.1f} at the start\n", flush=True)


class Runner:
    def __init__(self, dry_run, fer=None, facet_bench=None):
        self.dry_run = dry_run
        self.fer_binary, self.bench_binary = fer, facet_bench

    def run(self, cmd, env=None, capture=True):
        if self.dry_run:
            print("    " + " ".join(cmd))
            return ""
        out = subprocess.run(cmd, check=True, text=True, env=env,
                             stdout=subprocess.PIPE if capture else sys.stderr)
        return out.stdout if capture else ""

    def build(self, directory, target, extra):
        log = directory + ".configure.log"
        cmd = ["cmake", "-S", ROOT, "-B", directory, "-DCMAKE_BUILD_TYPE=Release",
               "-DFACET_BUILD_TESTS=OFF"] + extra
        if self.dry_run:
            print("    " + " ".join(cmd))
        else:
            with open(log, "w") as f:
                subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
        self.run(["cmake", "--build", directory, "--target", target, "-j", JOBS], capture=False)

    def fer(self):
        if self.fer_binary:
            return self.fer_binary
        self.build(FER_BUILD, "fer", ["-DFACET_BUILD_EXAMPLES=ON"])
        return os.path.join(FER_BUILD, "fer")

    def facet_bench(self):
        if self.bench_binary:
            return self.bench_binary
        self.build(BENCH_BUILD, "facet_bench",
                   ["-DFACET_BUILD_EXAMPLES=OFF", "-DFACET_BUILD_BENCH=ON", "-DFACET_NATIVE=ON"])
        return os.path.join(BENCH_BUILD, "bench", "facet_bench")

    def google_benchmark(self, binary, pattern, repetitions=3, min_time="0.3", env=None):
        """Median of each benchmark matching `pattern`: {name: {counter: value, 'ms': time}}."""
        out = self.run([binary, f"--benchmark_filter={pattern}", "--benchmark_format=json",
                        f"--benchmark_repetitions={repetitions}",
                        "--benchmark_report_aggregates_only=true",
                        f"--benchmark_min_time={min_time}"], env=env)
        if self.dry_run:
            return {}
        medians = {}
        for b in json.loads(out)["benchmarks"]:
            if b.get("aggregate_name") == "median":
                scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]
                medians[b["run_name"].removesuffix("/real_time")] = {**b, "ms": b["real_time"] * scale}
        return medians


def topic_machine(r, a):
    if not r.dry_run:
        print(f"CPU: {cpu_name()}")
        for level in ("L1d", "L2", "L3"):
            out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                if line.strip().startswith(level + " cache"):
                    print(f"{level}: {line.split(':', 1)[1].strip()}")
        print()
    res = r.google_benchmark(r.facet_bench(), "BM_FmaPeak")
    print("| peak, GFLOP/s | 1 thread | 2 threads |\n|---|---|---|")
    for isa in ("avx512", "avx2", "avx512bf16"):
        row = [res.get(f"BM_FmaPeak/{isa}/{t}", {}).get("GFLOPS") for t in (1, 2)]
        if any(v is not None for v in row):
            print(f"| {isa} | " + " | ".join(f"{v:.0f}" if v else "-" for v in row) + " |")


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def openblas_environment(r, binary):
    """OpenBLAS at its best: its own choice of kernels, unless it does not know the CPU (0.3.21
    takes newer Xeons for a Prescott and runs SSE3 kernels); then the widest kernels the CPU's
    flags allow. Returns (environment, the core OpenBLAS reports)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}

    def core(environment):
        if r.dry_run:
            return "?"
        out = subprocess.run([binary, "--benchmark_filter=^$"], env={**environment, "OPENBLAS_VERBOSE": "2"},
                             capture_output=True, text=True)
        for line in (out.stdout + out.stderr).splitlines():
            if line.startswith("Core:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    chosen = core(env)
    flags = cpu_flags()
    widest = ("Cooperlake" if "avx512_bf16" in flags else "SkylakeX" if "avx512f" in flags
              else "Haswell" if "avx2" in flags else None)
    if widest and chosen in ("Prescott", "Core2", "Nehalem", "unknown"):
        env["OPENBLAS_CORETYPE"] = widest
        chosen = core(env) + f" (OPENBLAS_CORETYPE={widest}: it took this CPU for a {chosen})"
    return env, chosen


def topic_gemm(r, a):
    binary = r.facet_bench()
    env, openblas_core = openblas_environment(r, binary)
    pattern = "BM_Sgemm/.*/t[12]/(" + "|".join(s.split("_")[0] for s in GEMM_SHAPES) + ")_"
    res = r.google_benchmark(binary, pattern, env=env)
    print("| shape (M x N x K) op | threads | facet | Eigen | OpenBLAS | facet / OpenBLAS | "
          "facet / Eigen |\n|---|---|---|---|---|---|---|")
    for t in (1, 2):
        for shape in GEMM_SHAPES:
            g = {lib: res.get(f"BM_Sgemm/{lib}/t{t}/{shape}", {}).get("GFLOPS")
                 for lib in ("facet", "eigen", "openblas")}
            cells = [f"{v:.0f}" if v else "-" for v in g.values()]
            ratio = [f"**{g['facet'] / g[o]:.2f}**" if g["facet"] and g[o] else "-"
                     for o in ("openblas", "eigen")]
            print(f"| {shape} | {t} | " + " | ".join(cells + ratio) + " |")
    print(f"\nGFLOP/s = 2·M·N·K / time, medians of 3; OpenBLAS's kernels: {openblas_core}.")


def compare_pytorch(r, a, figures):
    fer = r.fer()
    cmd = [sys.executable, os.path.join(ROOT, "bench", "compare_pytorch.py"), "--fer", fer,
           "--rounds", str(a.rounds or 5)]
    if figures:
        cmd += ["--figures"] + figures
    if "avx512_bf16" in cpu_flags():  # facet's bf16 kernel; elsewhere it would run the reference
        cmd.append("--bf16")
    else:
        print("This CPU has no AVX512-BF16: the bf16 columns are left out.")
    print(r.run(cmd), end="")


def topic_layers(r, a):
    fer = r.fer()
    tables = {t: r.run([fer, "bench", "--threads", str(t), "--repeats", "7"]) for t in (1, 2)}
    if r.dry_run:
        return
    rows, totals = {}, {}
    for t, text in tables.items():
        group = []
        for line in text.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if line.startswith("total"):
                totals[t] = parts[1].split()[0]
                continue
            if len(parts) < 2 or not parts[0][:3].strip().isdigit():
                continue
            what = parts[0][3:].strip().rsplit(None, 1)[0]
            if what.startswith("(ReLU"):  # run inside the batch norm above: its time is there
                continue
            fwd, bwd = (float(x) for x in parts[1].split()[:2])
            if what.startswith("Conv2d("):
                name = "Conv2d " + what[7:].split(",")[0].replace("->", "→")
            elif what.startswith("BatchNorm2d"):
                name = "the batch norms (+ ReLU)"
            elif what.startswith("MaxPool2d"):
                name = "the max-pools"
            elif what.startswith("Dropout"):
                name = "the dropouts"
            else:
                name = "dense, batch norm 1d, the rest"
            if name not in group:
                group.append(name)
            f, b = rows.setdefault((name, t), (0.0, 0.0))
            rows[(name, t)] = (f + fwd, b + bwd)
    print("| layer | 1 thread, fwd / bwd ms | 2 threads, fwd / bwd ms |\n|---|---|---|")
    group.sort(key=lambda n: (not n.startswith("Conv2d"), n.startswith("dense")))
    for name in group:
        cells = [f"{rows[(name, t)][0]:.2f} / {rows[(name, t)][1]:.2f}" if (name, t) in rows
                 else "-" for t in (1, 2)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| **step** | " + " | ".join(f"**{totals.get(t, '-')} ms**" for t in (1, 2)) + " |")
    print("\n`fer bench --threads N --repeats 7`: fer-cnn-s, batch 64, medians of 7 steps; a batch "
          "norm and the ReLU after it run as one pass.")


def throughput(r, fer, threads, rounds):
    runs = {t: [] for t in threads}
    for _ in range(rounds):
        for t in threads:
            out = r.run([fer, "bench", "--throughput", "--threads", str(t), "--repeats", "10"])
            if out:
                runs[t].append(json.loads(out.strip().splitlines()[-1]))
    return runs


def topic_threads(r, a):
    rounds = a.rounds or 5
    runs = throughput(r, r.fer(), (1, 2), rounds)
    if r.dry_run:
        return
    print("| round | 1 thread, images/s | 2 threads, images/s | 2 threads / 1 |\n|---|---|---|---|")
    ratios = []
    for i in range(rounds):
        one = runs[1][i]["train_images_per_second"]
        two = runs[2][i]["train_images_per_second"]
        ratios.append(two / one)
        print(f"| {i + 1} | {one:.1f} | {two:.1f} | {two / one:.2f}× |")
    med = [statistics.median(x["train_images_per_second"] for x in runs[t]) for t in (1, 2)]
    print(f"| median | {med[0]:.1f} | {med[1]:.1f} | **{med[1] / med[0]:.2f}×** |")
    print("\n`fer bench --throughput`: fer-cnn-s training step (forward, backward, AdamW), batch 64, "
          "rounds alternating 1 and 2 threads.")


def topic_memory(r, a):
    fer = r.fer()
    runs = throughput(r, fer, (1, 2), 1)
    data = os.environ.get("FER2013_DIR") or os.path.join(ROOT, "data", "fer2013")
    train = None
    if os.path.isdir(os.path.join(data, "train")):
        out_dir = os.path.join(FER_BUILD, "memory-run")
        cmd = ["/usr/bin/time", "-f", "%M", fer, "train", "--data", data, "--out", out_dir,
               "--epochs", "1"]
        if r.dry_run:
            print("    " + " ".join(cmd))
        else:
            proc = subprocess.run(cmd, check=True, text=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
            train = int(proc.stderr.strip().splitlines()[-1]) / 1024.0
    if r.dry_run:
        return
    print("| process | 1 thread | 2 threads |\n|---|---|---|")
    print("| `fer bench --throughput` (batch 64, training and inference), peak RSS MB | " +
          " | ".join(f"{runs[t][0]['peak_rss_mb']:.1f}" for t in (1, 2)) + " |")
    if train is not None:
        print(f"| `fer train --epochs 1` on FER-2013 (batch 64, validation after the epoch), "
              f"peak RSS MB | | {train:.0f} |")
    else:
        print(f"\n(`fer train` not measured: no FER-2013 at {data}; set FER2013_DIR.)")


TOPICS = {"machine": topic_machine, "gemm": topic_gemm,
          "convstack": lambda r, a: compare_pytorch(r, a, ["conv_stack_ms"]),
          "layers": topic_layers, "pytorch": lambda r, a: compare_pytorch(r, a, None),
          "threads": topic_threads, "memory": topic_memory}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("topic", choices=sorted(TOPICS))
    ap.add_argument("--rounds", type=int, help="rounds for convstack, pytorch, threads (default 5)")
    ap.add_argument("--dry-run", action="store_true", help="print the header and the commands only")
    ap.add_argument("--fer", help="use this fer binary instead of building build/bench/fer")
    ap.add_argument("--facet-bench", help="use this facet_bench instead of building one")
    a = ap.parse_args()
    header(a.topic)
    TOPICS[a.topic](Runner(a.dry_run, a.fer, a.facet_bench), a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
