#!/usr/bin/python3
"""facet vs PyTorch on the same CPU: fer-cnn-s training step, inference and latency, side by side,
and the six convolutions alone (forward + backward-data + backward-weights, PyTorch's in oneDNN).

Runs facet (`fer bench --throughput`, in fp32 and, with --bf16, in bf16) and PyTorch (this script
as a worker, Debian's python3-torch) alternately, in separate processes, several rounds each, with
the same batch size, thread count and random data shapes, and prints the medians and the ratios.
PyTorch runs in each of its set-ups: fp32 NCHW, fp32 channels-last and (with --bf16) bf16 autocast
in channels-last, with the malloc settings under which it is fastest (TORCH_MALLOC below: with
glibc's defaults it loses a large, varying share of its time to page faults). facet's fp32 is
compared with the faster PyTorch fp32 set-up, its bf16 with PyTorch's bf16.

    /usr/bin/python3 bench/compare_pytorch.py --fer build/release/fer [--rounds 3] [--threads 1 2]
        [--bf16] [--figures conv_stack_ms ...]

Exits 0 with a message when torch is not installed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

TORCH_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


TORCH_SETUPS = {"nchw": "PyTorch fp32 NCHW", "channels_last": "PyTorch fp32 channels-last",
                "bf16": "PyTorch bf16 autocast, channels-last"}


def torch_worker(threads, batch, repeats, setup):
    import contextlib
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
    layout = torch.channels_last if setup in ("channels_last", "bf16") else torch.contiguous_format
    model = model.to(memory_format=layout)
    x, one = x.to(memory_format=layout), one.to(memory_format=layout)

    def precision():  # a fresh context each time: autocast's are not reentrant across calls
        if setup == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

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
        with precision():
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    def infer(images):
        with precision():
            return model(images)

    model.train()
    t_train = median_time(train_step, repeats, 2)
    model.eval()
    with torch.no_grad():
        t_infer = median_time(lambda: infer(x), repeats, 1)
        t_one = median_time(lambda: infer(one), 45, 5)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t_convs = conv_stack_seconds(batch, repeats, layout, precision)
    blas = sorted({line.split()[-1] for line in open("/proc/self/maps")
                   if "libblas" in line or "openblas" in line})
    print(json.dumps({"threads": threads, "batch": batch, "train_images_per_second": batch / t_train,
                      "inference_images_per_second": batch / t_infer, "latency_ms": 1e3 * t_one,
                      "peak_rss_mb": peak, "conv_stack_ms": 1e3 * t_convs, "blas": blas,
                      "torch": torch.__version__}))


def conv_stack_seconds(batch, repeats, layout, precision):
    """Median time of forward + backward-data + backward-weights of fer-cnn-s's six 3x3
    convolutions, each on its own random input, as facet's BM_ConvStack counts them (PyTorch runs
    these convolutions in oneDNN), in the worker's memory layout and precision."""
    import time
    import torch
    import torch.nn.functional as F
    layers = []
    for cin, cout, size in ((1, 32, 48), (32, 32, 48), (32, 64, 24), (64, 64, 24), (64, 128, 12),
                            (128, 128, 12)):
        x = torch.randn(batch, cin, size, size).to(memory_format=layout).requires_grad_()
        w = (torch.randn(cout, cin, 3, 3) * (2.0 / (9 * cin)) ** 0.5).to(memory_format=layout)
        layers.append((x, w.requires_grad_(), torch.randn(batch, cout, size, size)))

    def stack():
        for x, w, dy in layers:
            with precision():
                y = F.conv2d(x, w, padding=1)
            torch.autograd.grad(y, (x, w), dy.to(y.dtype).to(memory_format=layout))

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
    ap.add_argument("--bf16", action="store_true",
                    help="also facet in bf16 (fer bench --precision bf16) and PyTorch's bf16 autocast")
    ap.add_argument("--figures", nargs="+", help="rows to print (default: all): train_images_per_second, "
                    "inference_images_per_second, latency_ms, peak_rss_mb, conv_stack_ms")
    ap.add_argument("--torch-worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--setup", default="nchw", choices=sorted(TORCH_SETUPS), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker is not None:
        return torch_worker(a.torch_worker, a.batch, a.repeats, a.setup)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("SKIP: python3-torch is not installed (apt-get install python3-torch)")
        return 0
    keys = ["train_images_per_second", "inference_images_per_second", "latency_ms", "peak_rss_mb",
            "conv_stack_ms"]
    facet_runs = ["fp32"] + (["bf16"] if a.bf16 else [])
    torch_runs = ["nchw", "channels_last"] + (["bf16"] if a.bf16 else [])
    results = {}
    for r in range(a.rounds):
        for t in a.threads:
            common = ["--batch", str(a.batch), "--repeats", str(a.repeats)]
            got = {}
            for prec in facet_runs:
                got["facet " + prec] = run_json([a.fer, "bench", "--throughput", "--threads", str(t),
                                                 "--precision", prec] + common)
            for setup in torch_runs:
                got[setup] = run_json([sys.executable, __file__, "--torch-worker", str(t),
                                       "--setup", setup] + common, env={**os.environ, **TORCH_MALLOC})
            for name, res in got.items():
                for k in keys:
                    results.setdefault((name, t, k), []).append(res[k])
            p = got["nchw"]
            if r == 0 and t == a.threads[0]:
                print(f"PyTorch {p['torch']} loaded BLAS: {', '.join(p['blas']) or 'none'}",
                      file=sys.stderr)
                if not any("openblas" in path for path in p["blas"]):
                    print("WARNING: PyTorch is not using OpenBLAS: its "
                          "dense layers and batch-1 convolutions run on the reference BLAS. "
                          "apt-get install libopenblas0-pthread", file=sys.stderr)
            print(f"round {r + 1}, {t} thread(s), training images/s: " +
                  ", ".join(f"{name} {res['train_images_per_second']:.0f}" for name, res in got.items()),
                  file=sys.stderr)
    print(f"fer-cnn-s, batch {a.batch}, median of {a.rounds} alternating rounds\n")
    labels = {"train_images_per_second": "training step, images/s", "inference_images_per_second":
              f"inference (eval), batch {a.batch}, images/s", "latency_ms": "latency, batch 1, ms",
              "peak_rss_mb": "peak resident memory, MB",
              "conv_stack_ms": f"the six convolutions, forward + backward, batch {a.batch}, ms"}
    higher_is_better = {"train_images_per_second", "inference_images_per_second"}
    names = ["facet " + p for p in facet_runs] + torch_runs
    header = ["figure", "threads"] + [n if n.startswith("facet") else TORCH_SETUPS[n] for n in names]
    header += ["facet fp32 / best PyTorch fp32"] + (["facet bf16 / PyTorch bf16"] if a.bf16 else [])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for k in a.figures or keys:
        for t in a.threads:
            med = {n: statistics.median(results[(n, t, k)]) for n in names}
            pick = max if k in higher_is_better else min
            best32 = pick(med["nchw"], med["channels_last"])
            cells = [labels[k], str(t)] + [f"{med[n]:.1f}" for n in names]
            cells.append(f"{med['facet fp32'] / best32:.2f}")
            if a.bf16:
                cells.append(f"{med['facet bf16'] / med['bf16']:.2f}")
            print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
