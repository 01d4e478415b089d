"""``model.export("m.onnx", format="onnx")``: the model as an ONNX graph, NHWC in and NHWC out.

ONNX's image operators (Conv, ConvTranspose, MaxPool, AveragePool, Resize) work on NCHW tensors;
tinyconv's tensors are NHWC. The graph keeps NHWC everywhere and wraps each such operator in a
pair of Transposes (NHWC -> NCHW -> NHWC), which ONNX Runtime fuses away; everything else (Dense,
Flatten, Reshape, Add, Concatenate, the activations, BatchNormalization folded into one scale and
shift per channel, Rescaling, Normalization) acts on NHWC directly, so the flattening order is
Keras's. Window padding is written out as explicit pads from the layer's own geometry, and
average pooling counts only the real pixels of a window, as the layer does. Dropout is the
identity (inference). The batch size is free (``N``).

Opset 17 and IR version 8: what ONNX Runtime has read since its 1.14 release. Needs the ``onnx``
package (the ``onnx`` extra); ``onnxruntime`` is only the tests' reference.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..layers.base import InputLayer
from . import atomic

OPSET = 17
IR_VERSION = 8
ACTIVATION_OPS = {"ReLU": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Softmax": "Softmax"}
TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError('export(format="onnx") needs the onnx package: pip install "tinyconv[onnx]"') from exc
    return onnx


class GraphBuilder:
    """Nodes and constants of one ONNX graph, with fresh tensor names."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.constants, self.count = [], [], 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def constant(self, array, hint: str) -> str:
        name = self.name(hint)
        self.constants.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: list, hint: str, **attributes) -> str:
        output = self.name(hint)
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def nchw(self, op_type: str, x: str, hint: str, inputs=(), **attributes) -> str:
        """``op_type`` on NCHW, between two Transposes, for an NHWC ``x``."""
        inner = self.op(op_type, [self.op("Transpose", [x], hint, perm=TO_NCHW), *inputs], hint, **attributes)
        return self.op("Transpose", [inner], hint, perm=TO_NHWC)


def _f32(value) -> np.ndarray:
    return np.asarray(backend.to_numpy(value), dtype=np.float32)


def _pads(layer) -> list[int]:
    top, bottom, left, right = layer.pads
    return [top, left, bottom, right]  # ONNX: the starts of each axis, then the ends


def _activation(g: GraphBuilder, function, x: str, owner: str) -> str:
    if function is None:
        return x
    kind = type(function).__name__
    if kind == "LeakyReLU" and function.alpha:
        return g.op("LeakyRelu", [x], owner, alpha=float(function.alpha))
    if kind in ("ReLU", "LeakyReLU"):
        return g.op("Relu", [x], owner)
    if kind == "Softmax":
        return g.op("Softmax", [x], owner, axis=int(function.axis))
    if kind in ACTIVATION_OPS:
        return g.op(ACTIVATION_OPS[kind], [x], owner)
    raise ValueError(f"{owner}: no ONNX operator for its activation {kind}")


def _layer(g: GraphBuilder, layer, inputs: list[str]) -> str:
    kind, owner = type(layer).__name__, layer.name
    x = inputs[0]
    params, stats = layer.params, layer.non_trainable_params
    if kind == "Conv2D":
        weights = g.constant(_f32(params["kernel"]).transpose(3, 2, 0, 1), f"{owner}_kernel")
        bias = [g.constant(_f32(params["bias"]), f"{owner}_bias")] if layer.use_bias else []
        y = g.nchw("Conv", x, owner, inputs=[weights, *bias], kernel_shape=list(layer.kernel_size),
                   strides=list(layer.strides), pads=_pads(layer))
        return _activation(g, layer.activation, y, owner)
    if kind == "Conv2DTranspose":
        (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
        (h, w, _), (oh, ow, _) = layer.input_shape, layer.output_shape
        top, bottom, left, right = layer.pads
        extra = [oh - (sh * (h - 1) + kh - top - bottom), ow - (sw * (w - 1) + kw - left - right)]
        weights = g.constant(_f32(params["kernel"]).transpose(3, 2, 0, 1), f"{owner}_kernel")
        bias = [g.constant(_f32(params["bias"]), f"{owner}_bias")] if layer.use_bias else []
        y = g.nchw("ConvTranspose", x, owner, inputs=[weights, *bias], kernel_shape=[kh, kw], strides=[sh, sw],
                   pads=_pads(layer), output_padding=extra)
        return _activation(g, layer.activation, y, owner)
    if kind == "Dense":  # on vectors (N, D): the layer takes nothing else
        weights = g.constant(_f32(params["kernel"]), f"{owner}_kernel")
        bias = [g.constant(_f32(params["bias"]), f"{owner}_bias")] if layer.use_bias else []
        return _activation(g, layer.activation, g.op("Gemm", [x, weights, *bias], owner), owner)
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        extra = {"count_include_pad": 0} if kind == "AveragePooling2D" else {}
        return g.nchw("MaxPool" if kind == "MaxPooling2D" else "AveragePool", x, owner,
                      kernel_shape=list(layer.pool_size), strides=list(layer.strides), pads=_pads(layer), **extra)
    if kind == "GlobalAveragePooling2D":
        return g.op("ReduceMean", [x], owner, axes=[1, 2], keepdims=0)
    if kind in ("Flatten", "Reshape"):
        target = [0, -1] if kind == "Flatten" else [0, *layer.target_shape]
        return g.op("Reshape", [x, g.constant(np.array(target, dtype=np.int64), f"{owner}_shape")], owner)
    if kind == "Dropout":
        return g.op("Identity", [x], owner)
    if kind == "BatchNormalization":
        if layer.axis not in (-1, len(layer.input_shape)):
            raise ValueError(f"layer {owner!r} (BatchNormalization): ONNX export takes axis=-1 (channels)")
        variance = backend.to_numpy(stats["moving_variance"]).astype(np.float64)
        gamma = backend.to_numpy(params["gamma"]).astype(np.float64) if layer.scale else 1.0
        beta = backend.to_numpy(params["beta"]).astype(np.float64) if layer.center else 0.0
        scale = gamma / np.sqrt(variance + layer.epsilon)
        shift = beta - backend.to_numpy(stats["moving_mean"]).astype(np.float64) * scale
        y = g.op("Mul", [x, g.constant(scale.astype(np.float32), f"{owner}_scale")], owner)
        return g.op("Add", [y, g.constant(shift.astype(np.float32), f"{owner}_shift")], owner)
    if kind == "Rescaling":
        y = g.op("Mul", [x, g.constant(np.float32(layer.scale), f"{owner}_scale")], owner)
        return g.op("Add", [y, g.constant(np.float32(layer.offset), f"{owner}_offset")], owner)
    if kind == "Normalization":
        mean, scale = layer.statistics(np, np.float32)
        y = g.op("Sub", [x, g.constant(mean, f"{owner}_mean")], owner)
        return g.op("Mul", [y, g.constant(scale, f"{owner}_scale")], owner)
    if kind == "Activation":
        return g.op("Identity", [x], owner) if layer.function is None else _activation(g, layer.function, x, owner)
    if kind in ("ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax"):
        return _activation(g, layer, x, owner)
    if kind == "Add":
        total = inputs[0]
        for other in inputs[1:]:
            total = g.op("Add", [total, other], owner)
        return total
    if kind == "Concatenate":
        return g.op("Concat", inputs, owner, axis=int(layer.axis))
    if kind == "UpSampling2D":
        scales = g.constant(np.array([1, 1, *layer.size], dtype=np.float32), f"{owner}_scales")
        return g.nchw("Resize", x, owner, inputs=["", scales], mode="nearest",
                      coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    raise ValueError(f"layer {owner!r} ({kind}): no ONNX translation for this kind of layer")


def to_onnx(model):
    """The ONNX ``ModelProto`` of ``model``."""
    onnx = _onnx()
    g = GraphBuilder(onnx)
    layers = model.graph_layers
    outputs = []
    for layer, sources in zip(layers, model.inbound):
        outputs.append("input" if isinstance(layer, InputLayer) else _layer(g, layer, [outputs[j] for j in sources]))
    helper, float32 = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes, model.name, [helper.make_tensor_value_info("input", float32, ["N", *layers[0].input_shape])],
        [helper.make_tensor_value_info(outputs[-1], float32, ["N", *layers[-1].output_shape])],
        initializer=g.constants)
    proto = helper.make_model(graph, producer_name="tinyconv", opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto


def export(model, path) -> None:
    """Write ``model`` as an ONNX file at ``path``, atomically."""
    content = to_onnx(model).SerializeToString()
    atomic.write_file(path, lambda f: f.write(content), "export")
