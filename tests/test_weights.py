"""Converted files, .pth loading, the imagenet cache path, the weight loaders, and errors for bad weights."""

import importlib.metadata
import pickle
import sys
import tomllib
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import torchvision

import converters
import deepvis_jax as dv
from deepvis_jax._src.weights import LOADER_GROUP, weight_loader
from reference import torch_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def alexnet():
    tm = torch_model("alexnet", seed=3)
    return tm, converters.from_torchvision(tm)


def _assert_same(a, b):
    assert a.arch == b.arch
    la, lb = jax.tree_util.tree_leaves_with_path(a.variables), jax.tree_util.tree_leaves_with_path(b.variables)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (_, x), (_, y) in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)


def test_round_trip_through_msgpack(alexnet, tmp_path):
    _, model = alexnet
    path = converters.save(model, tmp_path / "sub" / "alexnet.msgpack")
    _assert_same(dv.load_model("alexnet", weights=str(path)), model)
    x = np.random.default_rng(0).standard_normal((1, 67, 67, 3)).astype(np.float32)
    np.testing.assert_array_equal(dv.classify(dv.load_model("alexnet", weights=path), x), dv.classify(model, x))


def test_pth_state_dict(alexnet, tmp_path):
    tm, model = alexnet
    torch.save(tm.state_dict(), tmp_path / "a.pth")
    _assert_same(dv.load_model("alexnet", weights=tmp_path / "a.pth"), model)
    _assert_same(converters.load_pth(tmp_path / "a.pth"), model)  # architecture detected from the tensors


def test_float64_kept_when_x64_on(tmp_path):
    with jax.enable_x64(True):
        m = converters.from_state_dict(torch_model("alexnet").double().state_dict(), "alexnet")
        assert m.dtype == np.float64
        converters.save(m, tmp_path / "a64.msgpack")
        assert dv.load_model("alexnet", weights=tmp_path / "a64.msgpack").dtype == np.float64


def test_bad_state_dicts_name_the_tensor(alexnet):
    tm, _ = alexnet
    sd = tm.state_dict()
    missing = {k: v for k, v in sd.items() if k != "features.3.weight"}
    with pytest.raises(dv.WeightsError, match=r"missing features\.3\.weight"):
        converters.from_state_dict(missing, "alexnet")
    with pytest.raises(dv.WeightsError, match=r"unexpected features\.99\.weight"):
        converters.from_state_dict({**sd, "features.99.weight": torch.zeros(1)}, "alexnet")
    bad = dict(sd, **{"classifier.4.weight": torch.zeros(10, 4096)})
    with pytest.raises(dv.WeightsError, match=r"classifier\.4\.weight.*\(10, 4096\)"):
        converters.from_state_dict(bad, "alexnet")
    with pytest.raises(dv.WeightsError, match="missing"):
        converters.from_state_dict(sd, "vgg11")


def test_bad_files(alexnet, tmp_path):
    tm, model = alexnet
    with pytest.raises(FileNotFoundError, match="nope.msgpack"):
        dv.load_model("alexnet", weights=tmp_path / "nope.msgpack")
    path = converters.save(model, tmp_path / "a.msgpack")
    (tmp_path / "cut.msgpack").write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(dv.WeightsError, match="truncated or corrupt"):
        dv.load_model("alexnet", weights=tmp_path / "cut.msgpack")
    with pytest.raises(dv.WeightsError, match="holds alexnet weights, not vgg11"):
        dv.load_model("vgg11", weights=path)
    torch.save(tm.state_dict(), tmp_path / "a.pth")
    with pytest.raises(dv.WeightsError, match="holds alexnet weights, not vgg11"):
        dv.load_model("vgg11", weights=tmp_path / "a.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "a.pth").read_bytes()[:5000])
    with pytest.raises(dv.WeightsError, match="truncated or corrupt"):
        dv.load_model("alexnet", weights=tmp_path / "cut.pth")


def _flip_byte(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01  # one bit of one weight: the file still parses
    path.write_bytes(bytes(data))


def test_altered_weight_bytes_are_refused(alexnet, tmp_path, capsys):
    """A converted file stores a checksum of its data: one altered bit in a weight (hand-written or graph network)
    is refused in one line, through the API and the command line; a file without a checksum (older) still loads."""
    from flax import serialization

    from deepvis_jax import cli

    _, model = alexnet
    path = converters.save(model, tmp_path / "a.msgpack")
    state = serialization.msgpack_restore(path.read_bytes())
    _flip_byte(path, path.stat().st_size // 2)  # inside fc6's weights: all but a few hundred bytes are arrays
    with pytest.raises(dv.WeightsError, match=r"a\.msgpack: its data do not match the checksum stored with it"):
        dv.load_model("alexnet", weights=path)
    assert cli.main(["layers", "--weights", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("deepvis: error: ") and "checksum" in err[0], err

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2)).eval()
    graph = converters.save(converters.from_torch(net, torch.zeros(1, 3, 16, 16)), tmp_path / "g.msgpack")
    dv.load_model(graph)  # intact: loads
    stored = serialization.msgpack_restore(graph.read_bytes())["variables"]["params"]
    weight = max(stored.values(), key=np.size).tobytes()  # the conv's weight as the file holds it
    _flip_byte(graph, graph.read_bytes().index(weight) + 5)
    with pytest.raises(dv.WeightsError, match="checksum"):
        dv.load_model(graph)

    del state["checksum"]  # as written before the checksum existed
    (tmp_path / "old.msgpack").write_bytes(serialization.msgpack_serialize(state))
    _assert_same(dv.load_model("alexnet", weights=tmp_path / "old.msgpack"), model)


class _Evil:
    def __reduce__(self):
        return (sys.exit, ("pickled code ran",))


def test_pickled_code_is_refused(tmp_path):
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"features.0.weight": _Evil()}, f)
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "module.pth")  # a whole pickled module
    for name in ("evil.pth", "module.pth"):
        with pytest.raises(dv.WeightsError, match="pickled objects other than tensors|not a readable"):
            dv.load_model("alexnet", weights=tmp_path / name)


def test_imagenet_uses_torch_cache_then_converted_cache(alexnet, tmp_path, monkeypatch):
    """The "imagenet" path with a local file in torchvision's cache (no network), then the converted cache alone."""
    tm, model = alexnet
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.AlexNet_Weights.DEFAULT
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(tm.state_dict(), checkpoints / weights.url.rsplit("/", 1)[1])
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)  # a download attempt would fail
    _assert_same(dv.load_model("alexnet", weights="imagenet"), model)
    assert (checkpoints / "deepvis_jax-alexnet.msgpack").is_file()
    # second load: from the converted cache, with torch made unimportable
    _without_converters(monkeypatch)
    _assert_same(dv.load_model("alexnet", weights="imagenet"), model)


def _no_network(*args, **kwargs):
    import urllib.error

    raise urllib.error.URLError("no network in tests")


def _without_converters(monkeypatch):
    """`converters` (the only importer of torch) and every module of it unimportable, as without the [torch] extra.

    Its submodules too: a weight loader names one (``converters._torchvision:load_pth``), and an import of a module
    already in sys.modules succeeds even when its package is blocked.
    """
    for name in [n for n in sys.modules if n.split(".")[0] == "converters"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "converters", None)


def test_imagenet_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    with pytest.raises(dv.WeightsUnavailableError, match=r"cannot download pretrained vgg11 weights.*offline.*local"):
        dv.load_model("vgg11", weights="imagenet")
    _without_converters(monkeypatch)
    with pytest.raises(dv.WeightsUnavailableError, match="torch is not installed"):
        dv.load_model("vgg11", weights="imagenet")


# -------------------------------------------------------------------------------------------------------------- weight loaders (entry points)


def _declared_loaders() -> list:
    """The weight loaders pyproject.toml declares, as entry points (whatever the installed metadata says)."""
    with open(REPO / "pyproject.toml", "rb") as f:
        declared = tomllib.load(f)["project"]["entry-points"][LOADER_GROUP]
    return [importlib.metadata.EntryPoint(name, value, LOADER_GROUP) for name, value in declared.items()]


def _register(monkeypatch, eps) -> None:
    """Make `importlib.metadata.entry_points` report `eps` as the weight loaders (other groups as installed)."""
    installed = importlib.metadata.entry_points

    def entry_points(**params):
        return eps if params.get("group") == LOADER_GROUP else installed(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def _unimportable(name):
    return importlib.metadata.EntryPoint(name, "deepvis_jax_no_such_plugin:load", LOADER_GROUP)


def test_torch_weights_load_through_the_declared_loaders(alexnet, tmp_path, monkeypatch):
    """load_model reads a .pth and torchvision's pretrained weights with the loaders pyproject.toml registers."""
    tm, model = alexnet
    eps = _declared_loaders()
    assert sorted(ep.name for ep in eps) == ["imagenet", "pth"]
    assert weight_loader("pth", eps) is converters.load_pth
    assert weight_loader("pth", [_unimportable("pth"), *eps]) is converters.load_pth  # the first that imports
    assert weight_loader("onnx", eps) is None
    _register(monkeypatch, eps)
    torch.save(tm.state_dict(), tmp_path / "a.pth")
    _assert_same(dv.load_model("alexnet", weights=tmp_path / "a.pth"), model)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(tm.state_dict(), checkpoints / torchvision.models.AlexNet_Weights.DEFAULT.url.rsplit("/", 1)[1])
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    _assert_same(dv.load_model("alexnet", weights="imagenet"), model)


def test_without_a_loader_torch_weights_are_unavailable(tmp_path, monkeypatch):
    """No loader registered, or one whose module cannot be imported (no torch): the same one-line errors."""
    (tmp_path / "a.pth").write_bytes(b"never read")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for eps in ([], [_unimportable("pth"), _unimportable("imagenet")]):
        _register(monkeypatch, eps)
        with pytest.raises(dv.WeightsUnavailableError, match=r"a\.pth is a PyTorch file and torch is not installed"):
            dv.load_model("alexnet", weights=tmp_path / "a.pth")
        with pytest.raises(dv.WeightsUnavailableError, match="not cached at .* torch is not installed to fetch them"):
            dv.load_model("alexnet", weights="imagenet")


def test_installed_metadata_registers_the_declared_loaders():
    """The installed deepvis_jax registers the loaders pyproject.toml declares: else `pip install -e .` again."""
    try:
        installed = importlib.metadata.distribution("deepvis_jax").entry_points.select(group=LOADER_GROUP)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("deepvis_jax is not installed (a source tree on PYTHONPATH): no entry points to check")
    declared = {ep.name: ep.value for ep in _declared_loaders()}
    assert {ep.name: ep.value for ep in installed} == declared, (
        "the installed deepvis_jax metadata is older than pyproject.toml; reinstall it (pip install -e .)")
