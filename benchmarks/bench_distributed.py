"""The seed CNN's training step in one process and on MPI ranks (``tinyconv.distributed``).

Usage: python benchmarks/bench_distributed.py [--size 32] [--batch 32] [--steps 30]

Each configuration runs in processes of its own, one after the other (``mpiexec`` for the ranks),
training the seed CNN of ``examples/train_cells.py`` on random images with ``fit`` for ``--steps``
batches after two warm-up batches; the table shows the median step (rank 0's clock, which waits
for every rank at each Allreduce) and, for the ranks, the median time spent waiting in the two
collectives of a step (the scale agreement and the fixed-point gradient sum): communication plus
waiting for the slowest rank. Configurations:

- 1 process, 2 threads: ordinary training, the machine's two cores in one process;
- 1 process, 1 thread: what one rank's core does alone;
- 2 ranks x 1 thread, parts=2: each rank one pass over its half;
- 2 ranks x 1 thread, parts=4 (the default): two passes of a quarter each, exact against 1 and 4 ranks;
- 1 rank x 2 threads, parts=4: the single-rank run that the 2-rank run equals bit for bit.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, write_result

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = [  # name, ranks (None: no MPI), threads per process, parts
    ("1 process, 2 threads", None, 2, None),
    ("1 process, 1 thread", None, 1, None),
    ("2 ranks x 1 thread, parts=2", 2, 1, 2),
    ("2 ranks x 1 thread, parts=4", 2, 1, 4),
    ("1 rank x 2 threads, parts=4", 1, 2, 4),
]


def worker(size: int, batch: int, steps: int, parts: int | None) -> None:
    """Inside each process: train, time every step, print rank 0's medians as JSON."""
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import numpy as np

    import tinyconv
    from tinyconv import distributed
    from tinyconv.callbacks import Callback
    import train_cells

    waits: list[float] = []
    if parts is not None:
        shared = distributed.DataParallel(parts=parts)
        plain_wait = shared._wait

        def timed_wait(request, what):  # the benchmark's own probe: seconds inside the step's collectives
            start = time.perf_counter()
            plain_wait(request, what)
            if what in ("agreeing on the gradients' scale", "summing the gradients"):
                waits.append(time.perf_counter() - start)
        shared._wait = timed_wait
        distributed.set_distribution(shared)

    class StepClock(Callback):
        def __init__(self):
            super().__init__()
            self.ends = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    tinyconv.set_seed(0)
    rng = np.random.default_rng(0)
    n = batch * (steps + 2)
    x = rng.random((n, size, size, 3)).astype(np.float32)
    y = (rng.random((n, 18)) < 0.3).astype(np.float32)
    model = train_cells.build_model((size, size, 3), 18)
    clock = StepClock()
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[clock])
    steps_s = [b - a for a, b in zip(clock.ends, clock.ends[1:])][2:]
    if distributed.distribution().is_writer:
        per_step = [sum(waits[i:i + 2]) for i in range(4, len(waits), 2)]  # two collectives a step
        from threadpoolctl import threadpool_info
        kernel = ",".join(p.get("architecture") or "?" for p in threadpool_info() if p["internal_api"] == "openblas")
        print(json.dumps({"step": statistics.median(steps_s),
                          "wait": statistics.median(per_step) if per_step else None, "kernel": kernel}))


def cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parts", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.size, args.batch, args.steps, args.parts)
        return
    launcher = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    rows, results = [], {}
    for name, ranks, threads, parts in CONFIGS:
        command = [sys.executable, os.path.abspath(__file__), "--worker", "--size", str(args.size),
                   "--batch", str(args.batch), "--steps", str(args.steps)]
        if ranks is not None:
            if launcher is None:
                print(f"{name}: skipped, no mpiexec (pip install -e '.[mpi]')")
                continue
            command = [launcher, "-n", str(ranks), *command, "--parts", str(parts)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads)}
        out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        results[name] = result
        rows.append([name, f"{result['step'] * 1e3:.1f}",
                     "" if result["wait"] is None else f"{result['wait'] * 1e3:.1f} "
                     f"({100 * result['wait'] / result['step']:.0f}%)"])
    base = results.get(CONFIGS[0][0])
    for row, name in zip(rows, results):
        row.append(f"{results[name]['step'] / base['step']:.2f}" if base else "")
    note = (f"{cpu_name()}, {os.cpu_count()} cores; seed CNN at {args.size} px, batch {args.batch}, float32; "
            f"median of {args.steps} steps; OpenBLAS kernel {next(iter(results.values()))['kernel']}")
    table = markdown_table(["configuration", "step (ms)", "in the step's collectives (ms)",
                            "step / 1 process 2 threads"], rows)
    text = f"{note}\n\n{table}"
    print(text)
    print(f"Wrote {write_result('distributed.md', text)}")


if __name__ == "__main__":
    main()
