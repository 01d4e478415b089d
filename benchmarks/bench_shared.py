"""The training step when the machine is shared: tinyconv and PyTorch beside other processes.

Usage: python benchmarks/bench_shared.py [--sizes 32] [--seconds 4] [--rounds 2] [--scenarios ...]
       [--baseline CHECKOUT]

Scenarios (the script starts the other processes and stops them after each measurement):

- quiet: nothing started;
- busy process: one single-threaded Python loop;
- tinyconv training: a second process training the same network (the same tinyconv settings as
  the one measured);
- NumPy products: a loop of 1024 x 1024 float32 matrix products on 2 OpenBLAS threads.

Each engine trains the seed CNN (batch 32, float32) in a process of its own beside the load, for
``--seconds`` after warm-up, and reports its median step. Engines take turns within a scenario and
the whole sweep repeats ``--rounds`` times (the table shows the median over rounds), so a drift of
the background load hits all alike. ``--baseline CHECKOUT`` adds "tinyconv baseline": the tinyconv
of another checkout (an older commit in a ``git worktree``), measured the same way in the same run
(its load in the tinyconv-training scenario is that checkout's too). "busy cores before" is how
many cores other processes kept busy in the second before the load started (from ``/proc/stat``),
and "load" the 1-minute load average: the background this run had, beyond the scenario. The
OpenBLAS kernel each tinyconv ran (threadpoolctl's ``architecture``) is printed with the table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, report

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENARIOS = ("quiet", "busy process", "tinyconv training", "NumPy products")
ENGINES = ("tinyconv", "PyTorch")
BASELINE = "tinyconv baseline"

STEP_WORKER = """
import statistics, sys, time
sys.path.insert(0, {bench!r})
from common import random_batch
size, seconds, engine = {size}, {seconds}, {engine!r}
x, y = random_batch(32, size)
if engine == "PyTorch":
    import torch
    from common import torch_seed_cnn_calls
    torch.set_num_threads({threads})
    step, _ = torch_seed_cnn_calls(size, x, y)
else:
    import tinyconv
    from tinyconv.zoo import seed_cnn
    tinyconv.set_seed(0)
    model = seed_cnn((size, size, 3))
    model.compile("adam", "binary_crossentropy")
    # train_step(data) since the one training loop; a --baseline checkout may predate it: train_step(x, y)
    step = (lambda: model.train_step((x, y))) if hasattr(model, "test_step") else (lambda: model.train_step(x, y))
for _ in range(3):
    step()
times, start = [], time.perf_counter()
while len(times) < 3 or time.perf_counter() - start < seconds:
    begin = time.perf_counter(); step(); times.append(time.perf_counter() - begin)
try:
    from threadpoolctl import threadpool_info
    kernel = ",".join(p.get("architecture") or "?" for p in threadpool_info() if p["internal_api"] == "openblas")
except ImportError:
    kernel = "?"
print(statistics.median(times), kernel or "-")
"""

LOADS = {
    "busy process": "while True: pass",
    "tinyconv training": """
import sys
sys.path.insert(0, {bench!r})
from common import random_batch
import tinyconv
from tinyconv.zoo import seed_cnn
model = seed_cnn(({size}, {size}, 3))
model.compile("adam", "binary_crossentropy")
x, y = random_batch(32, {size})
step = (lambda: model.train_step((x, y))) if hasattr(model, "test_step") else (lambda: model.train_step(x, y))
while True:
    step()
""",
    "NumPy products": """
import numpy as np
a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
while True:
    a @ a
""",
}


def busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy by anyone over the next ``seconds`` (from /proc/stat)."""
    def busy_and_total():
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:9]]
        return sum(values) - values[3] - values[4], sum(values)
    busy0, total0 = busy_and_total()
    time.sleep(seconds)
    busy1, total1 = busy_and_total()
    return os.cpu_count() * (busy1 - busy0) / max(1, total1 - total0)


def engine_env(engine: str, baseline: str | None = None) -> dict:
    root = baseline if engine == BASELINE else ROOT
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if engine == "PyTorch":
        env.pop("OMP_WAIT_POLICY", None)  # PyTorch's own default, its best case alone
    return env


def start_load(scenario: str, size: int, engine: str, baseline: str | None):
    if scenario == "quiet":
        return None
    code = LOADS[scenario].format(bench=HERE, size=size)
    env = engine_env(engine if scenario == "tinyconv training" else "tinyconv", baseline)
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL)
    time.sleep(3.0 if scenario == "tinyconv training" else 1.0)  # past its imports, into its loop
    return process


def measure(engine: str, scenario: str, size: int, seconds: float, threads: int, baseline: str | None) -> tuple:
    """(median step seconds, busy cores before the load, 1-minute load average, OpenBLAS kernel)
    for one engine."""
    before, load = busy_cores(), os.getloadavg()[0]
    process = start_load(scenario, size, engine, baseline)
    try:
        code = STEP_WORKER.format(bench=HERE, size=size, seconds=seconds, engine=engine, threads=threads)
        out = subprocess.run([sys.executable, "-c", code], env=engine_env(engine, baseline), capture_output=True,
                             text=True, check=True).stdout
    finally:
        if process is not None:
            process.kill()
            process.wait()
    step, kernel = out.split()
    return float(step), before, load, kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per engine and scenario")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    parser.add_argument("--baseline", help="a checkout whose tinyconv is measured too, as 'tinyconv baseline'")
    args = parser.parse_args()

    engines = list(ENGINES) + ([BASELINE] if args.baseline else [])
    kernels = set()
    results = {}  # (size, scenario, engine) -> [(step, busy before, load)]
    for round_ in range(args.rounds):
        for size in args.sizes:
            for scenario in args.scenarios:
                order = engines if round_ % 2 == 0 else engines[::-1]
                for engine in order:
                    result = measure(engine, scenario, size, args.seconds, args.threads, args.baseline)
                    results.setdefault((size, scenario, engine), []).append(result)
                    if engine != "PyTorch":
                        kernels.add(result[3])
                    print(f"round {round_ + 1} {size}px {scenario:18s} {engine:24s} {result[0] * 1e3:8.1f} ms"
                          f"  busy cores before {result[1]:.2f}, load {result[2]:.1f}", flush=True)

    def median(size, scenario, engine, index=0):
        values = results.get((size, scenario, engine))
        return statistics.median(v[index] for v in values) if values else None

    rows = []
    for size in args.sizes:
        quiet = median(size, "quiet", "tinyconv")
        for scenario in args.scenarios:
            tc, torch_ = median(size, scenario, "tinyconv"), median(size, scenario, "PyTorch")
            baseline = median(size, scenario, BASELINE)
            before = statistics.median(v[1] for e in engines for v in results[(size, scenario, e)])
            load = statistics.median(v[2] for e in engines for v in results[(size, scenario, e)])
            rows.append([f"{size}x{size}", scenario, f"{tc * 1e3:.0f}",
                         f"{tc / quiet:.2f}" if quiet else "", f"{torch_ * 1e3:.0f}", f"{tc / torch_:.2f}",
                         f"{baseline * 1e3:.0f}" if baseline else "", f"{tc / baseline:.2f}" if baseline else "",
                         f"{before:.2f}", f"{load:.1f}"])
    header = ["input", "beside", "tinyconv ms", "/ its quiet step", "PyTorch ms", "tinyconv / PyTorch",
              "baseline ms", "tinyconv / baseline", "busy cores before", "load"]
    table = markdown_table(header, rows)
    note = (f"batch 32, float32, each engine in its own process, median step over {args.seconds:g} s after "
            f"warm-up, median of {args.rounds} rounds; {os.cpu_count()} cores; PyTorch {args.threads} threads; "
            f"OpenBLAS kernel {', '.join(sorted(kernels))}")
    report("shared.md", table, note)


if __name__ == "__main__":
    main()
