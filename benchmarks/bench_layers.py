"""Where the seed CNN's training step spends its time: per layer, and per kind of work.

Usage: python benchmarks/bench_layers.py [--size 32] [--batch 32] [--repeats 10] [--reference]

Part 1 times each layer's forward and backward inside the real model. Part 2 replays each conv
layer's pieces on its real shapes (im2col, the three GEMMs, bias, col2im; or, for a Winograd
layer, the tile and kernel transforms and the 3 x 16 GEMMs) and the other kernels, and groups
them: GEMM, im2col, col2im, Winograd transforms, pooling, elementwise, optimizer. Each Winograd piece
runs on the whole batch on one thread (the layer runs them in cache-sized blocks of images on every
thread), so the kinds' shares are of one core's work, and their sum exceeds the measured step.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, random_batch, write_result

import tinyconv
from tinyconv import kernels
from tinyconv.kernels.reference import winograd_tiles
from tinyconv.layers import Conv2D, LeakyReLU, MaxPooling2D, winograd
from tinyconv.zoo import seed_cnn


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_layer(model, x, y, repeats):
    """Median forward and backward seconds of every layer, measured inside whole training steps."""
    forward = {layer.name: [] for layer in model.layers}
    backward = {layer.name: [] for layer in model.layers}
    model.train_step((x, y))
    for _ in range(repeats):
        activation = model.prepare_input(x)
        for layer in model.layers:
            start = time.perf_counter()
            activation = layer.forward(activation, True)
            forward[layer.name].append(time.perf_counter() - start)
        grad = np.full_like(activation, 1.0 / activation.size)
        for layer in reversed(model.layers[2:]):
            start = time.perf_counter()
            grad = layer.backward(grad)
            backward[layer.name].append(time.perf_counter() - start)
        start = time.perf_counter()
        model.layers[1].backward(grad, input_gradient=False)  # as in training: no dL/d(images)
        backward[model.layers[1].name].append(time.perf_counter() - start)
        backward[model.layers[0].name].append(0.0)
    return ({k: statistics.median(v) for k, v in forward.items()},
            {k: statistics.median(v) for k, v in backward.items()})


def im2col_pieces(layer, inputs, kinds, repeats, input_gradient):
    """im2col, the three GEMMs, the bias gradient and col2im of an im2col Conv2D layer (the last
    GEMM and col2im only when the step needs its input gradient)."""
    args = (layer.kernel_size, layer.strides, layer.pads)
    cols = kernels.im2col(inputs, args)
    w = layer.params["kernel"].reshape(-1, layer.filters)
    dz = np.ones((cols.shape[0], layer.filters), dtype=cols.dtype)
    dcols = dz @ w.T
    kinds["im2col"] += median_time(lambda: kernels.im2col(inputs, args), repeats)
    kinds["GEMM"] += median_time(lambda: cols @ w, repeats)
    kinds["GEMM"] += median_time(lambda: cols.T @ dz, repeats)
    kinds["elementwise"] += median_time(lambda: dz.sum(axis=0), repeats)  # bias gradient
    if input_gradient:
        kinds["GEMM"] += median_time(lambda: np.matmul(dz, w.T, out=dcols), repeats)
        kinds["col2im"] += median_time(lambda: kernels.col2im(dcols, inputs.shape, args), repeats)


def winograd_pieces(layer, inputs, kinds, repeats, input_gradient):
    """The tile and kernel transforms and the 3 x a*a GEMMs of a Winograd Conv2D layer (without
    the input gradient's GEMMs and transform when the step does not need it)."""
    transforms = layer.cache[1][-1]
    bt, at = transforms.bt.astype(inputs.dtype), transforms.at.astype(inputs.dtype)
    kernel, bias = layer.params["kernel"], layer.params["bias"]
    out_shape = (inputs.shape[0], *layer.output_shape)
    tiles = winograd_tiles(*layer.output_shape[:2], transforms.m)
    v = kernels.winograd_input_transform(inputs, layer.pads, tiles, bt)
    u = winograd.kernel_transform(kernel, transforms)
    products = np.matmul(v, u)
    dy = np.ones(out_shape, dtype=inputs.dtype)
    dm = kernels.winograd_output_transform_adjoint(dy, at)
    dv = np.matmul(dm, u.transpose(0, 2, 1))
    pieces = [lambda: kernels.winograd_input_transform(inputs, layer.pads, tiles, bt),
              lambda: kernels.winograd_output_transform(products, out_shape, bias, at),
              lambda: kernels.winograd_output_transform_adjoint(dy, at),
              lambda: winograd.kernel_transform(kernel, transforms),
              lambda: winograd.kernel_transform_adjoint(u, transforms)]
    if input_gradient:
        pieces.append(lambda: kernels.winograd_input_transform_adjoint(dv, inputs.shape, layer.pads, tiles, bt))
        kinds["GEMM"] += median_time(lambda: np.matmul(dm, u.transpose(0, 2, 1)), repeats)
    kinds["Winograd transforms"] += sum(median_time(piece, repeats) for piece in pieces)
    kinds["GEMM"] += median_time(lambda: np.matmul(v, u), repeats)
    kinds["GEMM"] += median_time(lambda: np.matmul(v.transpose(0, 2, 1), dm), repeats)
    kinds["elementwise"] += median_time(lambda: dy.reshape(-1, dy.shape[-1]).sum(axis=0), repeats)


def by_kind(model, x, repeats):
    """Replay the step's pieces on the model's real shapes and sum them by kind of work."""
    kinds = {k: 0.0 for k in ("GEMM", "im2col", "col2im", "Winograd transforms", "pooling", "elementwise",
                              "optimizer")}
    activation = model.prepare_input(x)
    for layer in model.layers:
        inputs = activation
        activation = layer.forward(activation, True)
        input_gradient = layer is not model.layers[1]  # training needs no dL/d(images)
        if isinstance(layer, Conv2D) and layer.cache[0] == "winograd":
            winograd_pieces(layer, inputs, kinds, repeats, input_gradient)
        elif isinstance(layer, Conv2D):
            im2col_pieces(layer, inputs, kinds, repeats, input_gradient)
        elif isinstance(layer, MaxPooling2D):
            args = (layer.pool_size, layer.strides, layer.pads)
            out, argmax = kernels.maxpool_forward(inputs, args)
            kinds["pooling"] += median_time(lambda: kernels.maxpool_forward(inputs, args), repeats)
            kinds["pooling"] += median_time(
                lambda: kernels.maxpool_backward(out, argmax, inputs.shape, args), repeats)
        elif isinstance(layer, LeakyReLU):
            out = activation
            kinds["elementwise"] += median_time(lambda: kernels.leaky_relu_forward(inputs, layer.alpha), repeats)
            kinds["elementwise"] += median_time(
                lambda: kernels.leaky_relu_backward(out, out, layer.alpha), repeats)
    params, grads = model.trainable_params(), [p.copy() for p in model.trainable_params()]
    model.optimizer.step(params, grads)
    kinds["optimizer"] = median_time(lambda: model.optimizer.step(params, grads), repeats)
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--reference", action="store_true", help="time the reference kernels instead")
    args = parser.parse_args()
    kernels.use_reference_kernels(args.reference)

    tinyconv.set_seed(0)
    model = seed_cnn((args.size, args.size, 3))
    model.compile("adam", "binary_crossentropy")
    x, y = random_batch(args.batch, args.size)
    forward, backward = per_layer(model, x, y, args.repeats)
    step = median_time(lambda: model.train_step((x, y)), args.repeats)

    rows = [[name, f"{forward[name] * 1e3:.1f}", f"{backward[name] * 1e3:.1f}",
             f"{(forward[name] + backward[name]) / step:.1%}"] for name in forward]
    layer_table = markdown_table(["layer", "forward ms", "backward ms", "share of step"], rows)
    kinds = by_kind(model, x, args.repeats)
    total = sum(kinds.values())
    kind_rows = [[k, f"{v * 1e3:.1f}", f"{v / total:.1%}"] for k, v in kinds.items()]
    kind_rows.append(["sum of pieces", f"{total * 1e3:.1f}", ""])
    kind_rows.append(["measured training step", f"{step * 1e3:.1f}", ""])
    kind_table = markdown_table(["work", "ms", "share"], kind_rows)
    path_name = "reference" if args.reference else "numba"
    text = (f"Seed CNN, {args.size}x{args.size}x3, batch {args.batch}, {path_name} kernels, "
            f"median of {args.repeats}\n\n{layer_table}\n\n{kind_table}")
    print(text)
    print("written to", write_result(f"layers_{path_name}_{args.size}.md", text))


if __name__ == "__main__":
    main()
