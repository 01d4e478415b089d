"""Training step and forward pass of the seed CNN: tinyconv (numba), tinyconv (reference kernels), PyTorch.

Usage: python benchmarks/bench_train_step.py [--sizes 32 48] [--batch 32] [--repeats 10] [--threads 2]

All candidates run in one process and take turns (median of ``--repeats`` after warm-up), so the
ratios hold even on a noisy machine. PyTorch is optional; its rows are skipped when it is missing.
"tinyconv, im2col only" is the numba path with every Conv2D forced to ``algorithm="im2col"``: the
difference to "tinyconv" is what the Winograd layers gain. "tinyconv reference, im2col only" is the
textbook path: readable kernels and im2col everywhere. GFLOP/s counts the direct convolution's
arithmetic for every engine (Winograd does less), so it compares speed, not hardware efficiency.

Both engines run their OpenMP threads with passive waiting (set by ``common``, before either library
loads): with the default, the threads of whichever engine ran last keep spinning and slow the
other one down. PyTorch is also timed alone in a process of its own with OpenMP's defaults
("PyTorch, own process"), its best case on this machine.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (interleaved_medians, markdown_table, random_batch, seed_cnn_flops, torch_alone,
                    torch_available, torch_seed_cnn_calls, write_result)


def tinyconv_candidates(size, x, y):
    import tinyconv
    from tinyconv import kernels
    from tinyconv.layers import Conv2D
    from tinyconv.zoo import seed_cnn

    def make(reference: bool, algorithm: str = "auto"):
        tinyconv.set_seed(0)
        model = seed_cnn((size, size, 3))
        for layer in model.layers:
            if isinstance(layer, Conv2D):
                layer.algorithm = algorithm
        model.compile("adam", "binary_crossentropy")

        def step():
            with kernels.reference_kernels(reference):
                model.train_step((x, y))

        def forward():
            with kernels.reference_kernels(reference):
                model.forward(x)
        return step, forward

    variants = {"tinyconv": (False, "auto"), "tinyconv, im2col only": (False, "im2col"),
                "tinyconv reference": (True, "auto"), "tinyconv reference, im2col only": (True, "im2col")}
    steps, forwards = {}, {}
    for name, (reference, algorithm) in variants.items():
        steps[name], forwards[name] = make(reference, algorithm)
    return steps, forwards


def input_pipeline(size, batch):
    """The example's input pipeline: seed augmentation + featurewise standardisation + batching."""
    from tinyconv.data import ImageDataGenerator
    images, _ = random_batch(max(10 * batch, 320), size)
    labels = np.zeros((len(images), 18), np.float32)
    generator = ImageDataGenerator(rotation_range=10, zoom_range=[0.9, 1.1], width_shift_range=0.1,
                                   height_shift_range=0.1, shear_range=0.1, horizontal_flip=True,
                                   featurewise_center=True, featurewise_std_normalization=True)
    generator.fit(images)
    batches = generator.flow(images, labels, batch_size=batch, seed=0)
    return lambda: next(batches)


def torch_candidates(size, x, y):
    step, forward = torch_seed_cnn_calls(size, x, y)
    return {"PyTorch": step}, {"PyTorch": forward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 48])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    have_torch = torch_available()
    if have_torch:
        import torch
        torch.set_num_threads(args.threads)
    else:
        print("PyTorch is not installed: its rows are skipped (pip install torch to compare).")

    rows = []
    for size in args.sizes:
        x, y = random_batch(args.batch, size)
        steps, forwards = tinyconv_candidates(size, x, y)
        if have_torch:
            torch_steps, torch_forwards = torch_candidates(size, x, y)
            steps.update(torch_steps)
            forwards.update(torch_forwards)
        flops = seed_cnn_flops(size, batch=args.batch)
        steps["input pipeline"] = input_pipeline(size, args.batch)
        alone = torch_alone(size, args.batch, args.repeats, args.threads) if have_torch else None
        for index, (kind, candidates) in enumerate((("train step", steps), ("forward", forwards))):
            medians = interleaved_medians(candidates, args.repeats)
            if alone:
                medians["PyTorch, own process"] = alone[index]
            base = medians["tinyconv"]
            work = flops["step" if kind == "train step" else "forward"]
            for name, seconds in medians.items():
                gflops = "" if name == "input pipeline" else f"{work / seconds / 1e9:.1f}"
                rows.append([f"{size}x{size}x3", kind, name, f"{seconds * 1e3:.1f}",
                             f"{seconds / base:.2f}", f"{args.batch / seconds:.0f}", gflops])
    header = ["input", "what", "engine", "ms (median)", "time / tinyconv", "images/s", "GFLOP/s"]
    table = markdown_table(header, rows)
    note = (f"batch {args.batch}, float32, {args.threads} threads, median of {args.repeats} calls after "
            "warm-up, candidates interleaved in one process")
    print(table)
    print(note)
    print("written to", write_result("train_step.md", table + "\n\n" + note))


if __name__ == "__main__":
    main()
