"""torchvision / ONNX -> deepvis_jax conversion. The only package here that imports torch or onnx.

    import converters
    model = converters.from_torchvision(torchvision.models.vgg16())   # needs the [torch] extra
    model = converters.from_torch(module, example_input)  # any module torch.export captures (a graph network)
    model = converters.from_onnx("vgg16.onnx", preprocessing="caffe")  # needs the [onnx] extra (no torch)
    model = converters.from_onnx("any.onnx", preprocessing="minus_one_one")  # any ONNX CNN graph (docs/onnx.md)
    converters.save(model, "vgg16.msgpack")        # loads later with dv.load_model("vgg16", weights=...)
    converters.save(graph_model, "net.msgpack")    # a graph network: dv.load_model("net.msgpack"), no torch
    converters.compare(torch_module, model, x)      # per-layer max abs / rel differences
    converters.backward_features(torch_module, "conv3", "deconv")   # torch reference of dv.project
    with converters.projection_rules("guided"): ...   # torch autograd with the projection rules, any module

Without torch installed, only `from_onnx`, `fold_preprocessing` and `save` are here; the torch names then raise an
ImportError that says how to install it.
"""

from converters._onnx import fold_preprocessing as fold_preprocessing
from converters._onnx import from_onnx as from_onnx
from deepvis_jax._src.weights import save_model as save

try:
    import torch as _torch  # noqa: F401
except ImportError:  # the [onnx] extra alone: the torch converters are not available
    _TORCH_NAMES = (
        "Difference", "backward_features", "compare", "detect_architecture", "detect_state_dict", "from_state_dict",
        "from_torch", "from_torchvision", "imagenet_state_dict", "load_pth", "projection_rules", "read_state_dict",
        "torch_activations",
    )  # fmt: skip

    def __getattr__(name):
        if name in _TORCH_NAMES:
            raise ImportError(f"converters.{name} needs torch and torchvision; install them with "
                              "pip install 'deepvis_jax[torch]'")  # fmt: skip
        raise AttributeError(f"module 'converters' has no attribute {name!r}")

else:
    from converters._compare import Difference as Difference
    from converters._compare import compare as compare
    from converters._compare import torch_activations as torch_activations
    from converters._export import from_torch as from_torch
    from converters._reference import backward_features as backward_features
    from converters._reference import projection_rules as projection_rules
    from converters._torchvision import detect_architecture as detect_architecture
    from converters._torchvision import detect_state_dict as detect_state_dict
    from converters._torchvision import from_state_dict as from_state_dict
    from converters._torchvision import from_torchvision as from_torchvision
    from converters._torchvision import imagenet_state_dict as imagenet_state_dict
    from converters._torchvision import load_pth as load_pth
    from converters._torchvision import read_state_dict as read_state_dict

__all__ = [
    "Difference",
    "backward_features",
    "compare",
    "detect_architecture",
    "detect_state_dict",
    "fold_preprocessing",
    "from_onnx",
    "from_state_dict",
    "from_torch",
    "from_torchvision",
    "imagenet_state_dict",
    "load_pth",
    "projection_rules",
    "read_state_dict",
    "save",
    "torch_activations",
]
