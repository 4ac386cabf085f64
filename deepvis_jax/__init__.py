"""deepvis_jax: Zeiler & Fergus's DeconvNet and activation maximization for AlexNet/VGG in JAX/Flax."""

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
from deepvis_jax._src.images import ImageError as ImageError
from deepvis_jax._src.images import imagenet_labels as imagenet_labels
from deepvis_jax._src.images import load_image as load_image
from deepvis_jax._src.images import min_image_size as min_image_size
from deepvis_jax._src.images import sample_image as sample_image
from deepvis_jax._src.weights import WeightsError as WeightsError
from deepvis_jax._src.weights import WeightsUnavailableError as WeightsUnavailableError
from deepvis_jax._src.weights import load_model as load_model
from deepvis_jax._src.weights import save_model as save_model

__version__ = "0.1.0"
