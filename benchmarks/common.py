"""Shared pieces of the benchmarks: the seed CNN in PyTorch (optional), timing, FLOP counts, tables."""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

SEED_CONVS = [(3, 64), (64, 64), "pool", (64, 128), (128, 128), "pool"]


def seed_cnn_flops(size: int, channels: int = 3, batch: int = 1) -> dict[str, float]:
    """Multiply-add FLOPs (2 per MAC) of the seed CNN's forward pass, and of a training step (x3)."""
    h = size
    forward = 0.0
    c_in = channels
    for item in SEED_CONVS:
        if item == "pool":
            h //= 2
            continue
        _, c_out = item
        forward += 2 * h * h * 9 * c_in * c_out
        c_in = c_out
    forward += 2 * (h * h * 128 * 128 + 128 * 18)
    # Backward costs two GEMMs per layer (weights and inputs), about twice the forward.
    return {"forward": forward * batch, "step": 3 * forward * batch}


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_seed_cnn(size: int, channels: int = 3):
    """The same network in PyTorch (NCHW), with Keras's LeakyReLU slope 0.3."""
    import torch
    from torch import nn
    flat = (size // 4) * (size // 4) * 128
    return nn.Sequential(
        nn.Conv2d(channels, 64, 3, padding=1), nn.LeakyReLU(0.3),
        nn.Conv2d(64, 64, 3, padding=1), nn.LeakyReLU(0.3), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.LeakyReLU(0.3),
        nn.Conv2d(128, 128, 3, padding=1), nn.LeakyReLU(0.3), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, 128), nn.LeakyReLU(0.3), nn.Dropout(0.5), nn.Linear(128, 18),
    ).to(torch.float32)


def interleaved_medians(candidates: dict, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each candidate, calling them in turn so that load drifts hit all alike."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str) -> str:
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


def random_batch(batch: int, size: int, channels: int = 3, labels: int = 18, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((batch, size, size, channels)).astype(np.float32)
    y = (rng.random((batch, labels)) > 0.5).astype(np.float32)
    return x, y
