"""ONNX graph (a Keras VGG16 exported by tf2onnx, a torchvision export, ...) -> deepvis_jax Model.

The only module that imports `onnx` (the [onnx] extra), and only when a graph is read, so ``import converters``
works without it. No torch needed. The architecture is recognized from the graph's structure -- the chain of
Conv / BatchNormalization / Relu / MaxPool nodes from the image input, their shapes and attributes -- never from
node or tensor names. The input preprocessing the graph expects is folded into conv1, so the model takes
torchvision-normalized RGB like every other model. The classifier is imported when its dense layers have
torchvision's shapes and order; otherwise it is initialized randomly and the model records
``classifier="untrained"``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from deepvis_jax._src.nets import IMAGENET_MEAN, IMAGENET_STD, Model
from deepvis_jax._src.nets.alexnet_vgg import ARCHITECTURES, BatchNorm, Conv, MaxPool, ReLU
from deepvis_jax._src.nets.layers import BN_EPS
from deepvis_jax._src.weights import WeightsError, model_from_arrays

from ._onnx_head import PASS_THROUGH, random_classifier, read_head

PREPROCESSINGS = ("caffe", "torchvision", "unit")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # Keras/Caffe VGG: BGR, 0..255, minus this mean



def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportError(
            "converters.from_onnx needs the onnx package; install it with pip install 'deepvis_jax[onnx]'"
        ) from None
    return onnx, numpy_helper


# --------------------------------------------------------------------------------------------------------------
# Preprocessing: the graph's input u (channel k) as an affine function of torchvision-normalized RGB x
# --------------------------------------------------------------------------------------------------------------


def preprocessing_affine(preprocessing: str) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
    """``(perm, a, b)`` with ``u[k] = a[k] * x[perm[k]] + b[k]``: what the graph's input channel k is, given the
    torchvision-normalized RGB input x that deepvis_jax models take.

    caffe: BGR, 0..255, minus the BGR mean (Keras's ``preprocess_input`` for VGG); torchvision: x itself;
    unit: RGB in [0, 1].
    """
    mean, std = np.asarray(IMAGENET_MEAN, np.float64), np.asarray(IMAGENET_STD, np.float64)
    if preprocessing == "torchvision":
        return (0, 1, 2), np.ones(3), np.zeros(3)
    if preprocessing == "unit":
        return (0, 1, 2), std, mean
    if preprocessing == "caffe":
        perm = (2, 1, 0)
        a = 255.0 * std[list(perm)]
        b = 255.0 * mean[list(perm)] - np.asarray(CAFFE_MEAN_BGR)
        return perm, a, b
    raise ValueError(f"unknown preprocessing {preprocessing!r}; use one of: {', '.join(PREPROCESSINGS)}")


def fold_preprocessing(kernel: np.ndarray, bias: np.ndarray, preprocessing: str) -> tuple[np.ndarray, np.ndarray]:
    """conv1 (HWIO kernel, bias) taking the graph's input -> the same conv taking torchvision-normalized RGB.

    Exact wherever the kernel sees no padding. At the image border the original conv pads its input u with 0,
    while the folded conv pads x with 0, i.e. u = b: the two differ there by the kernel taps that fall on the
    padding times b (for caffe, b = (-0.41, -0.50, -0.005) on the 0..255 scale: the two means nearly agree).
    """
    perm, a, b = preprocessing_affine(preprocessing)
    k64 = np.asarray(kernel, np.float64)
    new = np.empty_like(k64)
    for c in range(3):
        new[:, :, perm[c], :] = k64[:, :, c, :] * a[c]
    shift = np.einsum("hwco,c->o", k64, b)
    return new.astype(kernel.dtype), (np.asarray(bias, np.float64) + shift).astype(bias.dtype)


# --------------------------------------------------------------------------------------------------------------
# Graph reading
# --------------------------------------------------------------------------------------------------------------


class _Graph:
    """The main chain of nodes from the image input, with constants resolved."""

    def __init__(self, model_proto, source: str):
        onnx, numpy_helper = _import_onnx()
        g = model_proto.graph
        self.source = source
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:  # Constant nodes, and Identity of a constant (tf2onnx writes both)
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = numpy_helper.to_array(a.t)
            elif n.op_type == "Identity" and n.input[0] in self.consts:
                self.consts[n.output[0]] = self.consts[n.input[0]]
        self.helper = onnx.helper
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise WeightsError(f"{source}: the graph has {len(inputs)} non-constant inputs; expected one image input")
        self.input = inputs[0]
        consumers: dict[str, list] = {}
        for n in g.node:
            for name in n.input:
                consumers.setdefault(name, []).append(n)
        # walk the single chain of data ops; Shape nodes only feed shape arithmetic (a Reshape's target)
        self.chain = []
        self.branch: list[str] | None = None  # the op types where the chain forks, if it does
        cur = self.input.name
        while True:
            nxt = [n for n in consumers.get(cur, []) if n.op_type != "Shape"]
            if len(nxt) != 1:
                self.branch = sorted(n.op_type for n in nxt) if nxt else None
                break
            self.chain.append(nxt[0])
            cur = nxt[0].output[0]

    def attrs(self, node) -> dict[str, Any]:
        return {a.name: self.helper.get_attribute_value(a) for a in node.attribute}

    def const(self, node, i: int, what: str) -> np.ndarray:
        if i >= len(node.input) or not node.input[i]:
            raise WeightsError(f"{self.source}: {node.op_type} node {node.name!r} has no {what}")
        name = node.input[i]
        if name not in self.consts:
            raise WeightsError(f"{self.source}: the {what} of {node.op_type} node {node.name!r} is computed in the "
                               "graph, not stored; only stored weights can be imported")  # fmt: skip
        return np.asarray(self.consts[name])


def _square(values, what: str, node, source: str) -> int:
    v = list(values)
    if len(v) != 2 or v[0] != v[1]:
        raise WeightsError(f"{source}: {node.op_type} node {node.name!r} has {what} {v}; only square ones are "
                           "supported")  # fmt: skip
    return int(v[0])


def _conv_padding(g: _Graph, node, a: dict, k: int, s: int) -> int:
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("NOTSET", ""):
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(set(pads)) != 1:
            raise WeightsError(f"{g.source}: {node.op_type} node {node.name!r} has asymmetric pads {pads}; "
                               "only symmetric zero padding is supported")  # fmt: skip
        return int(pads[0])
    if auto == "VALID":
        return 0
    if s == 1 and k % 2 == 1:  # SAME_UPPER / SAME_LOWER with stride 1 and an odd kernel: symmetric
        return (k - 1) // 2
    raise WeightsError(f"{g.source}: {node.op_type} node {node.name!r} has auto_pad={auto} with stride {s} and "
                       f"kernel {k}, which pads asymmetrically; not supported")  # fmt: skip


class _Feature(NamedTuple):
    key: tuple  # ("conv", out, k, s, p) / ("bn", f) / ("relu",) / ("pool", w, s): compared with an Architecture
    arrays: dict  # numpy weights of a conv (kernel HWIO, bias) or a BN (scale, bias, mean, var)


def _arch_key(op) -> tuple:
    if isinstance(op, Conv):
        return ("conv", op.features, op.kernel, op.stride, op.padding)
    if isinstance(op, BatchNorm):
        return ("bn", op.features)
    if isinstance(op, ReLU):
        return ("relu",)
    if isinstance(op, MaxPool):
        return ("pool", op.window, op.stride)
    raise TypeError(op)  # pragma: no cover


def _read_feature(g: _Graph, node, dtype) -> _Feature | None:
    """One node of the conv stack as a _Feature; None for a pass-through node."""
    op, a = node.op_type, g.attrs(node)
    where = f"{g.source}: {op} node {node.name!r}"
    if op in PASS_THROUGH:
        return None
    if op == "Relu":
        return _Feature(("relu",), {})
    if op == "Conv":
        w = g.const(node, 1, "weight")
        if w.ndim != 4:
            raise WeightsError(f"{where} has a {w.ndim}-d weight; only 2-d convolutions are supported")
        if int(a.get("group", 1)) != 1:
            raise WeightsError(f"{where} has group={a['group']}; only plain (ungrouped) convolutions are supported")
        if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            raise WeightsError(f"{where} has dilations {list(a['dilations'])}; only undilated ones are supported")
        k = _square(a.get("kernel_shape", w.shape[2:]), "kernel", node, g.source)
        s = _square(a.get("strides", [1, 1]), "strides", node, g.source)
        if tuple(w.shape[2:]) != (k, k):
            raise WeightsError(f"{where} has a weight of shape {w.shape} for kernel {k}x{k}")
        p = _conv_padding(g, node, a, k, s)
        bias = g.const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0], w.dtype)
        arrays = {"kernel": w.transpose(2, 3, 1, 0).astype(dtype), "bias": bias.reshape(-1).astype(dtype)}
        return _Feature(("conv", int(w.shape[0]), k, s, p), arrays)
    if op == "BatchNormalization":
        if int(a.get("training_mode", 0)):
            raise WeightsError(f"{where} is in training mode; export the model in inference mode")
        scale, shift = g.const(node, 1, "scale"), g.const(node, 2, "bias")
        mean, var = g.const(node, 3, "running mean"), g.const(node, 4, "running variance")
        eps = float(a.get("epsilon", 1e-5))
        # deepvis_jax's BatchNorm uses eps 1e-5: rescale so that scale / sqrt(var + 1e-5) is the graph's
        # scale / sqrt(var + eps) exactly (Keras exports 1e-3)
        scale64 = scale.astype(np.float64) * np.sqrt((var.astype(np.float64) + BN_EPS) / (var.astype(np.float64) + eps))
        arrays = {"scale": scale64.astype(dtype), "bias": shift.astype(dtype), "mean": mean.astype(dtype),
                  "var": var.astype(dtype)}  # fmt: skip
        return _Feature(("bn", int(scale.shape[0])), arrays)
    if op == "MaxPool":
        if int(a.get("ceil_mode", 0)) or any(int(v) for v in a.get("pads", [0])) or any(
            int(d) != 1 for d in a.get("dilations", [1, 1])
        ):
            raise WeightsError(f"{where} pads, dilates or rounds up; only plain max-pools are supported")
        auto = a.get("auto_pad", b"NOTSET")
        if (auto.decode() if isinstance(auto, bytes) else str(auto)) not in ("NOTSET", "", "VALID"):
            raise WeightsError(f"{where} has auto_pad={auto!r}; only unpadded max-pools are supported")
        w = _square(a["kernel_shape"], "kernel", node, g.source)
        s = _square(a.get("strides", [1, 1]), "strides", node, g.source)
        return _Feature(("pool", w, s), {})
    raise KeyError(op)


_FEATURE_OPS = ("Conv", "BatchNormalization", "Relu", "MaxPool", *PASS_THROUGH)


def _describe(keys: list[tuple]) -> str:
    n = lambda kind: sum(1 for k in keys if k[0] == kind)  # noqa: E731
    return f"{n('conv')} convolutions, {n('pool')} max-pools, {n('bn')} batch norms"


# --------------------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------------------


def from_onnx_vgg(source: str | os.PathLike | Any, preprocessing: str = "caffe", seed: int = 0) -> Model:
    """Import an ONNX AlexNet / VGG (any of the nine architectures) as a deepvis_jax Model.

    source: a ``.onnx`` file or an ``onnx.ModelProto``. preprocessing: what the graph's input is --
    ``"caffe"`` (BGR, 0..255, minus the BGR mean 103.939/116.779/123.68: Keras's VGG16 weights),
    ``"torchvision"`` (RGB normalized with ImageNet's mean/std) or ``"unit"`` (RGB in [0, 1]). It is folded into
    conv1 so the model takes torchvision-normalized RGB; the fold is exact except where conv1's window overlaps
    the zero padding (the image's outer pixel ring; see `fold_preprocessing`). The input layout (NCHW, or NHWC
    with a leading Transpose) is read from the graph.

    The classifier is imported when its dense layers have torchvision's shapes and order (Gemm or MatMul + Add,
    ReLUs between them; a channels-last flatten is reordered); otherwise it gets random weights from `seed` and
    the model records ``classifier="untrained"`` (see `random_classifier`), so that no class prediction is shown
    as meaningful. A graph whose conv stack is none of the supported architectures raises WeightsError naming
    what it found.
    """
    if preprocessing not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {preprocessing!r}; use one of: {', '.join(PREPROCESSINGS)}")
    proto, name = _read(source)
    g = _Graph(proto, name)
    if not g.chain:
        raise WeightsError(f"{name}: the graph does nothing with its input")

    nodes = list(g.chain)
    first = nodes[0]
    if first.op_type == "Transpose":
        if list(g.attrs(first).get("perm", [])) != [0, 3, 1, 2]:
            raise WeightsError(f"{name}: the input goes through a Transpose {list(g.attrs(first)['perm'])}; "
                               "expected NCHW input or NHWC with perm [0, 3, 1, 2]")  # fmt: skip
        nodes = nodes[1:]
    if not nodes or nodes[0].op_type not in _FEATURE_OPS:
        op = nodes[0].op_type if nodes else "nothing"
        raise WeightsError(f"{name}: the input goes into a {op} node, expected the first convolution (a graph "
                           "with its own preprocessing nodes cannot be mapped)")  # fmt: skip

    # the conv stack: the longest prefix of feature ops
    w0 = g.const(nodes[0], 1, "weight") if nodes[0].op_type == "Conv" else np.zeros((0,), np.float32)
    dtype = np.float64 if w0.dtype == np.float64 else np.float32
    features: list[_Feature] = []
    j = 0
    while j < len(nodes) and nodes[j].op_type in _FEATURE_OPS:
        f = _read_feature(g, nodes[j], dtype)
        if f is not None:
            features.append(f)
        j += 1
    keys = [f.key for f in features]
    arch = next((a for a in ARCHITECTURES.values() if keys == [_arch_key(op) for op in a.features]), None)
    if arch is None:
        where = ""
        if g.branch is not None and j == len(nodes):
            where = f" (then the graph forks into {' and '.join(g.branch)}: residual networks are not supported)"
        elif j < len(nodes):
            where = f" (then a {nodes[j].op_type} node)"
        raise WeightsError(f"{name}: the conv stack ({_describe(keys)}{where}) matches none of the supported "
                           f"architectures: {', '.join(ARCHITECTURES)}")  # fmt: skip
    convs = [f for f in features if f.key[0] == "conv"]
    if convs[0].arrays["kernel"].shape[2] != 3:
        raise WeightsError(f"{name}: the first convolution takes {convs[0].arrays['kernel'].shape[2]} input "
                           "channels; an RGB network takes 3")  # fmt: skip

    flat: dict[tuple[str, ...], np.ndarray] = {}
    feats = iter(features)
    for op in arch.features:
        f = next(feats)
        if isinstance(op, Conv):
            flat[("params", op.name, "kernel")] = f.arrays["kernel"]
            flat[("params", op.name, "bias")] = f.arrays["bias"]
        elif isinstance(op, BatchNorm):
            flat[("params", op.name, "scale")] = f.arrays["scale"]
            flat[("params", op.name, "bias")] = f.arrays["bias"]
            flat[("batch_stats", op.name, "mean")] = f.arrays["mean"]
            flat[("batch_stats", op.name, "var")] = f.arrays["var"]
    c1 = arch.conv_layers[0]
    flat[("params", c1, "kernel")], flat[("params", c1, "bias")] = fold_preprocessing(
        flat[("params", c1, "kernel")], flat[("params", c1, "bias")], preprocessing
    )

    head, _why = read_head(g, nodes[j:], arch, dtype)
    if head is None:
        head = random_classifier(arch, seed, dtype)
    flat.update(head)
    return model_from_arrays(arch, flat, name, "trained" if _why == "" else "untrained")


def _read(source) -> tuple[Any, str]:
    """(ModelProto, a name for messages) of a path or a proto."""
    onnx, _ = _import_onnx()
    if isinstance(source, onnx.ModelProto):
        return source, "ONNX model"
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {str(path)!r} does not exist")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError and friends
        raise WeightsError(f"{path} is not a readable ONNX file ({type(e).__name__}); it may be truncated "
                           "or corrupt") from None  # fmt: skip
    return proto, str(path)


_VGG_PREPROCESSING = {"caffe": "caffe", "imagenet": "torchvision", "torchvision": "torchvision", "unit": "unit"}


def from_onnx(source: str | os.PathLike | Any, preprocessing: Any = "imagenet", seed: int = 0, *,
              name: str | None = None, input_size: tuple[int, int] | None = None,
              strict: bool = False) -> Model:  # fmt: skip
    """Import an ONNX image network (opsets 11-18) as a deepvis_jax Model.

    source: a ``.onnx`` file or an ``onnx.ModelProto``. preprocessing: what the graph's input is, as for every
    import: ``"imagenet"`` (RGB normalized with ImageNet's mean/std; ``"torchvision"`` is the same), ``"caffe"``
    (BGR, 0..255, minus the BGR mean: Keras's VGG16 weights), ``"unit"``, ``"minus_one_one"`` or a dict
    ``{"mean", "std", "scale", "channels"}``; the model itself takes ImageNet-normalized RGB like every other.

    An AlexNet / VGG graph (one of the nine architectures, Keras's or torchvision's, with a preset preprocessing)
    becomes the library's own VGG network (`from_onnx_vgg`: crops, the compiled family, its classifier record).
    Any other graph is lowered to a JAX function (`converters._onnx_graph`, operators in its ``OPS``) and imported
    with `dv.from_jax` (layout NCHW): the rules apply per primitive, layers are the nodes' module paths (torch.onnx),
    their Paddle output groups, else each convolution and activation node, and the preprocessing is exact at the
    border. `input_size`: the (h, w) the graph is traced at (default: the graph's own input size, else 64 x 64); a
    graph whose shapes only agree at some sizes (an FPN adding upsampled maps) keeps that size. An operator
    outside the supported set raises ValueError naming it and its node. `name`: the model's name.
    """
    from ._onnx_graph import from_onnx_graph

    proto, where = _read(source)
    vgg = _VGG_PREPROCESSING.get(preprocessing) if isinstance(preprocessing, str) else None
    if vgg is not None and input_size is None and not strict:
        try:
            return from_onnx_vgg(proto, vgg, seed)
        except WeightsError:  # not one of the nine architectures: the general path
            pass
    pre = "imagenet" if preprocessing == "torchvision" else preprocessing
    return from_onnx_graph(proto, preprocessing=pre, name=name or (Path(where).stem if where != "ONNX model" else None),
                           where=where, example_hw=input_size, strict=strict)  # fmt: skip
