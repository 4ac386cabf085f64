"""deepvis_jax: Zeiler & Fergus's DeconvNet and activation maximization in JAX/Flax, for AlexNet, VGG and ResNets
(hand-written) and any network `torch.export` captures (`converters.from_torch`: a graph network).

Every public name is re-exported here one by one, grouped by the module that defines it (`__all__` lists them);
the pieces of `construct` live in three namespaces: `dv.objectives`, `dv.param`, `dv.transforms`. The explorer
(the static site and the local web app) is `dv.explorer`.
"""

import warnings as _warnings

# networks: nets/
from deepvis_jax._src.nets import ARCHITECTURES as ARCHITECTURES
from deepvis_jax._src.nets import Model as Model
from deepvis_jax._src.nets import ReceptiveField as ReceptiveField
from deepvis_jax._src.nets import classify as classify
from deepvis_jax._src.nets import conv_layers as conv_layers
from deepvis_jax._src.nets import denormalize as denormalize
from deepvis_jax._src.nets import get_architecture as get_architecture
from deepvis_jax._src.nets import layer_channels as layer_channels
from deepvis_jax._src.nets import layer_hw as layer_hw
from deepvis_jax._src.nets import layer_name as layer_name
from deepvis_jax._src.nets import layers as layers
from deepvis_jax._src.nets import normalize as normalize
from deepvis_jax._src.nets import receptive_field as receptive_field
from deepvis_jax._src.nets.alexnet_vgg import VGG11 as VGG11
from deepvis_jax._src.nets.alexnet_vgg import VGG11_BN as VGG11_BN
from deepvis_jax._src.nets.alexnet_vgg import VGG13 as VGG13
from deepvis_jax._src.nets.alexnet_vgg import VGG13_BN as VGG13_BN
from deepvis_jax._src.nets.alexnet_vgg import VGG16 as VGG16
from deepvis_jax._src.nets.alexnet_vgg import VGG16_BN as VGG16_BN
from deepvis_jax._src.nets.alexnet_vgg import VGG19 as VGG19
from deepvis_jax._src.nets.alexnet_vgg import VGG19_BN as VGG19_BN
from deepvis_jax._src.nets.alexnet_vgg import AlexNet as AlexNet
from deepvis_jax._src.nets.alexnet_vgg import Architecture as Architecture
from deepvis_jax._src.nets.alexnet_vgg import ConvNet as ConvNet
from deepvis_jax._src.nets.resnet import ResNet as ResNet
from deepvis_jax._src.nets.resnet import ResNet18 as ResNet18
from deepvis_jax._src.nets.resnet import ResNet34 as ResNet34
from deepvis_jax._src.nets.resnet import ResNet50 as ResNet50
from deepvis_jax._src.nets.resnet import ResNet101 as ResNet101
from deepvis_jax._src.nets.resnet import ResNet152 as ResNet152
from deepvis_jax._src.nets.resnet import ResNetArchitecture as ResNetArchitecture
from deepvis_jax._src.nets.resnet import WideResNet50_2 as WideResNet50_2

# JAX networks (Flax linen / NNX, Equinox, Haiku, Keras on JAX, plain functions): nets/jaxpr/
from deepvis_jax._src.nets.jaxpr import JaxArchitecture as JaxArchitecture
from deepvis_jax._src.nets.jaxpr import from_equinox as from_equinox
from deepvis_jax._src.nets.jaxpr import from_flax as from_flax
from deepvis_jax._src.nets.jaxpr import from_jax as from_jax
from deepvis_jax._src.nets.jaxpr import tag as tag

# weights: weights.py
from deepvis_jax._src.weights import WeightsError as WeightsError
from deepvis_jax._src.weights import WeightsUnavailableError as WeightsUnavailableError
from deepvis_jax._src.weights import load_model as load_model
from deepvis_jax._src.weights import save_model as save_model

# the ops that record and replay max-pool switches: rules.py
from deepvis_jax._src.rules import PoolSwitches as PoolSwitches
from deepvis_jax._src.rules import Switches as Switches
from deepvis_jax._src.rules import max_pool_with_switches as max_pool_with_switches
from deepvis_jax._src.rules import unpool as unpool

# the DeconvNet and its relatives: deconv.py, visualize.py, files.py
from deepvis_jax._src.deconv import forward as forward
from deepvis_jax._src.deconv import project as project
from deepvis_jax._src.deconv import project_channels as project_channels
from deepvis_jax._src.deconv import project_units as project_units
from deepvis_jax._src.visualize import Visualization as Visualization
from deepvis_jax._src.visualize import visualize as visualize
from deepvis_jax._src.files import FileResult as FileResult
from deepvis_jax._src.files import visualize_files as visualize_files

# activation maximization: optvis/construct.py (its pieces: dv.objectives, dv.param, dv.transforms)
from deepvis_jax._src.optvis.construct import construct as construct
from deepvis_jax._src.optvis.construct import default_batch_size as default_batch_size
from deepvis_jax._src.optvis.construct import filter_key as filter_key

# occlusion sensitivity: occlusion.py
from deepvis_jax._src.occlusion import OcclusionResult as OcclusionResult
from deepvis_jax._src.occlusion import occlusion as occlusion

# the dataset atlas: atlas/
from deepvis_jax._src.atlas import Atlas as Atlas
from deepvis_jax._src.atlas import atlas as atlas
from deepvis_jax._src.atlas import atlas_project as atlas_project

# pictures: render.py, render_occlusion.py, atlas_render.py
from deepvis_jax._src.render import activation_grid as activation_grid
from deepvis_jax._src.render import batch_names as batch_names
from deepvis_jax._src.render import batch_paths as batch_paths
from deepvis_jax._src.render import batch_sheet as batch_sheet
from deepvis_jax._src.render import contact_sheet as contact_sheet
from deepvis_jax._src.render import projection_sheet as projection_sheet
from deepvis_jax._src.render import save_result as save_result
from deepvis_jax._src.render import summary_row as summary_row
from deepvis_jax._src.render_occlusion import occlusion_figure as occlusion_figure
from deepvis_jax._src.atlas_render import render_atlas as render_atlas

# images: images.py
from deepvis_jax._src.images import ImageError as ImageError
from deepvis_jax._src.images import check_image_size as check_image_size
from deepvis_jax._src.images import imagenet_labels as imagenet_labels
from deepvis_jax._src.images import list_images as list_images
from deepvis_jax._src.images import load_image as load_image
from deepvis_jax._src.images import min_image_size as min_image_size
from deepvis_jax._src.images import resize_shorter as resize_shorter
from deepvis_jax._src.images import sample_image as sample_image
from deepvis_jax._src.images import to_uint8 as to_uint8

# the notebook class: visualizer.py
from deepvis_jax._src.visualizer import Visualizer as Visualizer

# how the library compiles: compile.py
from deepvis_jax._src.compile import COMPILER_OPTIONS as COMPILER_OPTIONS

# attribution over ordinary images and files, and its overlay PNGs: attribution/api.py
from deepvis_jax._src.attribution.api import Attribution as Attribution
from deepvis_jax._src.attribution.api import attribute as attribute
from deepvis_jax._src.attribution.api import save_attribution as save_attribution

# namespaces
from deepvis_jax import attribution as attribution
from deepvis_jax import explorer as explorer
from deepvis_jax import objectives as objectives
from deepvis_jax import param as param
from deepvis_jax import targets as targets
from deepvis_jax import transforms as transforms

__version__ = "0.1.0"

__all__ = [
    # networks
    "ARCHITECTURES", "AlexNet", "Architecture", "ConvNet", "Model", "ReceptiveField", "ResNet", "ResNet18",
    "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNetArchitecture", "VGG11", "VGG11_BN", "VGG13",
    "VGG13_BN", "VGG16", "VGG16_BN", "VGG19", "VGG19_BN", "WideResNet50_2", "classify", "conv_layers",
    "denormalize", "get_architecture", "layer_channels", "layer_hw", "layer_name", "layers", "normalize",
    "receptive_field",
    # JAX networks
    "JaxArchitecture", "from_equinox", "from_flax", "from_jax", "tag",
    # weights
    "WeightsError", "WeightsUnavailableError", "load_model", "save_model",
    # switches
    "PoolSwitches", "Switches", "max_pool_with_switches", "unpool",
    # the DeconvNet
    "FileResult", "Visualization", "forward", "project", "project_channels", "project_units", "visualize",
    "visualize_files",
    # activation maximization
    "construct", "default_batch_size", "filter_key",
    # occlusion
    "OcclusionResult", "occlusion",
    # the atlas
    "Atlas", "atlas", "atlas_project",
    # pictures
    "activation_grid", "batch_names", "batch_paths", "batch_sheet", "contact_sheet", "occlusion_figure",
    "projection_sheet", "render_atlas", "save_result", "summary_row",
    # images
    "ImageError", "check_image_size", "imagenet_labels", "list_images", "load_image", "min_image_size",
    "resize_shorter", "sample_image", "to_uint8",
    # the notebook class
    "Visualizer",
    # compiling
    "COMPILER_OPTIONS",
    # attribution over images
    "Attribution", "attribute", "save_attribution",
    # namespaces
    "attribution", "explorer", "objectives", "param", "targets", "transforms",
]  # fmt: skip

# The flat spellings of the namespaced names that existed (names added to the namespaces since never had one).
_MOVED = {
    **{n: "objectives" for n in ("Objective", "channel", "class_logit", "combine", "neuron", "total_variation")},
    **{n: "param" for n in ("Parameterization", "fft", "pixel")},
    **{n: "transforms" for n in ("apply_transforms", "jitter", "pad", "random_rotate", "random_scale",
                                 "standard_transforms")},
}


def __getattr__(name: str):
    """``dv.channel`` and the other flat names of `objectives`, `param` and `transforms`: still there, with a
    DeprecationWarning naming the new spelling."""
    if name in _MOVED:
        new = f"dv.{_MOVED[name]}.{name}"
        _warnings.warn(f"dv.{name} is deprecated and will be removed in the next release; use {new}",
                       DeprecationWarning, stacklevel=2)  # fmt: skip
        return getattr(globals()[_MOVED[name]], name)
    raise AttributeError(f"module 'deepvis_jax' has no attribute {name!r}")
