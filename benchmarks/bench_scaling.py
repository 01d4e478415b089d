"""How the seed CNN's training step scales with batch size and image size, and its peak memory.

Usage: python benchmarks/bench_scaling.py [--batches 8 16 32 64 128 256] [--sizes 24 32 48 64 96]
       [--repeats 5] [--plot docs/figures/scaling.png]

Prints markdown tables (ms per step, ms per image, achieved GFLOP/s, and PyTorch's time when it is
installed) and saves a plot. Peak memory of training is measured in a fresh child process (its
``VmHWM``, the high-water mark of resident memory) so that nothing else this script allocated counts.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (interleaved_medians, markdown_table, random_batch, seed_cnn_flops, torch_available,
                    torch_seed_cnn_calls, write_result)

import tinyconv
from tinyconv.zoo import seed_cnn

MEMORY_PROBE = """
import sys
sys.path.insert(0, {bench!r})
from common import random_batch
import tinyconv
from tinyconv.zoo import seed_cnn

def high_water_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

size, batch = {size}, {batch}
model = seed_cnn((size, size, 3)); model.compile("adam", "binary_crossentropy")
x, y = random_batch(batch, size)
before = high_water_mb()
for _ in range(3):
    model.train_step((x, y))
print(before, high_water_mb())
"""


def peak_memory_mb(size: int, batch: int) -> tuple[float, float]:
    """(peak resident MB of a process training the seed CNN, the part reached after the model was built)."""
    code = MEMORY_PROBE.format(bench=os.path.dirname(os.path.abspath(__file__)), size=size, batch=batch)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, after = (float(v) for v in out.split())
    return after, after - before


def step_candidates(size: int, batch: int, with_torch: bool) -> dict:
    x, y = random_batch(batch, size)
    tinyconv.set_seed(0)
    model = seed_cnn((size, size, 3))
    model.compile("adam", "binary_crossentropy")
    candidates = {"tinyconv": lambda: model.train_step((x, y))}
    if with_torch:
        candidates["PyTorch"] = torch_seed_cnn_calls(size, x, y)[0]
    return candidates


def sweep(points, repeats, with_torch):
    rows, series = [], {}
    for size, batch in points:
        medians = interleaved_medians(step_candidates(size, batch, with_torch), repeats, warmup=1)
        t = medians["tinyconv"]
        flops = seed_cnn_flops(size, batch=batch)["step"]
        row = [f"{size}x{size}", batch, f"{t * 1e3:.0f}", f"{t / batch * 1e3:.2f}", f"{flops / t / 1e9:.1f}"]
        if with_torch:
            row += [f"{medians['PyTorch'] * 1e3:.0f}", f"{t / medians['PyTorch']:.2f}"]
        rows.append(row)
        series[(size, batch)] = (t / batch, medians.get("PyTorch", float("nan")) / batch)
    return rows, series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 32, 48, 64, 96])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plot", default=None, help="where to save the plot (PNG)")
    args = parser.parse_args()
    with_torch = torch_available()
    if with_torch:
        import torch
        torch.set_num_threads(2)

    header = ["input", "batch", "tinyconv ms/step", "ms/image", "GFLOP/s"]
    if with_torch:
        header += ["PyTorch ms/step", "tinyconv / PyTorch"]
    batch_rows, batch_series = sweep([(32, b) for b in args.batches], args.repeats, with_torch)
    size_rows, size_series = sweep([(s, 32) for s in args.sizes], args.repeats, with_torch)
    peak, growth = peak_memory_mb(48, 32)
    text = "\n\n".join([
        "Training step against batch size (32x32x3)", markdown_table(header, batch_rows),
        "Training step against image size (batch 32)", markdown_table(header, size_rows),
        f"Peak resident memory of a process training at batch 32, 48x48x3: {peak:.0f} MB "
        f"({growth:.0f} MB of it reached during the training steps)"])
    print(text)
    print("written to", write_result("scaling.md", text))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, series, key, label in ((axes[0], batch_series, 1, "batch size (32x32x3)"),
                                       (axes[1], size_series, 0, "image size (batch 32)")):
            xs = [k[key] for k in series]
            ax.plot(xs, [v[0] * 1e3 for v in series.values()], "o-", label="tinyconv")
            if with_torch:
                ax.plot(xs, [v[1] * 1e3 for v in series.values()], "s--", label="PyTorch")
            ax.set_xlabel(label)
            ax.set_ylabel("ms per image (training step)")
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(v) for v in xs])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print("plot saved to", args.plot)


if __name__ == "__main__":
    main()
