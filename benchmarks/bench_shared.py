"""The training step when the machine is shared: tinyconv and PyTorch beside other processes.

Usage: python benchmarks/bench_shared.py [--sizes 32] [--seconds 4] [--rounds 2] [--scenarios ...]
       [--no-fixed]

Scenarios (the script starts the other processes and stops them after each measurement):

- quiet: nothing started;
- busy process: one single-threaded Python loop;
- tinyconv training: a second process training the same network (the same tinyconv settings as
  the one measured);
- NumPy products: a loop of 1024 x 1024 float32 matrix products on 2 OpenBLAS threads.

Each engine trains the seed CNN (batch 32, float32) in a process of its own beside the load, for
``--seconds`` after warm-up, and reports its median step. Engines take turns within a scenario and
the whole sweep repeats ``--rounds`` times (the table shows the median over rounds), so a drift of
the background load hits all alike. "tinyconv, fixed threads" is tinyconv with
``TINYCONV_ADAPT_THREADS=0``: OpenBLAS keeps all its threads, as before the thread governor (its
load in the tinyconv-training scenario is set the same way). "busy cores before" is how many cores
other processes kept busy in the second before the load started (from ``/proc/stat``), and "load"
the 1-minute load average: the background this run had, beyond the scenario. "its BLAS threads" is
the mean OpenBLAS thread count over tinyconv's timed steps, as its thread governor chose them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, write_result

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCENARIOS = ("quiet", "busy process", "tinyconv training", "NumPy products")
ENGINES = ("tinyconv", "PyTorch", "tinyconv, fixed threads")
FIXED = {"TINYCONV_ADAPT_THREADS": "0"}

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
    from tinyconv.kernels import blas_threads
    library = blas_threads.loaded_openblas_libraries()[0]  # NumPy's
    blas_count = blas_threads.openblas_function(library, "openblas_get_num_threads")
    step = lambda: model.train_step(x, y)
for _ in range(3):
    step()
times, threads, start = [], [], time.perf_counter()
while len(times) < 3 or time.perf_counter() - start < seconds:
    begin = time.perf_counter(); step(); times.append(time.perf_counter() - begin)
    threads.append(0 if engine == "PyTorch" else blas_count())
print(statistics.median(times), statistics.mean(threads))
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
while True:
    model.train_step(x, y)
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


def engine_env(engine: str) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if engine == "PyTorch":
        env.pop("OMP_WAIT_POLICY", None)  # PyTorch's own default, its best case alone
    if engine == "tinyconv, fixed threads":
        env.update(FIXED)
    return env


def start_load(scenario: str, size: int, engine: str):
    if scenario == "quiet":
        return None
    code = LOADS[scenario].format(bench=HERE, size=size)
    env = engine_env(engine if scenario == "tinyconv training" else "tinyconv")
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL)
    time.sleep(3.0 if scenario == "tinyconv training" else 1.0)  # past its imports, into its loop
    return process


def measure(engine: str, scenario: str, size: int, seconds: float, threads: int) -> tuple:
    """(median step seconds, busy cores before the load, 1-minute load average, mean BLAS threads
    during the timed steps) for one engine."""
    before, load = busy_cores(), os.getloadavg()[0]
    process = start_load(scenario, size, engine)
    try:
        code = STEP_WORKER.format(bench=HERE, size=size, seconds=seconds, engine=engine, threads=threads)
        out = subprocess.run([sys.executable, "-c", code], env=engine_env(engine), capture_output=True,
                             text=True, check=True).stdout
    finally:
        if process is not None:
            process.kill()
            process.wait()
    step, blas = (float(v) for v in out.split())
    return step, before, load, blas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per engine and scenario")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    parser.add_argument("--no-fixed", action="store_true", help="skip 'tinyconv, fixed threads'")
    args = parser.parse_args()

    engines = [e for e in ENGINES if not (args.no_fixed and e == "tinyconv, fixed threads")]
    results = {}  # (size, scenario, engine) -> [(step, busy before, load)]
    for round_ in range(args.rounds):
        for size in args.sizes:
            for scenario in args.scenarios:
                order = engines if round_ % 2 == 0 else engines[::-1]
                for engine in order:
                    result = measure(engine, scenario, size, args.seconds, args.threads)
                    results.setdefault((size, scenario, engine), []).append(result)
                    print(f"round {round_ + 1} {size}px {scenario:18s} {engine:24s} {result[0] * 1e3:8.1f} ms"
                          f"  busy cores before {result[1]:.2f}, load {result[2]:.1f}, BLAS threads {result[3]:.1f}",
                          flush=True)

    def median(size, scenario, engine, index=0):
        values = results.get((size, scenario, engine))
        return statistics.median(v[index] for v in values) if values else None

    rows = []
    for size in args.sizes:
        quiet = median(size, "quiet", "tinyconv")
        for scenario in args.scenarios:
            tc, torch_ = median(size, scenario, "tinyconv"), median(size, scenario, "PyTorch")
            fixed = median(size, scenario, "tinyconv, fixed threads")
            before = statistics.median(v[1] for e in engines for v in results[(size, scenario, e)])
            load = statistics.median(v[2] for e in engines for v in results[(size, scenario, e)])
            rows.append([f"{size}x{size}", scenario, f"{tc * 1e3:.0f}", f"{median(size, scenario, 'tinyconv', 3):.1f}",
                         f"{tc / quiet:.2f}" if quiet else "", f"{torch_ * 1e3:.0f}", f"{tc / torch_:.2f}",
                         f"{fixed * 1e3:.0f}" if fixed else "", f"{before:.2f}", f"{load:.1f}"])
    header = ["input", "beside", "tinyconv ms", "its BLAS threads", "/ its quiet step", "PyTorch ms",
              "tinyconv / PyTorch", "tinyconv, fixed threads ms", "busy cores before", "load"]
    table = markdown_table(header, rows)
    note = (f"batch 32, float32, each engine in its own process, median step over {args.seconds:g} s after "
            f"warm-up, median of {args.rounds} rounds; {os.cpu_count()} cores; PyTorch {args.threads} threads")
    print(table)
    print(note)
    print("written to", write_result("shared.md", table + "\n\n" + note))


if __name__ == "__main__":
    main()
