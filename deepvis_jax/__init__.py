"""deepvis_jax: Zeiler & Fergus's DeconvNet and activation maximization for AlexNet/VGG in JAX/Flax."""

from deepvis_jax._src.atlas import Atlas as Atlas
from deepvis_jax._src.atlas import ReceptiveField as ReceptiveField
from deepvis_jax._src.atlas import atlas as atlas
from deepvis_jax._src.atlas import atlas_project as atlas_project
from deepvis_jax._src.atlas import receptive_field as receptive_field
from deepvis_jax._src.atlas_render import render_atlas as render_atlas
from deepvis_jax._src.models import AlexNet as AlexNet
from deepvis_jax._src.models import Architecture as Architecture
from deepvis_jax._src.models import ConvNet as ConvNet
from deepvis_jax._src.models import Model as Model
from deepvis_jax._src.models import VGG11 as VGG11
from deepvis_jax._src.models import VGG11_BN as VGG11_BN
from deepvis_jax._src.models import VGG13 as VGG13
from deepvis_jax._src.models import VGG13_BN as VGG13_BN
from deepvis_jax._src.models import VGG16 as VGG16
from deepvis_jax._src.models import VGG16_BN as VGG16_BN
from deepvis_jax._src.models import VGG19 as VGG19
from deepvis_jax._src.models import VGG19_BN as VGG19_BN
from deepvis_jax._src.models import ARCHITECTURES as ARCHITECTURES
from deepvis_jax._src.models import classify as classify
from deepvis_jax._src.models import conv_layers as conv_layers
from deepvis_jax._src.models import denormalize as denormalize
from deepvis_jax._src.models import layer_channels as layer_channels
from deepvis_jax._src.models import layer_name as layer_name
from deepvis_jax._src.models import normalize as normalize
from deepvis_jax._src.weights import WeightsError as WeightsError
from deepvis_jax._src.weights import WeightsUnavailableError as WeightsUnavailableError
from deepvis_jax._src.weights import load_model as load_model
from deepvis_jax._src.weights import save_model as save_model

__version__ = "0.1.0"
