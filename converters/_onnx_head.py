"""The classifier of an ONNX AlexNet / VGG graph: torchvision's dense layers in torchvision's shapes and order
(`read_head`), or a seeded random one (`random_classifier`). No onnx import: it reads `_onnx.py`'s parsed graph."""

from __future__ import annotations

import numpy as np

from deepvis_jax._src.nets.alexnet_vgg import Architecture

# ops that pass the tensor through unchanged in eval mode
PASS_THROUGH = ("Identity", "Dropout")


def read_head(g, nodes: list, arch: Architecture, dtype) -> tuple[dict | None, str]:
    """``(flat classifier variables, "")`` when `nodes` (everything after the conv stack) are torchvision's
    classifier for `arch`, else ``(None, why not)``."""
    i, hwc = 0, False
    # before the flatten: pass-throughs, an identity AveragePool (AdaptiveAvgPool at its own size), a Transpose
    # to NHWC (Keras flattens channels last)
    while i < len(nodes) and nodes[i].op_type not in ("Flatten", "Reshape"):
        n, a = nodes[i], g.attrs(nodes[i])
        if n.op_type in PASS_THROUGH:
            pass
        elif n.op_type == "AveragePool" and list(a.get("kernel_shape", [])) == [1, 1] and list(
            a.get("strides", [1, 1])) == [1, 1] and not any(a.get("pads", [0])):  # fmt: skip
            pass
        elif n.op_type == "Transpose" and list(a.get("perm", [])) == [0, 2, 3, 1] and not hwc:
            hwc = True
        else:
            return None, f"a {n.op_type} node after the last max-pool"
        i += 1
    if i == len(nodes):
        return None, "no flatten and dense layers after the conv stack"
    if nodes[i].op_type == "Flatten" and int(g.attrs(nodes[i]).get("axis", 1)) != 1:
        return None, "a Flatten that keeps more than the batch axis"
    i += 1
    dense: list[tuple[np.ndarray, np.ndarray]] = []
    relus_since = 0
    while i < len(nodes):
        n, a = nodes[i], g.attrs(nodes[i])
        if n.op_type in PASS_THROUGH:
            i += 1
            continue
        if n.op_type == "Relu":
            if not dense or relus_since:
                return None, "a ReLU where torchvision's classifier has none"
            relus_since += 1
            i += 1
            continue
        if n.op_type in ("Gemm", "MatMul"):
            if dense and not relus_since:
                return None, "two dense layers without a ReLU between them"
            if n.op_type == "Gemm":
                if int(a.get("transA", 0)) or float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0:
                    return None, "a Gemm with transA, alpha or beta"
                w = g.const(n, 1, "weight")
                w = w.T if int(a.get("transB", 0)) else w
                b = g.const(n, 2, "bias").reshape(-1) if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[1])
            else:
                w = g.const(n, 1, "weight")
                b = np.zeros(w.shape[1], w.dtype)
                if i + 1 < len(nodes) and nodes[i + 1].op_type == "Add":
                    add = nodes[i + 1]
                    other = [x for x in add.input if x != n.output[0]]
                    if len(other) != 1 or other[0] not in g.consts:
                        return None, "a MatMul followed by an Add that is not a stored bias"
                    b = np.asarray(g.consts[other[0]]).reshape(-1)
                    i += 1
            dense.append((w, b))
            relus_since = 0
            i += 1
            continue
        if n.op_type == "Softmax" and i == len(nodes) - 1:
            i += 1
            continue
        return None, f"a {n.op_type} node in the classifier"
    if relus_since:
        return None, "a ReLU after the last dense layer"
    want = [(n_in, n_out) for _, n_in, n_out, _ in arch.classifier]
    got = [tuple(int(v) for v in w.shape) for w, _ in dense]
    if got != want or any(b.shape != (w.shape[1],) for w, b in dense):
        return None, f"dense layers {got}, not torchvision's {want}"
    flat = {}
    for (name, _, _, _), (w, b) in zip(arch.classifier, dense):
        flat[("params", name, "kernel")] = np.asarray(w, dtype)
        flat[("params", name, "bias")] = np.asarray(b, dtype)
    if hwc:  # rows of fc6 in (h, w, c) order -> torchvision's (c, h, w)
        (h, wd), c = arch.pool_size, got[0][0] // (arch.pool_size[0] * arch.pool_size[1])
        first = ("params", arch.classifier[0][0], "kernel")
        flat[first] = flat[first].reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(h * wd * c, -1)
    return flat, ""


def random_classifier(arch: Architecture, seed: int, dtype) -> dict:
    """torchvision's initialization of the linears (N(0, 0.01) weights, zero biases), seeded; numpy's generator
    because it is several times faster than building the whole model (VGG's head holds 120M weights)."""
    rng = np.random.default_rng(seed)
    flat = {}
    for name, n_in, n_out, _ in arch.classifier:
        flat[("params", name, "kernel")] = (0.01 * rng.standard_normal((n_in, n_out), np.float32)).astype(dtype)
        flat[("params", name, "bias")] = np.zeros(n_out, dtype)
    return flat


