"""Loading and saving weights.

The converted-file format is Flax's msgpack serialization (`flax.serialization.msgpack_serialize`) of
``{"format": "deepvis_jax", "version": 1, "arch": <name>, "variables": {"params": ..., "batch_stats": ...},
"classifier": "trained" | "untrained", "random_weights": bool}``: numpy arrays in a plain msgpack map, readable
with no torch installed and no code executed on load. A file without "classifier" (written before it existed) is
"trained"; one without "random_weights" holds weights of unknown origin (False). "checksum" is `data_checksum` of
the variables (and graph); a file whose data do not match it is refused (one without it, older, is read).

A graph network (`converters.from_torch`) is stored as version 2: the same map with ``"graph"``, the captured
graph as JSON text (`nets.graph.to_json`: op names, static arguments, module paths, layers; no pickles, no code),
and its weights ``{"params": {torch name: array}}``. ``load_model(path)`` reads either version from the path
alone.

PyTorch weights (a torchvision ``.pth`` file, ``weights="imagenet"``) are read by *weight loaders* that other
packages register under the entry-point group ``deepvis_jax.weights`` (see `LOADER_GROUP`), so this package imports
neither torch nor the package that converts torch weights (it registers its loaders in pyproject.toml).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from .nets import ARCHITECTURES, AnyArchitecture, GraphArchitecture, JaxArchitecture, Model, get_architecture, init_model
from .nets.jaxpr import files as jax_files
from .nets.graph import from_json, to_json

FORMAT, VERSION = "deepvis_jax", 1
GRAPH_VERSION = 2  # a graph network: the graph stored beside the weights
JAX_VERSION = 3  # a JAX network (dv.from_jax): its program stored beside the weights

LOADER_GROUP = "deepvis_jax.weights"
"""Entry-point group of the weight loaders that `load_model` needs for PyTorch weights, looked up by name:

- ``pth``: ``fn(path: Path, arch: str) -> Model`` reads a torchvision state-dict file of architecture `arch`
  (safely: no pickled code runs), raising WeightsError for a file that cannot become that model;
- ``imagenet``: ``fn(arch: str, progress: bool) -> Model`` fetches torchvision's pretrained weights of `arch`
  through torchvision's own download and cache and converts them, raising WeightsUnavailableError when they cannot
  be had (offline).

Declared in pyproject.toml, e.g. ``[project.entry-points."deepvis_jax.weights"] pth = "pkg.module:function"``.
"""


class WeightsError(ValueError):
    """A weights file or state dict that cannot become this model: corrupt, another architecture, bad tensors."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights that cannot be had here (offline with no cache, or torch missing to convert them)."""


def target_dtype(dtype) -> np.dtype:
    """Keep float32; keep float64 only when JAX x64 is on (JAX cannot hold it otherwise)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        return np.dtype(np.float32)
    return dtype


def expected_shapes(arch: AnyArchitecture) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Flattened variable path -> shape, for checking files and state dicts."""
    shapes = jax.eval_shape(lambda: init_model(arch).variables)
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(shapes).items()}


def model_from_arrays(arch: AnyArchitecture, flat: dict[tuple[str, ...], np.ndarray], source: str,
                      classifier: str = "trained", random_weights: bool = False) -> Model:
    """Build a Model from flattened variables, checking every name and shape (errors name the tensor)."""
    want = expected_shapes(arch)
    missing = [k for k in want if k not in flat]
    extra = [k for k in flat if k not in want]
    if missing:
        raise WeightsError(f"{source}: missing {'/'.join(missing[0])} (and {len(missing) - 1} more) for {arch.name}"
                           if len(missing) > 1 else f"{source}: missing {'/'.join(missing[0])} for {arch.name}")
    if extra:
        raise WeightsError(f"{source}: unexpected {'/'.join(extra[0])} for {arch.name}")
    for k, shape in want.items():
        if tuple(np.shape(flat[k])) != shape:
            raise WeightsError(
                f"{source}: {'/'.join(k)} has shape {tuple(np.shape(flat[k]))}, {arch.name} expects {shape}"
            )
    dtype = target_dtype(np.asarray(flat[next(iter(want))]).dtype)
    variables = traverse_util.unflatten_dict({k: jnp.asarray(np.asarray(v, dtype=dtype)) for k, v in flat.items()})
    return Model(variables=variables, arch=arch, classifier=classifier, random_weights=random_weights)


def data_checksum(state: dict) -> str:
    """``"sha256:<hex>"`` of a converted file's data: every variable's path, dtype, shape and bytes (sorted by
    path), then the graph's or program's JSON text when there is one. Stored in the file; `read_converted` refuses a mismatch."""
    h = hashlib.sha256()
    for key, v in sorted(traverse_util.flatten_dict(state["variables"]).items()):
        a = np.ascontiguousarray(v)
        h.update(f"{'/'.join(map(str, key))}:{a.dtype.str}:{a.shape};".encode())
        h.update(memoryview(a.reshape(-1)).cast("B"))
    for text in ("graph", "program"):  # a graph network's graph, a JAX network's program
        if text in state:
            h.update(str(state[text]).encode())
    return "sha256:" + h.hexdigest()


def save_model(model: Model, path: str | os.PathLike) -> Path:
    """Write `model` to a converted file (msgpack) that `load_model(arch, weights=path)` (a graph network:
    `load_model(path)`) reads without torch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = isinstance(model.arch, GraphArchitecture)
    program = isinstance(model.arch, JaxArchitecture)
    state = {
        "format": FORMAT,
        "version": GRAPH_VERSION if graph else JAX_VERSION if program else VERSION,
        "arch": model.arch.name,
        "variables": jax.tree_util.tree_map(np.asarray, model.variables),
        "classifier": model.classifier,
        "random_weights": bool(model.random_weights),
    }
    if graph:
        state["graph"] = to_json(model.arch)
    if program:
        state["program"] = jax_files.to_json(model.arch)
    state["checksum"] = data_checksum(state)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(serialization.msgpack_serialize(state))
    os.replace(tmp, path)  # never leave a half-written file under the real name
    return path


def read_converted(path: str | os.PathLike, arch: str | AnyArchitecture | None = None) -> Model:
    """Read a converted msgpack file; `arch`, when given, must match the file's architecture."""
    path = Path(path)
    try:
        state = serialization.msgpack_restore(path.read_bytes())
    except FileNotFoundError:
        raise
    except Exception as e:  # msgpack raises several unrelated types for corrupt data
        raise WeightsError(f"{path} is not a readable deepvis_jax weights file ({type(e).__name__}); "
                           "it may be truncated or corrupt: convert it again") from None  # fmt: skip
    if not isinstance(state, dict) or state.get("format") != FORMAT or "variables" not in state:
        raise WeightsError(f"{path} is not a deepvis_jax weights file; convert one with `deepvis convert`")
    if "checksum" in state and state["checksum"] != _checksum_or_none(state):
        raise WeightsError(f"{path}: its data do not match the checksum stored with it (the file was altered or "
                           "damaged); convert it again")  # fmt: skip
    if state.get("version") == GRAPH_VERSION:
        return _read_graph(path, state, arch)
    if state.get("version") == JAX_VERSION:
        return _read_program(path, state, arch)
    if state.get("version", VERSION) != VERSION:
        raise WeightsError(f"{path} has format version {state.get('version')!r}, which this version of deepvis_jax "
                           "cannot read; convert it again")  # fmt: skip
    file_arch = get_architecture(state["arch"])
    if arch is not None:
        want = get_architecture(arch) if isinstance(arch, str) else arch
        if want.name != file_arch.name:
            raise WeightsError(f"{path} holds {file_arch.name} weights, not {want.name}; pick --model {file_arch.name}")
    classifier = _classifier(path, state)
    flat = traverse_util.flatten_dict(state["variables"])
    return model_from_arrays(file_arch, flat, str(path), classifier, _random_weights(path, state))


def _checksum_or_none(state: dict) -> str | None:
    """`data_checksum` of a file's state, or None when its variables are not arrays (a damaged map)."""
    try:
        return data_checksum(state)
    except (TypeError, ValueError, AttributeError):
        return None


def _classifier(path: Path, state: dict) -> str:
    """A file's classifier record, "trained" when absent; WeightsError (one line) for anything else."""
    classifier = state.get("classifier", "trained")
    if classifier not in ("trained", "untrained"):
        raise WeightsError(f"{path} has an unknown classifier record {classifier!r}; convert it again")
    return classifier


def _random_weights(path: Path, state: dict) -> bool:
    """The file's record of whether its weights are random (untrained); absent in older files: False."""
    value = state.get("random_weights", False)
    if not isinstance(value, bool):
        raise WeightsError(f"{path} has an unknown random_weights record {value!r}; convert it again")
    return value


def _read_graph(path: Path, state: dict, arch) -> Model:
    """A stored graph network: its graph (JSON) and its weights, every weight the graph reads present and shaped
    as the graph says."""
    try:
        graph = from_json(state["graph"])
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{path} holds no readable graph ({e}); convert it again") from None
    if arch is not None:
        want = arch if isinstance(arch, str) else arch.name
        if want != graph.name:
            raise WeightsError(f"{path} holds the graph network {graph.name}, not {want}")
    params = state["variables"].get("params", {}) if isinstance(state["variables"], dict) else {}
    for n in graph.nodes:
        if n.op != "param":
            continue
        v = params.get(n.args[0])
        if v is None:
            raise WeightsError(f"{path}: missing the weight {n.args[0]} that the graph reads")
        if tuple(np.shape(v)) != tuple(n.shape):
            raise WeightsError(f"{path}: {n.args[0]} has shape {tuple(np.shape(v))}, the graph expects {n.shape}")
    dtype = target_dtype(np.asarray(next(iter(params.values()))).dtype) if params else np.dtype(np.float32)
    variables = {"params": {k: jnp.asarray(np.asarray(v, dtype=dtype)) for k, v in params.items()}}
    classifier = _classifier(path, state)
    return Model(variables=variables, arch=graph, classifier=classifier,
                 random_weights=_random_weights(path, state))


def _read_program(path: Path, state: dict, arch) -> Model:
    """A stored JAX network: its program (JSON) and its weights, every weight the program reads present and shaped
    as the program says."""
    try:
        prog = jax_files.from_json(state["program"])
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{path} holds no readable JAX program ({e}); import and save it again") from None
    if arch is not None:
        want = arch if isinstance(arch, str) else arch.name
        if want != prog.name:
            raise WeightsError(f"{path} holds the JAX network {prog.name}, not {want}")
    params = state["variables"].get("params", {}) if isinstance(state["variables"], dict) else {}
    floats = [np.asarray(v) for v in params.values() if np.issubdtype(np.asarray(v).dtype, np.floating)]
    dtype = target_dtype(floats[0].dtype) if floats else np.dtype(np.float32)
    out = {}
    for k, name in enumerate(prog.program.param_names):
        v = params.get(name)
        want = tuple(prog.program.shapes[k + 1])
        if v is None:
            raise WeightsError(f"{path}: missing the weight {name} that the program reads")
        if tuple(np.shape(v)) != want:
            raise WeightsError(f"{path}: {name} has shape {tuple(np.shape(v))}, the program expects {want}")
        v = np.asarray(v)
        out[name] = jnp.asarray(v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v)
    return Model(variables={"params": out}, arch=prog, classifier=_classifier(path, state),
                 random_weights=_random_weights(path, state))


def weight_loader(name: str, entry_points: Iterable[Any] | None = None) -> Callable[..., Model] | None:
    """The weight loader registered as `name` in `LOADER_GROUP`, or None when there is none that can be imported.

    `entry_points`: the group's entry points (`importlib.metadata.EntryPoint`s); by default those of the installed
    distributions. A loader whose module fails to import (torch not installed) counts as absent; where several
    share a name, the first that imports wins.
    """
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=LOADER_GROUP)
    for ep in entry_points:
        if ep.name != name:
            continue
        try:
            return ep.load()
        except ImportError:
            continue
    return None


def torch_cache_dir() -> Path:
    """torch.hub's checkpoint folder, found the way torch finds it, without importing torch."""
    home = os.environ.get("TORCH_HOME")
    if not home:
        home = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "torch")
    return Path(home) / "hub" / "checkpoints"


def converted_cache_path(arch: str) -> Path:
    return torch_cache_dir() / f"deepvis_jax-{arch}.msgpack"


def _is_file_argument(arch: Any) -> bool:
    """Whether `load_model`'s first argument names a file rather than an architecture."""
    if isinstance(arch, os.PathLike):
        return True
    name = str(arch)
    return name.lower() not in ARCHITECTURES and (Path(name).suffix != "" or os.sep in name or Path(name).is_file())


def load_imagenet(arch: AnyArchitecture, progress: bool = True) -> Model:
    """torchvision's pretrained weights: the converted cache if present, else torchvision's download/cache + convert."""
    cached = converted_cache_path(arch.name)
    if cached.exists():
        return read_converted(cached, arch)
    fetch = weight_loader("imagenet")  # torch lives only in the loader's package
    if fetch is None:
        raise WeightsUnavailableError(
            f"pretrained {arch.name} weights are not cached at {cached} and torch is not installed to fetch them; "
            f"install the [torch] extra, or run `deepvis convert --model {arch.name} --out {arch.name}.msgpack` "
            f"on a machine with torch and pass that file as weights, or use random weights"
        )
    model = fetch(arch.name, progress=progress)
    save_model(model, cached)
    return model


def load_model(arch: str | os.PathLike, weights: str | os.PathLike | None = None, seed: int = 0) -> Model:
    """A model by architecture name, or a converted file.

    ``load_model(path)``: a converted ``.msgpack`` file (`save_model`, `deepvis convert`) as the only argument
    loads the architecture the file records. ``load_model(arch, weights)``: `arch` names the architecture and
    weights is None (random init from Flax initializers, seeded by `seed`), ``"imagenet"`` (torchvision's
    pretrained weights via its download cache, converted once and cached beside it), a converted ``.msgpack`` file
    (which must hold `arch`), or a torchvision state-dict ``.pth``/``.pt`` file (needs torch; loaded with
    ``weights_only=True``).
    """
    if _is_file_argument(arch):
        if weights is not None:
            raise ValueError(f"load_model({str(arch)!r}, weights=...): a converted file records its architecture "
                             "and weights; pass it alone, or an architecture name with weights=")  # fmt: skip
        if not Path(arch).is_file():
            raise FileNotFoundError(f"weights file {str(arch)!r} does not exist")
        return read_converted(arch)
    a = get_architecture(arch)
    if weights is None:
        return init_model(a, seed=seed)
    if isinstance(weights, str) and weights.lower() == "imagenet":
        return load_imagenet(a)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix.lower() in (".pth", ".pt", ".bin", ".ckpt"):
        load_pth = weight_loader("pth")
        if load_pth is None:
            raise WeightsUnavailableError(
                f"{path} is a PyTorch file and torch is not installed; install the [torch] extra or convert it "
                "elsewhere with `deepvis convert` and pass the .msgpack file"
            )
        return load_pth(path, a.name)
    return read_converted(path, a)
