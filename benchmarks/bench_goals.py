"""The CPU goals in one run: every ratio of tinyconv to PyTorch that docs/performance.md states a goal for.

Usage: python benchmarks/bench_goals.py [--seconds 3] [--rounds 1] [--quick]

Each measurement runs each engine in a process of its own (``bench_shared`` and ``bench_memory``
do the work; this script only chooses the cases and prints the ratios against their goals):

- the training step (batch 32) at 32, 48, 64 and 96 px, on a quiet machine: goal <= 0.5;
- the step at 32 px beside a busy process and beside a second training: at most 2.5 times the quiet
  step, and faster than PyTorch beside the same load;
- the peak memory growth of a training step (peak resident memory minus the process once the engine
  is imported, has run a warm-up step of a small model and the model and batch are made: each
  engine's libraries and the code it loads on first use are not counted; see ``bench_memory``) at
  64 to 256 px: goal <= 1.0 (the peak itself is shown beside it);
- ``predict`` at batch 256 against PyTorch's forward under ``torch.inference_mode`` at 32 to 96 px:
  goal <= 0.5.

``--quick`` measures the smallest size of each case only. The OpenBLAS kernel that tinyconv ran is
printed with the table (set ``OPENBLAS_CORETYPE=Haswell`` to measure the AVX2 kernels on an AVX-512
machine).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_memory
import bench_shared
from common import markdown_table, report

HERE = os.path.dirname(os.path.abspath(__file__))

PREDICT_WORKER = """
import statistics, sys, time
sys.path.insert(0, {bench!r})
from common import random_batch
size, engine = {size}, {engine!r}
x, _ = random_batch(256, size)
if engine == "PyTorch":
    import torch
    from common import torch_seed_cnn
    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = torch_seed_cnn(size).eval()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    def predict():
        with torch.inference_mode():
            torch.sigmoid(net(xt)).numpy()
else:
    import tinyconv
    from tinyconv.zoo import seed_cnn
    tinyconv.set_seed(0)
    model = seed_cnn((size, size, 3))
    predict = lambda: model.predict(x, batch_size=256, verbose=0)
predict()
times = []
for _ in range({repeats}):
    start = time.perf_counter(); predict(); times.append(time.perf_counter() - start)
print(statistics.median(times))
"""


def predict_seconds(engine: str, size: int, repeats: int) -> float:
    code = PREDICT_WORKER.format(bench=HERE, size=size, engine=engine, repeats=repeats)
    env = bench_shared.engine_env(engine)
    return float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout.split()[-1])


def step_ratios(sizes, scenarios, seconds: float, rounds: int, kernels: set) -> dict:
    """{(size, scenario): (tinyconv seconds, PyTorch seconds)}, medians over rounds of alternating turns."""
    times = {}
    for round_ in range(rounds):
        for size in sizes:
            for scenario in scenarios:
                engines = bench_shared.ENGINES if round_ % 2 == 0 else bench_shared.ENGINES[::-1]
                for engine in engines:
                    step, _, _, kernel = bench_shared.measure(engine, scenario, size, seconds, 2, None)
                    times.setdefault((size, scenario, engine), []).append(step)
                    if engine == "tinyconv":
                        kernels.add(kernel)
                    print(f"step {size}px {scenario:18s} {engine:9s} {step * 1e3:8.1f} ms", flush=True)
    return {(size, scenario): tuple(statistics.median(times[(size, scenario, e)]) for e in bench_shared.ENGINES)
            for size in sizes for scenario in scenarios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per training-step measurement")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="the smallest size of each case only")
    args = parser.parse_args()
    first = (lambda sizes: sizes[:1]) if args.quick else (lambda sizes: sizes)
    rows, kernels = [], set()

    quiet = step_ratios(first([32, 48, 64, 96]), ["quiet"], args.seconds, args.rounds, kernels)
    for (size, _), (tc, torch_) in quiet.items():
        rows.append([f"training step, quiet, {size} px", f"{tc * 1e3:.0f} ms", f"{torch_ * 1e3:.0f} ms",
                     f"{tc / torch_:.2f}", "<= 0.5"])
    shared = step_ratios([32], ["busy process", "tinyconv training"], args.seconds, args.rounds, kernels)
    quiet_32 = quiet[(32, "quiet")][0]
    for (size, scenario), (tc, torch_) in shared.items():
        rows.append([f"training step beside a {scenario.replace('tinyconv ', 'second ')}, {size} px",
                     f"{tc * 1e3:.0f} ms ({tc / quiet_32:.2f}x quiet)", f"{torch_ * 1e3:.0f} ms",
                     f"{tc / torch_:.2f}", "<= 2.5x quiet, < 1"])
    for size in first([64, 128, 192, 256]):
        got = {engine: bench_memory.measure(engine, size, 32, 3) for engine in ("tinyconv", "PyTorch")}
        growth = {engine: got[engine]["peak"] - got[engine]["footprint"] for engine in got}
        rows.append([f"peak memory growth, training step, {size} px"]
                    + [f"{growth[engine]:.0f} MiB (peak {got[engine]['peak']:.0f})" for engine in got]
                    + [f"{growth['tinyconv'] / growth['PyTorch']:.2f}", "<= 1.0"])
        print(rows[-1], flush=True)
    for size in first([32, 64, 96]):
        tc, torch_ = predict_seconds("tinyconv", size, 5), predict_seconds("PyTorch", size, 5)
        rows.append([f"predict, batch 256, {size} px", f"{tc * 1e3:.0f} ms", f"{torch_ * 1e3:.0f} ms",
                     f"{tc / torch_:.2f}", "<= 0.5"])
        print(rows[-1], flush=True)

    table = markdown_table(["case", "tinyconv", "PyTorch", "tinyconv / PyTorch", "goal"], rows)
    note = (f"seed CNN, float32, each engine in its own process, 2 threads each; training steps at batch 32 "
            f"(median over {args.seconds:g} s after warm-up, {args.rounds} round(s)); {os.cpu_count()} cores; "
            f"tinyconv's OpenBLAS kernel {', '.join(sorted(kernels))}")
    report("goals.md", table, note)


if __name__ == "__main__":
    main()
