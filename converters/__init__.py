"""torchvision -> deepvis_jax conversion. The only package here that imports torch (install the [torch] extra).

    import converters
    model = converters.from_torchvision(torchvision.models.vgg16())
    converters.save(model, "vgg16.msgpack")        # loads later with dv.load_model("vgg16", weights=...)
    converters.compare(torch_module, model, x)      # per-layer max abs / rel differences
    converters.backward_features(torch_module, "conv3", "deconv")   # torch reference of dv.project
"""

from converters._reference import backward_features as backward_features
from converters._torchvision import Difference as Difference
from converters._torchvision import compare as compare
from converters._torchvision import detect_architecture as detect_architecture
from converters._torchvision import detect_state_dict as detect_state_dict
from converters._torchvision import from_state_dict as from_state_dict
from converters._torchvision import from_torchvision as from_torchvision
from converters._torchvision import imagenet_state_dict as imagenet_state_dict
from converters._torchvision import load_pth as load_pth
from converters._torchvision import torch_activations as torch_activations
from deepvis_jax._src.weights import save_model as save

__all__ = [
    "Difference",
    "backward_features",
    "compare",
    "detect_architecture",
    "detect_state_dict",
    "from_state_dict",
    "from_torchvision",
    "imagenet_state_dict",
    "load_pth",
    "save",
    "torch_activations",
]
