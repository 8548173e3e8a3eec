#!/usr/bin/python3
"""facet vs PyTorch on the same CPU: fer-cnn-s training step, inference and latency, side by side,
and the six convolutions alone (forward + backward-data + backward-weights, PyTorch's in oneDNN).

Runs facet (`fer bench --throughput`) and PyTorch (this script as a worker, Debian's python3-torch)
alternately, in separate processes, several rounds each, with the same batch size, thread count and
random data shapes, and prints the medians and the facet/PyTorch ratios. PyTorch runs with the
malloc settings under which it is fastest (TORCH_MALLOC below: with glibc's defaults it loses a
large, varying share of its time to page faults).

    /usr/bin/python3 bench/compare_pytorch.py --fer build/release/fer [--rounds 3] [--threads 1 2]
        [--figures conv_stack_ms ...]

Exits 0 with a message when torch is not installed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

TORCH_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


def torch_worker(threads, batch, repeats):
    import resource
    import time

    import torch
    import torch.nn as nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.MaxPool2d(2), nn.Dropout(0.25)]

    model = nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128), nn.Flatten(),
                          nn.Linear(4608, 256, bias=False), nn.BatchNorm1d(256), nn.ReLU(),
                          nn.Dropout(0.5), nn.Linear(256, 7))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(batch, 1, 48, 48)
    y = torch.randint(0, 7, (batch,))
    one = torch.randn(1, 1, 48, 48)

    def median_time(fn, n, warm):
        times = []
        for i in range(n + warm):
            t0 = time.perf_counter()
            fn()
            if i >= warm:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    model.train()
    t_train = median_time(train_step, repeats, 2)
    model.eval()
    with torch.no_grad():
        t_infer = median_time(lambda: model(x), repeats, 1)
        t_one = median_time(lambda: model(one), 45, 5)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t_convs = conv_stack_seconds(batch, repeats)
    blas = sorted({line.split()[-1] for line in open("/proc/self/maps")
                   if "libblas" in line or "openblas" in line})
    print(json.dumps({"threads": threads, "batch": batch, "train_images_per_second": batch / t_train,
                      "inference_images_per_second": batch / t_infer, "latency_ms": 1e3 * t_one,
                      "peak_rss_mb": peak, "conv_stack_ms": 1e3 * t_convs, "blas": blas,
                      "torch": torch.__version__}))


def conv_stack_seconds(batch, repeats):
    """Median time of forward + backward-data + backward-weights of fer-cnn-s's six 3x3
    convolutions, each on its own random input, as facet's BM_ConvStack counts them (PyTorch runs
    these convolutions in oneDNN)."""
    import time
    import torch
    import torch.nn.functional as F
    layers = []
    for cin, cout, size in ((1, 32, 48), (32, 32, 48), (32, 64, 24), (64, 64, 24), (64, 128, 12),
                            (128, 128, 12)):
        x = torch.randn(batch, cin, size, size, requires_grad=True)
        w = (torch.randn(cout, cin, 3, 3) * (2.0 / (9 * cin)) ** 0.5).requires_grad_()
        layers.append((x, w, torch.randn(batch, cout, size, size)))

    def stack():
        for x, w, dy in layers:
            y = F.conv2d(x, w, padding=1)
            torch.autograd.grad(y, (x, w), dy)

    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        stack()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer", default="build/release/fer", help="path of the fer binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per process")
    ap.add_argument("--figures", nargs="+", help="rows to print (default: all): train_images_per_second, "
                    "inference_images_per_second, latency_ms, peak_rss_mb, conv_stack_ms")
    ap.add_argument("--torch-worker", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker is not None:
        return torch_worker(a.torch_worker, a.batch, a.repeats)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("SKIP: python3-torch is not installed (apt-get install python3-torch)")
        return 0
    keys = ["train_images_per_second", "inference_images_per_second", "latency_ms", "peak_rss_mb",
            "conv_stack_ms"]
    results = {}
    for r in range(a.rounds):
        for t in a.threads:
            f = run_json([a.fer, "bench", "--throughput", "--threads", str(t), "--batch", str(a.batch),
                          "--repeats", str(a.repeats)])
            p = run_json([sys.executable, __file__, "--torch-worker", str(t), "--batch", str(a.batch),
                          "--repeats", str(a.repeats)], env={**os.environ, **TORCH_MALLOC})
            for name, res in (("facet", f), ("pytorch", p)):
                for k in keys:
                    results.setdefault((name, t, k), []).append(res[k])
            if r == 0 and t == a.threads[0]:
                print(f"PyTorch {p['torch']} loaded BLAS: {', '.join(p['blas']) or 'none'}",
                      file=sys.stderr)
                if not any("openblas" in path for path in p["blas"]):
                    print("WARNING: PyTorch is not using OpenBLAS: its "
                          "dense layers and batch-1 convolutions run on the reference BLAS. "
                          "apt-get install libopenblas0-pthread", file=sys.stderr)
            print(f"round {r + 1}, {t} thread(s): facet {f['train_images_per_second']:.0f} img/s, "
                  f"PyTorch {p['train_images_per_second']:.0f} img/s (training)", file=sys.stderr)
    print(f"fer-cnn-s, batch {a.batch}, median of {a.rounds} alternating rounds\n")
    print("| figure | threads | facet | PyTorch | facet / PyTorch |")
    print("|---|---|---|---|---|")
    labels = {"train_images_per_second": "training step, images/s", "inference_images_per_second":
              f"inference (eval), batch {a.batch}, images/s", "latency_ms": "latency, batch 1, ms",
              "peak_rss_mb": "peak resident memory, MB",
              "conv_stack_ms": f"the six convolutions, forward + backward, batch {a.batch}, ms"}
    for k in a.figures or keys:
        for t in a.threads:
            fv = statistics.median(results[("facet", t, k)])
            pv = statistics.median(results[("pytorch", t, k)])
            print(f"| {labels[k]} | {t} | {fv:.1f} | {pv:.1f} | {fv / pv:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
