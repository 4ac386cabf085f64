"""The public API as DESIGN.md and the docs state it: every name in `__all__` imports (optax-style), the contract's
calls work as written, every `dv.` spelling in the README and docs/ exists, the flat names of the namespaces warn
and still work, and the core never imports torch or `converters`."""

import re
import types
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

import converters
import deepvis_jax as dv
from deepvis_jax import explorer, objectives, param, transforms

REPO = Path(__file__).resolve().parents[1]

CORE = ["load_model", "conv_layers", "normalize", "denormalize", "classify", "Model", "WeightsError",
        "WeightsUnavailableError", "save_model", "layer_name", "layer_channels", "ConvNet", "AlexNet", "VGG16_BN"]


def test_public_names():
    for name in CORE:
        assert hasattr(dv, name), name
    for name in converters.__all__:
        assert hasattr(converters, name), name
    assert {"from_torchvision", "from_state_dict", "load_pth", "save", "compare"} <= set(converters.__all__)


@pytest.mark.parametrize("module", [dv, objectives, param, transforms, explorer], ids=lambda m: m.__name__)
def test_every_name_in_all_imports_without_a_warning(module):
    assert len(module.__all__) == len(set(module.__all__)), "a name listed twice"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in module.__all__:
            exec(f"from {module.__name__} import {name}", {})
            assert getattr(module, name) is not None, name
    # A submodule (deepvis_jax.cli once another test imported it) is an attribute, not an export.
    public = {n for n, v in vars(module).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)
              or n in module.__all__} - {"annotations"}
    assert public <= set(module.__all__), sorted(public - set(module.__all__))  # nothing public left unlisted


def test_namespaces_hold_the_agreed_names():
    assert set(objectives.__all__) == {"Objective", "channel", "neuron", "class_logit", "combine", "total_variation",
                                       "alignment", "blur_input_each_step", "channel_interpolate", "channel_weight",
                                       "deepdream", "direction", "direction_neuron", "diversity", "evaluate",
                                       "input_diff", "l1", "l2", "l2_penalty", "localgroup_weight", "neuron_weight",
                                       "tv_penalty"}  # fmt: skip
    assert set(param.__all__) == {"Parameterization", "pixel", "fft", "cppn", "BatchParameterization", "LowRes",
                                  "aligned", "fft_tensor", "interpolation_lowres", "lowres", "resize_bilinear_nd"}
    assert set(transforms.__all__) == {"jitter", "pad", "random_scale", "random_rotate", "standard_transforms",
                                       "apply_transforms", "resize"}  # fmt: skip
    assert dv.objectives is objectives and dv.param is param and dv.transforms is transforms


def test_the_flat_names_warn_and_still_work():
    moved = {**{n: "objectives" for n in ("Objective", "channel", "class_logit", "combine", "neuron",
                                          "total_variation")},
             **{n: "param" for n in ("Parameterization", "fft", "pixel")},
             **{n: "transforms" for n in ("apply_transforms", "jitter", "pad", "random_rotate", "random_scale",
                                          "standard_transforms")}}  # fmt: skip
    for name, home in moved.items():
        with pytest.warns(DeprecationWarning, match=rf"dv\.{name} is deprecated .*use dv\.{home}\.{name}"):
            old = getattr(dv, name)
        assert old is getattr(getattr(dv, home), name)
    with pytest.warns(DeprecationWarning, match="use dv.objectives.channel"):
        from deepvis_jax import channel
    assert channel("conv2", contrast=0.5) == dv.objectives.channel("conv2", contrast=0.5)  # same objective
    with pytest.raises(AttributeError, match="no attribute 'chanel'"):
        dv.chanel  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'diversity'"):  # new names have no flat spelling
        dv.diversity  # noqa: B018


def test_the_contract_of_design_md(tmp_path):
    """The calls DESIGN.md lists, as written (random AlexNet, small images), with what each promises."""
    model = dv.load_model("alexnet", weights=None, seed=0)
    path = dv.save_model(model, tmp_path / "alexnet.msgpack")
    again, alone = dv.load_model("alexnet", weights=str(path)), dv.load_model(str(path))
    for m in (again, alone):  # the same architecture and every value of the weights
        assert m.arch == model.arch
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, m.variables, model.variables))
    assert dv.conv_layers(model) == dv.layers(model) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert dv.conv_layers("vgg16")[0] == "conv1_1" and dv.conv_layers("vgg16")[-1] == "conv5_3"
    assert dv.layers("resnet18")[1] == "layer1.0" and dv.layers("resnet18")[-1] == "layer4.1"
    assert dv.layer_name(model, 3) == "conv3"
    images01 = np.random.default_rng(0).uniform(0, 1, (2, 67, 67, 3)).astype(np.float32)
    x = dv.normalize(images01)
    np.testing.assert_allclose(dv.denormalize(x), images01, rtol=1e-6, atol=1e-6)
    logits = dv.classify(model, x)
    assert logits.shape == (2, 1000)
    np.testing.assert_allclose(logits, model.apply(x), rtol=1e-5, atol=1e-6)
    act, switches = dv.forward(model, x, "conv2")
    assert act.shape == (2, 7, 7, 192) and isinstance(switches, dv.Switches)
    np.testing.assert_allclose(act, model.apply(x, upto="conv2"), rtol=1e-5, atol=1e-6)
    recon = dv.project(model, switches, act, "conv2")
    assert recon.shape == (2, 67, 67, 3) and np.all(np.isfinite(recon))
    r = dv.visualize(model, (images01[0] * 255).astype(np.uint8), "conv2", top_k=9, mode="max")
    assert r.activations.shape == (7, 7, 192) and r.channels.shape == (9,) and r.projections.shape == (9, 67, 67, 3)
    np.testing.assert_array_equal(r.channels, np.argsort(-np.asarray(r.activations).max(axis=(0, 1)), kind="stable")[:9])
    imgs = dv.construct(model, 1, [0, 5], steps=2, image_size=48, seed=0, verbose=False)
    assert imgs.shape == (2, 48, 48, 3) and imgs.min() >= 0.0 and imgs.max() <= 1.0
    pre = np.asarray(model.apply(x, upto="conv2", pre_relu=True))
    values = dv.objectives.evaluate(dv.objectives.channel("conv2"), model, x, [3, 9])  # per image
    np.testing.assert_allclose(values, [pre[0, ..., 3].mean(), pre[1, ..., 9].mean()], rtol=1e-5, atol=1e-6)
    assert dv.objectives.evaluate(dv.objectives.diversity("conv2"), model, x).shape == ()  # one value, a batch's


def _doc_spellings() -> set[str]:
    texts = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "docs").glob("*.ipynb"))]
    found = set()
    for path in texts:
        found |= set(re.findall(r"\bdv\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)", path.read_text()))
    return found


def test_every_spelling_in_the_docs_exists():
    """Each ``dv.name`` / ``dv.namespace.name`` the README and docs/ mention is public API, spelled the current way
    (the docs never teach a deprecated flat name)."""
    spellings = _doc_spellings()
    assert spellings, "the README mentions no dv. names"
    missing = []
    for s in sorted(spellings):
        head, _, tail = s.partition(".")
        if head in dv.__all__:
            obj = getattr(dv, head)
            if tail and isinstance(obj, type(dv)) and tail not in obj.__all__:
                missing.append(s)
            elif tail and not isinstance(obj, type(dv)) and not hasattr(obj, tail):
                missing.append(s)
        elif head != "__version__":
            missing.append(s)
    assert not missing, f"the docs name {missing}, which deepvis_jax does not have"


# The versions the suite runs with when the floors were set, and why each is needed (smell 1 of issue 24).
TESTED = {"jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12", "optax": "0.2.8"}


def _version(v: str) -> tuple:
    return tuple(int(p) for p in re.match(r"\d+(\.\d+)*", v).group(0).split("."))


def test_dependency_floors_are_the_tested_versions():
    """pyproject's floors are not below what the suite is run with (the code needs recent JAX: jax.shard_map with
    check_vma, the XLA:CPU option of COMPILER_OPTIONS, jax._src.core.trace_ctx), and the installed versions
    satisfy them."""
    import importlib.metadata
    import inspect
    import tomllib

    import jax

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", d).groups() for d in deps)
    for name, tested in TESTED.items():
        assert _version(floors[name]) >= _version(tested), f"{name}>={floors[name]} is below the tested {tested}"
    for name, floor in floors.items():
        assert _version(importlib.metadata.version(name)) >= _version(floor), (name, floor)
    assert "check_vma" in inspect.signature(jax.shard_map).parameters
    from deepvis_jax._src import compile

    assert compile._trace_ctx is not None


def test_core_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, deepvis_jax as dv; dv.load_model('alexnet'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_does_not_import_converters():
    """One-way dependency: `converters` imports deepvis_jax, never the reverse (but for the CLI's convert/check)."""
    import ast

    root = Path(dv.__file__).parent
    for path in sorted(root.rglob("*.py")):
        if root / "cli" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            assert not any(m.split(".")[0] == "converters" for m in modules), f"{path}:{node.lineno} imports {modules}"
