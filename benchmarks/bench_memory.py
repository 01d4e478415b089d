"""Peak memory of the seed CNN's training step, tinyconv against PyTorch, per image size.

Usage: python benchmarks/bench_memory.py [--sizes 32 64 96 128] [--batch 32] [--steps 5]

Each engine trains in a process of its own, one size per process. The process imports the engine,
then trains the same network for two steps on a batch of four 16x16 images and lets it go (the
*warm-up*: each engine loads code on first use, tinyconv its compiled kernels and OpenBLAS its
buffers, PyTorch its oneDNN kernels; the table shows it as "first use"). It then builds the model
and makes the batch and records its resident memory (the *footprint*: libraries, loaded code,
weights, the batch), runs ``--steps`` training steps and reads its peak resident memory (``VmHWM``,
the high-water mark of this process's own memory map; ``ru_maxrss`` would start from the resident
size of a large parent process). The *training growth* (peak minus footprint) compares what each
engine's step needs, whatever its libraries and code weigh: PyTorch's own libraries take a few
hundred MiB that tinyconv does not load, so the peaks favour tinyconv at small sizes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, torch_available, write_result

HERE = os.path.dirname(os.path.abspath(__file__))

PROBE = """
import json, resource, sys
sys.path.insert(0, {here!r})
def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20
from common import random_batch
if {engine!r} == "tinyconv":
    import tinyconv
    from tinyconv.zoo import seed_cnn
    def training_step(size, x, y):
        tinyconv.set_seed(0)
        model = seed_cnn((size, size, 3))
        model.compile("adam", "binary_crossentropy")
        return lambda: model.train_step((x, y))
else:
    import torch
    torch.set_num_threads(2)
    from common import torch_seed_cnn_calls
    def training_step(size, x, y):
        return torch_seed_cnn_calls(size, x, y)[0]
imported = resident_mb()
warm_up = training_step(16, *random_batch(4, 16))
warm_up()
warm_up()
del warm_up
warmed = resident_mb()
step = training_step({size}, *random_batch({batch}, {size}))
footprint = resident_mb()
for _ in range({steps}):
    step()
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
print(json.dumps({{"first use": warmed - imported, "footprint": footprint, "peak": peak}}))
"""


def measure(engine: str, size: int, batch: int, steps: int) -> dict:
    code = PROBE.format(here=HERE, engine=engine, size=size, batch=batch, steps=steps)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    engines = ["tinyconv"] + (["PyTorch"] if torch_available() else [])
    rows = []
    for size in args.sizes:
        got = {engine: measure(engine, size, args.batch, args.steps) for engine in engines}
        row = [f"{size}x{size}"]
        for engine in engines:
            row += [f"{got[engine]['peak']:.0f}", f"{got[engine]['first use']:.0f}",
                    f"{got[engine]['peak'] - got[engine]['footprint']:.0f}"]
        if len(engines) == 2:
            growth = [got[e]["peak"] - got[e]["footprint"] for e in engines]
            row += [f"{got['tinyconv']['peak'] / got['PyTorch']['peak']:.2f}", f"{growth[0] / growth[1]:.2f}"]
        rows.append(row)
        print(" | ".join(row), flush=True)
    header = ["input"]
    for engine in engines:
        header += [f"{engine} peak MiB", f"{engine} first use MiB", f"{engine} training growth MiB"]
    if len(engines) == 2:
        header += ["peak ratio", "growth ratio"]
    text = (f"Seed CNN training step, batch {args.batch}, float32, {args.steps} steps, each engine and size in "
            f"its own process\n\n" + markdown_table(header, rows))
    print(text)
    print(f"Wrote {write_result('memory.md', text)}")


if __name__ == "__main__":
    main()
