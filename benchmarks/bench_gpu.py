"""The seed CNN's training step on the GPU: tinyconv (CuPy) against PyTorch with cuDNN, same GPU.

Usage: python benchmarks/bench_gpu.py [--sizes 32 48] [--batches 32 256] [--repeats 20] [--no-torch]
                                     [--out FOLDER]

Both run the same network in float32 with TF32 off (CuPy: ``CUPY_TF32=0``; PyTorch: IEEE float32
for cuBLAS and cuDNN, read back into the table's setup line), Adam, and the sigmoid fused into the
loss. PyTorch's convolutions run on cuDNN (benchmark mode: it picks the fastest algorithm). One step
is forward, backward, the optimizer update and reading the scalar loss back to the host (which a
progress bar does). The batch is already on the device. Each step ends with a device
synchronisation before the clock stops; the two libraries alternate step by step after a
warm-up (which also compiles tinyconv's kernels), and the table gives the median. PyTorch is
optional: without it, its columns say so. Writes ``bench_gpu.md`` into ``--out``
(default ``benchmarks/results``).
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ["CUPY_TF32"] = "0"  # before CuPy is imported: cuBLAS in full float32

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import interleaved_medians, markdown_table, random_batch, torch_available, torch_seed_cnn, write_result

import tinyconv
from tinyconv.optimizers import Adam
from tinyconv.zoo import seed_cnn


def tinyconv_step(size: int, batch: int):
    """A function running one tinyconv training step on the GPU, synchronised."""
    import cupy

    tinyconv.set_seed(0)
    model = seed_cnn(input_shape=(size, size, 3))
    model.compile(Adam(), "binary_crossentropy")
    x, y = random_batch(batch, size)
    x, y = cupy.asarray(x), cupy.asarray(y)  # on the device once, as fit moves each batch once
    device = cupy.cuda.Device()

    def step():
        model.train_step((x, y))
        device.synchronize()

    return step


def torch_step(size: int, batch: int):
    """The same step in PyTorch (NCHW, cuDNN), synchronised."""
    import torch

    torch.manual_seed(0)
    model = torch_seed_cnn(size).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)  # Keras's epsilon, as tinyconv
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x, y = random_batch(batch, size)
    x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).cuda()
    y = torch.from_numpy(y).cuda()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()
        torch.cuda.synchronize()

    return step


def torch_without_tf32() -> None:
    """PyTorch set up for the comparison: float32 without TF32 in cuBLAS and cuDNN, cuDNN's
    autotuner on. Raises when its convolutions would not run on cuDNN."""
    import torch

    if hasattr(torch.backends, "fp32_precision"):  # PyTorch 2.9 and later
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if not (torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled):
        raise RuntimeError("bench_gpu.py compares with PyTorch on cuDNN, but cuDNN is not available to PyTorch")
    torch.backends.cudnn.benchmark = True


def torch_precision() -> str:
    """The float32 settings PyTorch reports, as they were when the benchmark ran."""
    import torch

    if hasattr(torch.backends, "fp32_precision"):
        return (f"matmul {torch.backends.cuda.matmul.fp32_precision}, "
                f"cuDNN conv {torch.backends.cudnn.conv.fp32_precision}")
    return (f"matmul allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
            f"cuDNN allow_tf32={torch.backends.cudnn.allow_tf32}")


def describe_setup(use_torch: bool) -> str:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    line = (f"GPU: {name}; CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, "
            f"CUPY_TF32={os.environ['CUPY_TF32']}; float32")
    if use_torch:
        import torch
        line += (f"; PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()} (benchmark mode on), "
                 f"{torch_precision()}")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 48], help="image sizes (square, 3 channels)")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per case (median)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is installed")
    parser.add_argument("--out", help="folder that receives bench_gpu.md (default: benchmarks/results)")
    args = parser.parse_args()

    try:
        tinyconv.set_device("gpu")
    except RuntimeError as err:
        sys.exit(f"bench_gpu.py needs an NVIDIA GPU with CuPy: {err}")
    use_torch = not args.no_torch and torch_available()
    if use_torch:
        import torch

        if not torch.cuda.is_available():
            print("PyTorch is installed without CUDA support (or sees no GPU): its columns are skipped")
            use_torch = False
        else:
            torch_without_tf32()
    note = "" if use_torch else "PyTorch with CUDA is not installed here, so its columns are empty."

    rows = []
    for size in args.sizes:
        for batch in args.batches:
            candidates = {"tinyconv": tinyconv_step(size, batch)}
            if use_torch:
                candidates["torch"] = torch_step(size, batch)
            seconds = interleaved_medians(candidates, args.repeats, warmup=args.warmup)
            ours = seconds["tinyconv"]
            theirs = seconds.get("torch")
            rows.append([f"{size}x{size}x3", batch, f"{ours * 1e3:.2f}",
                         f"{theirs * 1e3:.2f}" if theirs else "-",
                         f"{ours / theirs:.2f}x" if theirs else "-",
                         f"{batch / ours:,.0f}", f"{batch / theirs:,.0f}" if theirs else "-"])
            print(f"{size}x{size} batch {batch}: tinyconv {ours * 1e3:.2f} ms"
                  + (f", PyTorch {theirs * 1e3:.2f} ms" if theirs else ""), flush=True)

    table = markdown_table(["input", "batch", "tinyconv ms/step", "PyTorch ms/step", "tinyconv / PyTorch",
                            "tinyconv images/s", "PyTorch images/s"], rows)
    text = "\n\n".join(part for part in [
        "# Seed CNN training step on the GPU", describe_setup(use_torch),
        f"Median of {args.repeats} steps after {args.warmup} warm-up steps, alternating the libraries.",
        table, note] if part)
    print(text)
    print(f"written to {write_result('bench_gpu.md', text, args.out)}")


if __name__ == "__main__":
    main()
