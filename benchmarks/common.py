"""Shared pieces of the benchmarks: the seed CNN in PyTorch (optional), timing, FLOP counts, tables.

Importing this module sets OpenMP's passive waiting for the whole process, before tinyconv or
PyTorch start their threads: with the default, the threads of whichever engine ran last keep
spinning and slow the other one down (see docs/performance.md).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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


TORCH_ALONE = """
import statistics, sys, time
sys.path.insert(0, {bench!r})
import torch
from common import random_batch, torch_seed_cnn_calls
torch.set_num_threads({threads})
x, y = random_batch({batch}, {size})
for fn in torch_seed_cnn_calls({size}, x, y):
    fn(); fn()
    times = []
    for _ in range({repeats}):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    print(statistics.median(times))
"""


def torch_alone(size: int, batch: int, repeats: int, threads: int) -> tuple[float, float]:
    """PyTorch's (train step, forward) median seconds in a process of its own, with OpenMP's defaults."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = TORCH_ALONE.format(bench=os.path.dirname(os.path.abspath(__file__)), threads=threads,
                              size=size, batch=batch, repeats=repeats)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    step, forward = (float(v) for v in out.stdout.split())
    return step, forward


def torch_seed_cnn_calls(size: int, x: np.ndarray, y: np.ndarray):
    """(train_step, forward) closures of PyTorch's seed CNN on one NHWC batch (moved to NCHW once)."""
    import torch
    torch.manual_seed(0)
    net = torch_seed_cnn(size, x.shape[3])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)

    def train_step():
        net.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(xt), yt).backward()
        optimizer.step()

    def forward():
        net.eval()
        with torch.no_grad():
            torch.sigmoid(net(xt))
    return train_step, forward


def interleaved_medians(candidates: dict, repeats: int, warmup: int = 2, block: int = 3) -> dict[str, float]:
    """Median seconds per call of each candidate, taking turns so that load drifts hit all alike.

    Each turn runs one unmeasured call, then ``block`` measured ones: the thread pools of the
    previous candidate (OpenMP, OpenBLAS) may still be spinning when a turn starts, and that
    first call absorbs it instead of being charged to the candidate.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(max(1, -(-repeats // block))):
        for name, fn in candidates.items():
            fn()
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str, folder: str | None = None) -> str:
    """Write ``text`` to ``folder/name`` (default: benchmarks/results) and return the path."""
    folder = folder or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


def report(name: str, table: str, note: str) -> None:
    """Print a result table and its note, and write both to benchmarks/results/``name``."""
    print(table)
    print(note)
    print("written to", write_result(name, table + "\n\n" + note))


def random_batch(batch: int, size: int, channels: int = 3, labels: int = 18, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((batch, size, size, channels)).astype(np.float32)
    y = (rng.random((batch, labels)) > 0.5).astype(np.float32)
    return x, y
