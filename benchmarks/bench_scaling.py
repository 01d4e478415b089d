"""How the seed CNN's training step scales with batch size and image size, and its peak memory.

Usage: python benchmarks/bench_scaling.py [--batches 8 16 32 64 128 256] [--sizes 24 32 48 64 96]
       [--repeats 5] [--plot docs/figures/scaling.png]

Prints markdown tables (ms per step, ms per image, achieved GFLOP/s and the FLOPs per image, PyTorch's
time when it is installed, and each engine's training growth of memory) and saves a plot of time and
memory against both. Times come from the two engines taking turns in this process; memory from
``bench_memory``: each engine and point in a fresh process of its own, the peak resident memory of 3
training steps minus the process before them (libraries, the code loaded by a warm-up step, model
and batch), so that neither engine's libraries and nothing else this script allocated count.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (interleaved_medians, markdown_table, random_batch, seed_cnn_flops, torch_available,
                    torch_seed_cnn_calls, write_result)

import bench_memory
import tinyconv
from tinyconv.zoo import seed_cnn

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
    engines = ["tinyconv"] + (["PyTorch"] if with_torch else [])
    for size, batch in points:
        medians = interleaved_medians(step_candidates(size, batch, with_torch), repeats, warmup=1)
        memory = {}
        for engine in engines:
            got = bench_memory.measure(engine, size, batch, 3)
            memory[engine] = got["peak"] - got["footprint"]
        t = medians["tinyconv"]
        flops = seed_cnn_flops(size, batch=batch)["step"]
        row = [f"{size}x{size}", batch, f"{t * 1e3:.0f}", f"{t / batch * 1e3:.2f}", f"{flops / t / 1e9:.1f}",
               f"{flops / batch / 1e9:.2f}", f"{memory['tinyconv']:.0f}"]
        if with_torch:
            row += [f"{medians['PyTorch'] * 1e3:.0f}", f"{t / medians['PyTorch']:.2f}", f"{memory['PyTorch']:.0f}"]
        rows.append(row)
        print(" | ".join(map(str, row)), flush=True)
        series[(size, batch)] = {engine: (medians[engine] / batch, memory[engine]) for engine in engines}
    return rows, series


def plot(path, batch_series, size_series):
    """Time per image (top) and training growth of memory (bottom) against batch and image size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex="col")
    for column, series, key, label in ((0, batch_series, 1, "batch size (32x32x3)"),
                                       (1, size_series, 0, "image size (batch 32)")):
        xs = [k[key] for k in series]
        for row, (ylabel, scale) in enumerate((("ms per image (training step)", 1e3),
                                               ("training growth of memory, MiB", 1))):
            ax = axes[row, column]
            for engine, style in (("tinyconv", "o-"), ("PyTorch", "s--")):
                if all(engine in point for point in series.values()):
                    ax.plot(xs, [point[engine][row] * scale for point in series.values()], style, label=engine)
            ax.set_ylabel(ylabel)
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(v) for v in xs])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.legend()
        axes[1, column].set_xlabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("plot saved to", path)


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

    header = ["input", "batch", "tinyconv ms/step", "ms/image", "GFLOP/s", "GFLOP/image", "tinyconv MiB"]
    if with_torch:
        header += ["PyTorch ms/step", "tinyconv / PyTorch", "PyTorch MiB"]
    batch_rows, batch_series = sweep([(32, b) for b in args.batches], args.repeats, with_torch)
    size_rows, size_series = sweep([(s, 32) for s in args.sizes], args.repeats, with_torch)
    text = "\n\n".join([
        "Training step against batch size (32x32x3)", markdown_table(header, batch_rows),
        "Training step against image size (batch 32)", markdown_table(header, size_rows),
        "MiB: the training growth of memory (peak resident memory of 3 steps minus the process before them, "
        "after a warm-up step of a small model: see bench_memory)"])
    print(text)
    print("written to", write_result("scaling.md", text))
    if args.plot:
        plot(args.plot, batch_series, size_series)


if __name__ == "__main__":
    main()
