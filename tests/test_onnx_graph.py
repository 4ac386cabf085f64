"""converters.from_onnx on any ONNX graph (converters/_onnx_graph.py): every operator against onnxruntime on random
inputs (graphs written with onnx.helper), torchvision families exported by torch.onnx.export against onnxruntime
and against `converters.from_torch` of the same module, and PaddleOCR's trained text detector and direction
classifier (shipped by rapidocr-onnxruntime) against onnxruntime, their layers and the detector's output
projected."""

from __future__ import annotations

import copy
import importlib.util

import jax
import numpy as np
import pytest

import converters
import deepvis_jax as dv

onnx = pytest.importorskip("onnx", reason="needs onnx (the [onnx] extra)")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (the dev extra)")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(0)


def _apply(model, x):
    """model.apply compiled once (eagerly, every equation would compile on its own)."""
    return jax.jit(lambda m, x: m.apply(x))(model, np.asarray(x))


def _ort(proto, x_nchw) -> list[np.ndarray]:
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: np.asarray(x_nchw, np.float32)})


def _graph(nodes, inits=(), hw=(8, 8), opset=17, n_out=1):
    """A graph x (1, 3, h, w) -> nodes -> y (the last node's first output)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *hw])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in nodes[-1].output[:n_out]]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits]
    g = helper.make_graph(nodes, "g", [x], outs, initializer=inits)
    p = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    p.ir_version = 8

    return p


def _w(*shape):
    return RNG.normal(size=shape).astype(np.float32)


_COUNT = iter(range(10**6))


def _n(op, ins, out="y", **attrs):
    return helper.make_node(op, ins, [out], name=f"{op.lower()}_node" + (f"_{next(_COUNT)}" if op not in ("Resize",)
                                                                          else ""), **attrs)  # fmt: skip


def _i64(*v):
    return np.asarray(v, np.int64)


def _f32(*v):
    return np.asarray(v, np.float32)


# (id, nodes, initializers, opset, input hw)
CASES = [
    ("Conv pads strides group dilations", [_n("Conv", ["x", "w", "b"], pads=[1, 0, 2, 1], strides=[2, 1], group=3,
                                              dilations=[1, 2])], [("w", _w(6, 1, 3, 3)), ("b", _w(6))], 17, (9, 10)),
    ("Conv auto_pad SAME_UPPER", [_n("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[2, 2])],
     [("w", _w(4, 3, 3, 3))], 11, (9, 8)),
    ("Conv auto_pad SAME_LOWER", [_n("Conv", ["x", "w"], auto_pad="SAME_LOWER", strides=[2, 2], kernel_shape=[2, 2])],
     [("w", _w(4, 3, 2, 2))], 13, (9, 8)),
    ("ConvTranspose stride pads output_padding group", [_n("ConvTranspose", ["x", "w", "b"], strides=[2, 2],
                                                           pads=[1, 0, 1, 1], output_padding=[1, 0], group=3)],
     [("w", _w(3, 2, 3, 3)), ("b", _w(6))], 17, (5, 6)),
    ("ConvTranspose dilations", [_n("ConvTranspose", ["x", "w"], strides=[2, 1], dilations=[2, 1])],
     [("w", _w(3, 4, 2, 3))], 11, (5, 6)),
    ("BatchNormalization", [_n("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)],
     [("s", _w(3)), ("b", _w(3)), ("m", _w(3)), ("v", np.abs(_w(3)) + 0.1)], 15, (5, 5)),
    ("Gemm alpha beta transA transB", [_n("Flatten", ["x"], "f"), _n("Gemm", ["f", "w", "c"], alpha=0.5, beta=2.0,
                                                                         transB=1)],
     [("w", _w(5, 48)), ("c", _w(5))], 13, (4, 4)),
    ("Gemm transA", [_n("Flatten", ["x"], "f"), _n("Transpose", ["f"], "t", perm=[1, 0]),
                     _n("Gemm", ["t", "w"], transA=1)], [("w", _w(48, 5))], 11, (4, 4)),
    ("MatMul", [_n("MatMul", ["x", "w"])], [("w", _w(6, 4))], 13, (5, 6)),
    ("Add Sub Mul Div broadcast", [_n("Add", ["x", "a"], "t1"), _n("Mul", ["t1", "b"], "t2"),
                                   _n("Sub", ["c", "t2"], "t3"), _n("Div", ["t3", "d"])],
     [("a", _w(3, 1, 1)), ("b", _w(1, 1, 5)), ("c", _f32(0.5)), ("d", np.abs(_w(1, 3, 1, 1)) + 1)], 14, (4, 5)),
    ("Pow Sqrt", [_n("Mul", ["x", "x"], "sq"), _n("Add", ["sq", "one"], "p"), _n("Sqrt", ["p"], "r"),
                  _n("Pow", ["r", "three"])],
     [("one", _f32(1.0)), ("three", _f32(3.0))], 15, (4, 4)),
    ("Pow non-integer", [_n("Mul", ["x", "x"], "sq"), _n("Add", ["sq", "one"], "p"), _n("Pow", ["p", "e"])],
     [("one", _f32(1.0)), ("e", _f32(0.7))], 13, (4, 4)),
    ("Relu", [_n("Relu", ["x"])], [], 14, (4, 4)),
    ("Clip inputs (ReLU6)", [_n("Clip", ["x", "lo", "hi"])], [("lo", _f32(0.0)), ("hi", _f32(6.0))], 13, (4, 4)),
    ("Clip min only", [_n("Clip", ["x", "lo"])], [("lo", _f32(-0.3))], 12, (4, 4)),
    ("LeakyRelu", [_n("LeakyRelu", ["x"], alpha=0.1)], [], 16, (4, 4)),
    ("HardSigmoid", [_n("HardSigmoid", ["x"], alpha=0.3, beta=0.4)], [], 13, (4, 4)),
    ("HardSwish", [_n("HardSwish", ["x"])], [], 14, (4, 4)),
    ("hardswish as x*Clip(x+3,0,6)/6", [_n("Add", ["x", "three"], "a"), _n("Clip", ["a", "zero", "six"], "c"),
                                        _n("Mul", ["x", "c"], "m"), _n("Div", ["m", "six"])],
     [("three", _f32(3.0)), ("zero", _f32(0.0)), ("six", _f32(6.0))], 13, (4, 4)),
    ("Sigmoid gate", [_n("Sigmoid", ["x"], "s"), _n("Mul", ["x", "s"])], [], 13, (4, 4)),
    ("Softmax", [_n("Softmax", ["x"], axis=1)], [], 13, (4, 4)),
    ("Softmax opset 11", [_n("Flatten", ["x"], "f"), _n("Softmax", ["f"])], [], 11, (4, 4)),
    ("MaxPool pads strides", [_n("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], [],
     12, (9, 8)),
    ("MaxPool ceil_mode", [_n("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)], [], 12, (8, 8)),
    ("AveragePool count_include_pad=0", [_n("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2],
                                            pads=[1, 1, 1, 1])], [], 11, (7, 8)),
    ("AveragePool count_include_pad=1", [_n("AveragePool", ["x"], kernel_shape=[3, 2], strides=[2, 1],
                                            pads=[1, 0, 1, 1], count_include_pad=1)], [], 11, (7, 8)),
    ("GlobalAveragePool", [_n("GlobalAveragePool", ["x"])], [], 13, (5, 6)),
    ("Concat Reshape Flatten Transpose", [_n("Concat", ["x", "x"], "c", axis=1), _n("Transpose", ["c"], "t",
                                                                                        perm=[0, 2, 3, 1]),
                                          _n("Reshape", ["t", "s"], "r"), _n("Flatten", ["r"], axis=2)],
     [("s", _i64(0, -1, 3, 2))], 14, (4, 6)),
    ("Slice steps negative", [_n("Slice", ["x", "st", "en", "ax", "sp"])],
     [("st", _i64(1, -1)), ("en", _i64(7, -100)), ("ax", _i64(2, 3)), ("sp", _i64(2, -2))], 13, (8, 8)),
    ("Squeeze Unsqueeze ReduceMean", [_n("ReduceMean", ["x"], "m", axes=[2, 3], keepdims=1),
                                      _n("Squeeze", ["m", "ax"], "s"), _n("Unsqueeze", ["s", "ax1"])],
     [("ax", _i64(2, 3)), ("ax1", _i64(1))], 13, (4, 4)),
    ("ReduceMean opset 18 axes input", [_n("ReduceMean", ["x", "ax"], keepdims=0)], [("ax", _i64(1, 3))], 18, (4, 5)),
    ("Pad constant", [_n("Pad", ["x", "p", "v"])], [("p", _i64(0, 0, 1, 2, 0, 0, 2, 1)), ("v", _f32(0.5))], 13,
     (4, 4)),
    ("Pad reflect", [_n("Pad", ["x", "p"], mode="reflect")], [("p", _i64(0, 0, 1, 2, 0, 0, 2, 1))], 13, (4, 4)),
    ("Pad edge", [_n("Pad", ["x", "p"], mode="edge")], [("p", _i64(0, 0, 1, 2, 0, 0, 2, 1))], 13, (4, 4)),
    ("Shape Gather Concat Unsqueeze Cast folded", [
        _n("Shape", ["x"], "sh"), _n("Gather", ["sh", "i0"], "n", axis=0), _n("Unsqueeze", ["n", "a0"], "nn"),
        _n("Concat", ["nn", "m1"], "shape", axis=0), _n("Cast", ["shape"], "shape2", to=TensorProto.INT64),
        _n("Reshape", ["x", "shape2"], "flat"), _n("Cast", ["flat"], "y", to=TensorProto.FLOAT)],
     [("i0", np.asarray(0, np.int64)), ("a0", _i64(0)), ("m1", _i64(-1))], 13, (4, 4)),
    ("Gather on data", [_n("Gather", ["x", "idx"], axis=1)], [("idx", _i64(2, 0))], 13, (4, 4)),
    ("Constant Identity", [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(_w(1, 3, 1, 1))),
                           _n("Identity", ["k"], "k2"), _n("Mul", ["x", "k2"])], [], 13, (4, 4)),
]

RESIZE = []
for ctm in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"):
    RESIZE.append((f"Resize linear {ctm} scales", "linear", ctm, "round_prefer_floor", "scales"))
for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
    RESIZE.append((f"Resize nearest asymmetric {nm}", "nearest", "asymmetric", nm, "scales"))
RESIZE.append(("Resize nearest half_pixel sizes", "nearest", "half_pixel", "round_prefer_floor", "sizes"))
RESIZE.append(("Resize linear align_corners sizes", "linear", "align_corners", "round_prefer_floor", "sizes"))
for name, mode, ctm, nm, how in RESIZE:
    if how == "scales":
        ins, inits = ["x", "", "sc"], [("sc", _f32(1, 1, 2, 3))]
    else:
        ins, inits = ["x", "", "", "sz"], [("sz", _i64(1, 3, 7, 11))]
    CASES.append((name, [_n("Resize", ins, mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nm)], inits,
                  13, (4, 5)))


def _renamed(case, k):
    """The case's nodes and initializers with every name but the input's prefixed (so that cases share a graph)."""
    _, nodes, inits, _, _ = case
    r = lambda n: n if n in ("x", "") else f"c{k}_{n}"  # noqa: E731
    out = []
    for nd in nodes:
        m = onnx.NodeProto()
        m.CopyFrom(nd)
        m.name = f"c{k}_{nd.name}"
        m.input[:] = [r(n) for n in nd.input]
        m.output[:] = [r(n) for n in nd.output]
        out.append(m)
    return out, [(r(n), v) for n, v in inits]


def test_every_operator_equals_onnxruntime():
    """Every case of CASES in one graph per (input size, opset), one output per case: each output equal to
    onnxruntime's (float32, 1e-5). The same cases one graph each: pytest --families."""
    groups: dict = {}
    for k, case in enumerate(CASES):
        groups.setdefault((case[4], case[3]), []).append((k, case))
    for (hw, opset), cases in groups.items():
        nodes, inits, outs = [], [], []
        for k, case in cases:
            n, i = _renamed(case, k)
            nodes += n
            inits += i
            outs.append(n[-1].output[0])
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *hw])
        g = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                 for o in outs],
                              initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in inits])  # fmt: skip
        proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        proto.ir_version = 8
        x01 = RNG.uniform(0, 1, size=(1, *hw, 3)).astype(np.float32)
        xn = np.asarray(dv.normalize(x01))
        refs = _ort(proto, xn.transpose(0, 3, 1, 2))
        got = _apply(converters.from_onnx(proto), xn)
        got = got if isinstance(got, tuple) else (got,)
        for (k, case), a, ref in zip(cases, got, refs):
            a = np.asarray(a)
            assert a.shape == ref.shape, case[0]
            np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-5, err_msg=case[0])


@pytest.mark.families
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_operator_equals_onnxruntime(case):
    _, nodes, inits, opset, hw = case
    proto = _graph(nodes, inits, hw, opset)
    x01 = RNG.uniform(0, 1, size=(1, *hw, 3)).astype(np.float32)
    model = converters.from_onnx(proto)  # ImageNet preprocessing: the graph sees dv.normalize(x01)
    xn = np.asarray(dv.normalize(x01))
    (ref,) = _ort(proto, xn.transpose(0, 3, 1, 2))
    got = np.asarray(_apply(model, xn))
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_rules_follow_the_onnx_activations():
    """ONNX Relu -> relu; Clip(0, 6) -> hardtanh (ReLU6); LeakyRelu; HardSwish and x*Clip(x+3,0,6)/6 ->
    hardswish; MaxPool -> the pool rule (switches); x * Sigmoid(x) -> silu; Softmax -> its true vjp."""
    w = [("w", _w(4, 3, 3, 3)), ("three", _f32(3.0)), ("zero", _f32(0.0)), ("six", _f32(6.0))]
    nodes = [_n("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]), _n("Relu", ["c"], "r"),
             _n("Clip", ["r", "zero", "six"], "r6"), _n("LeakyRelu", ["r6"], "l", alpha=0.2),
             _n("HardSwish", ["l"], "h"), _n("Add", ["h", "three"], "a"), _n("Clip", ["a", "zero", "six"], "cl"),
             _n("Mul", ["h", "cl"], "m"), _n("Div", ["m", "six"], "hs"),
             _n("MaxPool", ["hs"], "p", kernel_shape=[2, 2], strides=[2, 2]), _n("Sigmoid", ["p"], "s"),
             _n("Mul", ["p", "s"], "g"), _n("Softmax", ["g"], axis=1)]  # fmt: skip
    model = converters.from_onnx(_graph(nodes, w, (8, 8), 13))
    kinds = [(e.rule, dict(e.params).get("kind")) for e in model.arch.program.eqns if e.rule != "const"]
    assert ("relu", None) in kinds
    acts = [k for r, k in kinds if r == "activation"]
    assert acts == ["hardtanh", "leaky_relu", "hardswish", "hardswish", "silu"], acts  # x * sigmoid(x): silu
    assert sum(r == "pool" for r, _ in kinds) == 1
    report = model.arch.rules_report()
    assert "exp (true vjp)" in report
    # HardSigmoid is a gate (true vjp, as torch's hardsigmoid in the graph front end), not a hardtanh
    gate = converters.from_onnx(_graph([_n("HardSigmoid", ["x"], "h"), _n("Mul", ["x", "h"], "y")], [], (4, 4), 13))
    assert [e.rule for e in gate.arch.program.eqns if e.rule in ("activation", "relu")] == []


def test_unsupported_operator_and_bad_graphs_are_refused_in_one_line():
    p = _graph([_n("Conv", ["x", "w"], "c"), helper.make_node("LpNormalization", ["c"], ["y"], name="norm1")],
               [("w", _w(2, 3, 1, 1))])
    with pytest.raises(ValueError) as e:
        converters.from_onnx(p)
    msg = str(e.value)
    assert "operator LpNormalization (node 'norm1') is not supported" in msg and "\n" not in msg, msg
    p = _graph([_n("Resize", ["x", "", "sc"], mode="cubic")], [("sc", _f32(1, 1, 2, 2))])
    with pytest.raises(ValueError, match="Resize mode 'cubic' is not supported .* at node 'resize_node'"):
        converters.from_onnx(p)


def test_layers_follow_module_paths_and_paddle_names():
    from converters._onnx_graph import module_path, node_scope

    assert module_path("/layer2/layer2.0/downsample/downsample.0/Conv") == "layer2.0.downsample.0"
    assert module_path("/features/features.0/Conv") == "features.0"
    assert module_path("/Flatten") is None and module_path("Conv_3") is None
    assert node_scope(helper.make_node("Conv", ["a"], ["conv2d_3.tmp_0"], name="p2o.Conv.0")) == ("conv2d_3", False)
    assert node_scope(helper.make_node("Add", ["a", "b"], ["p2o.Add.1"], name="p2o.Add.0")) == ("", False)
    assert node_scope(helper.make_node("Relu", ["a"], ["r"], name="Relu@2")) == ("Relu_2", False)


# --------------------------------------------------------------------------------------------------------------
# PaddleOCR's trained text detector and direction classifier (rapidocr-onnxruntime ships them)
# --------------------------------------------------------------------------------------------------------------

# rapidocr reads images with OpenCV (BGR) and feeds both networks (x / 255 - 0.5) / 0.5 (its config.yaml)
RAPIDOCR_PREPROCESSING = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": 1, "channels": "BGR"}


def rapidocr_model(name: str):
    """A model file of rapidocr_onnxruntime, found without importing the package (it imports cv2)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None:
        pytest.skip("needs rapidocr-onnxruntime (the dev extra, Python < 3.13), which ships PP-OCR's ONNX models")
    from importlib import resources

    return resources.files("rapidocr_onnxruntime") / "models" / name


def text_photo(h=128, w=128, seed=0) -> np.ndarray:
    """A (1, h, w, 3) image in [0, 1]: dark words on a noisy light background."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    bg = np.clip(0.8 + 0.08 * rng.normal(size=(h, w, 3)), 0, 1)
    img = Image.fromarray((bg * 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=18)
    d.text((8, 20), "HELLO", fill=(20, 20, 30), font=font)
    d.text((10, 70), "deepvis 42", fill=(40, 10, 10), font=font)
    return np.asarray(img, np.float32)[None] / 255.0


@pytest.fixture(scope="module")
def detector():
    path = rapidocr_model("ch_PP-OCRv4_det_infer.onnx")
    return str(path), converters.from_onnx(str(path), preprocessing=RAPIDOCR_PREPROCESSING, input_size=(128, 128))


def test_text_detector_map_equals_onnxruntime_and_finds_the_text(detector):
    path, model = detector
    x01 = text_photo()
    xn = np.asarray(dv.normalize(x01))
    got = np.asarray(_apply(model, xn))
    proto = onnx.load(path)
    (ref,) = _ort(proto, ((x01[..., ::-1] - 0.5) / 0.5).transpose(0, 3, 1, 2))  # rapidocr's own preprocessing
    assert got.shape == ref.shape == (1, 1, 128, 128)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    assert ref.max() > 0.5 and ref[0, 0, :10].max() < 0.3  # the detector sees the text, not the blank top rows
    assert "output" in dv.layers(model) and model.arch.fixed_hw == (128, 128)


def test_text_direction_classifier_logits_equal_onnxruntime():
    path = str(rapidocr_model("ch_ppocr_mobile_v2.0_cls_infer.onnx"))
    model = converters.from_onnx(path, preprocessing=RAPIDOCR_PREPROCESSING, input_size=(48, 192))
    x01 = np.concatenate([text_photo(48, 192, 1), text_photo(48, 192, 2)[:, ::-1, ::-1]])
    got = np.asarray(_apply(model, np.asarray(dv.normalize(x01))))
    (ref,) = _ort(onnx.load(path), ((x01[..., ::-1] - 0.5) / 0.5).transpose(0, 3, 1, 2))
    assert got.shape == ref.shape == (2, 2)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def test_text_detector_layers_visualize(detector):
    _, model = detector
    x01 = text_photo()
    for layer in ("hardswish_60", "conv2d_460"):
        if layer not in dv.layers(model):
            layer = dv.layers(model)[len(dv.layers(model)) // 3]
        r = dv.visualize(model, x01[0], layer, top_k=2)
        p = np.asarray(r.projections)
        assert np.all(np.isfinite(p)) and np.abs(p).max() > 0, layer


def _unit_projection_checks(model, xn, layer, method, pick):
    """project_units of the unit `pick(act)` chooses equals project of its one-hot signal on the whole image; it is
    nonzero and zero outside the unit's receptive field. Returns (projection, unit)."""
    act, sw = dv.forward(model, xn, layer)
    act = np.asarray(act)
    n, y, x, c = pick(act)
    one = np.asarray(dv.project_units(model, xn, np.asarray([[n, y, x, c]]), act[n, y, x, c][None], layer, method))
    signal = np.zeros_like(act)
    signal[n, y, x, c] = act[n, y, x, c]
    whole = np.asarray(dv.project(model, sw, signal, layer, method))
    assert one.shape == (1, *xn.shape[1:]) and np.abs(one).max() > 0
    np.testing.assert_allclose(one, whole[n : n + 1], rtol=0, atol=1e-12 * np.abs(whole).max())
    hw = xn.shape[1:3]
    f = dv.receptive_field(model, layer, hw)
    lo_y, lo_x = y * f.stride + f.offset, x * f.stride + f.offset
    inside = np.zeros(hw, bool)
    inside[max(lo_y, 0) : max(lo_y + f.size, 0), max(lo_x, 0) : max(lo_x + f.size, 0)] = True
    assert np.abs(one[0][~inside]).max(initial=0) == 0
    return one, (n, y, x, c)


def test_output_map_is_a_layer_whose_units_project(tmp_path):
    """A graph whose output is a map: the layer "output", its strongest unit projected by each method inside its
    (local) receptive field, equal to the whole-image projection (float64, 1e-12), and through visualize."""
    w = [("w1", _w(4, 3, 3, 3)), ("w2", _w(2, 4, 3, 3))]
    nodes = [_n("Conv", ["x", "w1"], "c1", pads=[1, 1, 1, 1]), _n("Relu", ["c1"], "r"),
             _n("MaxPool", ["r"], "p", kernel_shape=[2, 2], strides=[2, 2]), _n("Conv", ["p", "w2"], "c2")]
    proto = _graph(nodes, w, (16, 16), 13)
    with jax.enable_x64(True):
        model = converters.from_onnx(proto)
        assert dv.layers(model)[-1] == "output"
        xn = np.asarray(dv.normalize(RNG.uniform(0, 1, (1, 16, 16, 3))), np.float64)
        f = dv.receptive_field(model, "output")
        assert (f.size, f.stride) == (8, 2)
        for method in ("deconv", "guided", "gradient"):
            _unit_projection_checks(model, xn, "output", method, lambda a: np.unravel_index(np.argmax(a), a.shape))
        r = dv.visualize(model, xn[0], "output", top_k=1, method="deconv")
        assert np.all(np.isfinite(np.asarray(r.projections))) and np.abs(np.asarray(r.projections)).max() > 0
    # saved, it reloads without onnx: the same layers and outputs
    model = converters.from_onnx(proto)
    converters.save(model, tmp_path / "net.msgpack")
    again = dv.load_model(tmp_path / "net.msgpack")
    assert dv.layers(again) == dv.layers(model)
    x32 = np.asarray(xn, np.float32)
    np.testing.assert_array_equal(np.asarray(_apply(again, x32)), np.asarray(_apply(model, x32)))


@pytest.mark.families
@pytest.mark.parametrize("method", ["deconv", "guided", "gradient"])
def test_text_detector_strongest_output_unit_projects(method):
    """The text map's strongest unit that is not saturated (p < 0.99: at p = 1 the sigmoid passes nothing back)
    by each method: nonzero, inside its receptive field (global: the SE blocks average the whole map), equal to the
    whole-image projection (float64, 1e-12). About 90 s per method on 2 cores."""
    path = str(rapidocr_model("ch_PP-OCRv4_det_infer.onnx"))
    with jax.enable_x64(True):
        model = converters.from_onnx(path, preprocessing=RAPIDOCR_PREPROCESSING, input_size=(64, 96))
        xn = np.asarray(dv.normalize(text_photo(64, 96)), np.float64)
        _unit_projection_checks(model, xn, "output", method,
                                lambda a: np.unravel_index(np.argmax(np.where(a < 0.99, a, -1)), a.shape))


# --------------------------------------------------------------------------------------------------------------
# torchvision families exported by torch.onnx.export
# --------------------------------------------------------------------------------------------------------------

# family: (input size, a layer both imports name alike); the CI runs ONNX_CI, the rest with pytest --families
ONNX_FAMILIES = {
    "resnet18": (64, "layer2"),
    "squeezenet1_0": (64, "features.7"),
    "mobilenet_v3_small": (64, "features.4"),
    "efficientnet_b0": (64, "features.4"),
    "regnet_y_400mf": (64, "trunk_output.block2"),
}
ONNX_CI = ("resnet18",)


def export_family(name: str, size: int, path) -> tuple:
    """(module, path): test_graph_families' seeded module exported with the TorchScript exporter, BatchNorm kept
    as nodes (training=PRESERVE on an eval module, no constant folding), so that both imports hold the same
    float32 weights. (dynamo=True folds each BatchNorm into its convolution.)"""
    import torch
    from test_graph_families import FAMILIES, torch_family

    FAMILIES.setdefault(name, (size, None, None))
    tm = torch_family(name)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tm, (x,), str(path), dynamo=False, opset_version=17, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.PRESERVE)  # fmt: skip
    return tm, path


def check_onnx_family(name: str, tmp_path, projections: bool = True):
    import torch
    from reference import as_float64, assert_close

    size, layer = ONNX_FAMILIES[name]
    tm, path = export_family(name, size, tmp_path / f"{name}.onnx")
    model = converters.from_onnx(str(path))
    x01 = np.random.default_rng(0).uniform(0, 1, (1, size, size, 3)).astype(np.float32)  # not the test order's
    xn = np.asarray(dv.normalize(x01))
    xt = torch.from_numpy(np.ascontiguousarray(xn.transpose(0, 3, 1, 2)))
    (ref,) = _ort(onnx.load(str(path)), xn.transpose(0, 3, 1, 2))
    with torch.no_grad():  # the exact logits (float64), and how far the two float32 runtimes are from them
        exact = copy.deepcopy(tm).double()(xt.double()).numpy()
        t32 = tm(xt).numpy()
    runtime_error = max(float(np.abs(v - exact).max() / np.abs(exact).max()) for v in (t32, ref))
    got = _apply(model, xn)
    # float32 conditioning (random weights, logits up to ~650 on EfficientNet-B0): as close to the exact logits as
    # torch's and onnxruntime's own float32 (twice the farther's distance, at least 1e-4), and so to onnxruntime
    bound = max(1e-4, 2 * runtime_error)
    assert_close(got, exact, bound, err_msg=f"{name} logits against the exact (float64) ones")
    assert_close(got, ref, 2 * bound, err_msg=f"{name} logits against onnxruntime")
    assert layer in dv.layers(model), dv.layers(model)[:20]
    if not projections:
        return
    graph = converters.from_torch(tm, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3)))
    with jax.enable_x64(True):
        # imported again under x64: traced in float64, its literals (a BatchNorm's eps) are float64 too
        m64, g64 = converters.from_onnx(str(path)), as_float64(graph)
        x64 = np.asarray(xn, np.float64)
        for method in ("deconv", "guided", "gradient"):
            a = dv.visualize(m64, x64[0], layer, top_k=2, method=method)
            b = dv.visualize(g64, x64[0], layer, top_k=2, method=method)
            np.testing.assert_array_equal(np.asarray(a.channels), np.asarray(b.channels))
            assert_close(a.projections, b.projections, 1e-9, err_msg=f"{name} {layer} {method}")
            assert np.abs(np.asarray(a.projections)).max() > 0


@pytest.mark.parametrize("name", ONNX_CI)
def test_onnx_family_logits_equal_onnxruntime(name, tmp_path):
    """Logits as close to the exact (float64) ones as torch's and onnxruntime's float32 (at least 1e-4 of the peak),
    and to onnxruntime's; the layers are the module paths."""
    check_onnx_family(name, tmp_path, projections=False)


@pytest.mark.families
@pytest.mark.parametrize("name", list(ONNX_FAMILIES))
def test_onnx_family_equals_onnxruntime_and_from_torch(name, tmp_path):
    """Logits as close to the exact (float64) ones as torch's and onnxruntime's float32 are (twice the farther's
    distance, at least 1e-4 of the peak), and to onnxruntime's, and the three methods' projections at a layer equal
    those of `converters.from_torch` of the same module (float64, 1e-9 of the peak). About 3 min a family on 2
    shared cores: pytest tests/test_onnx_graph.py --families."""
    check_onnx_family(name, tmp_path)


@pytest.mark.families
def test_dynamo_export_layers_are_module_paths(tmp_path):
    """torch.onnx.export(dynamo=True) names nodes node_Conv_3 and records module paths in metadata: the layers are
    the module paths, the output equals onnxruntime's. (About 30 s: the dynamo exporter; --families.)"""
    import torch

    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript (the dev extra)")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3), torch.nn.Hardswish())).eval()  # fmt: skip
    path = tmp_path / "net.onnx"
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), str(path), dynamo=True, opset_version=18)
    model = converters.from_onnx(str(path))
    assert dv.layers(model) == ["0", "1", "2.0", "2.1", "2", "output"]
    xn = np.asarray(dv.normalize(RNG.uniform(0, 1, (1, 16, 16, 3))), np.float32)
    (ref,) = _ort(onnx.load(str(path)), xn.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(np.asarray(_apply(model, xn)), ref, rtol=1e-5, atol=1e-5)
