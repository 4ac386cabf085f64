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
from deepvis_jax._src.deconv import PoolSwitches as PoolSwitches
from deepvis_jax._src.deconv import Switches as Switches
from deepvis_jax._src.deconv import Visualization as Visualization
from deepvis_jax._src.deconv import forward as forward
from deepvis_jax._src.deconv import max_pool_with_switches as max_pool_with_switches
from deepvis_jax._src.deconv import project as project
from deepvis_jax._src.deconv import project_channels as project_channels
from deepvis_jax._src.deconv import unpool as unpool
from deepvis_jax._src.deconv import visualize as visualize
from deepvis_jax._src.render import activation_grid as activation_grid
from deepvis_jax._src.render import contact_sheet as contact_sheet
from deepvis_jax._src.render import projection_sheet as projection_sheet
from deepvis_jax._src.render import save_result as save_result
from deepvis_jax._src.visualizer import Visualizer as Visualizer
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
