#!/usr/bin/env python3
"""The communication model of docs/distributed.md: predicted step time of data-parallel training
on p nodes, printed as the Markdown table the document shows.

    T_sum(p)  = 2 (p - 1) alpha + 2 (p - 1) / p * S / beta      (the rank-ordered sum)
    T_step(p) = B / (p R) + T_sum(p)

Overlapping the sum with the backward pass (about two thirds of a step's compute) would save
min(T_sum, 2/3 * B / (p R)) per step.

    scripts/distributed_model.py --rate 440      # R: images/s one node trains
"""
import argparse


def sum_time(p, alpha, beta, size):
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * size / beta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, required=True, help="R, images/s of one node")
    ap.add_argument("--bytes", type=float, default=5.88e6, help="S, bytes summed per step")
    ap.add_argument("--alpha", type=float, default=25e-6, help="latency per message, s")
    ap.add_argument("--batches", default="64,1024", help="global batches")
    ap.add_argument("--nodes", default="8,16,32,64", help="node counts")
    a = ap.parse_args()
    links = [("10 GbE", 1.15e9), ("25 GbE", 2.9e9)]  # TCP goodput, about 92 % of the line rate
    head = "| global batch | nodes | compute |"
    for name, _ in links:
        head += f" {name}: sum | step | speed-up | overlapped |"
    print(head)
    print("|" + "---:|" * (3 + 4 * len(links)))
    for b in (int(x) for x in a.batches.split(",")):
        one = b / a.rate
        for p in (int(x) for x in a.nodes.split(",")):
            compute = one / p
            row = f"| {b} | {p} | {compute * 1e3:.1f} ms |"
            for _, beta in links:
                t = sum_time(p, a.alpha, beta, a.bytes)
                step = compute + t
                hidden = step - min(t, 2 / 3 * compute)
                row += f" {t * 1e3:.1f} ms | {step * 1e3:.1f} ms | {one / step:.1f}× | {one / hidden:.1f}× |"
            print(row)


if __name__ == "__main__":
    main()
