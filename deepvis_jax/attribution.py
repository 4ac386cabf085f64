"""What the network looks at: ``dv.attribution.grad_cam(model, x, target, layer="layer4")`` and the rest.

Input-space methods return (N, H, W, 3) (`to_map` sums over colour): `saliency`, `input_x_gradient`,
`guided_backprop`, `integrated_gradients` (-> attributions, delta), `smooth_grad`, `guided_grad_cam`, `occlusion`.
The CAMs return (N, h, w) at the layer (`upsample` brings them to the image): `grad_cam`, `hires_cam`,
`grad_cam_pp`, `xgrad_cam`, `layer_cam`, `eigen_cam`, `score_cam`. A target is an int class index (one for the
batch or one per image) or a ``dv.targets.*`` target. Every function is pure: jit, vmap and grad compose.
`overlay` draws a map over its image (numpy; matplotlib's colour maps). Metrics: `deletion` and `insertion`
(RISE's curves and their areas), `infidelity` and `sensitivity_max` (Captum's), with explicit PRNG keys.
"""

from deepvis_jax._src.attribution.methods import RULES as RULES
from deepvis_jax._src.attribution.methods import eigen_cam as eigen_cam
from deepvis_jax._src.attribution.methods import grad_cam as grad_cam
from deepvis_jax._src.attribution.methods import grad_cam_pp as grad_cam_pp
from deepvis_jax._src.attribution.methods import guided_backprop as guided_backprop
from deepvis_jax._src.attribution.methods import guided_grad_cam as guided_grad_cam
from deepvis_jax._src.attribution.methods import hires_cam as hires_cam
from deepvis_jax._src.attribution.methods import input_x_gradient as input_x_gradient
from deepvis_jax._src.attribution.methods import integrated_gradients as integrated_gradients
from deepvis_jax._src.attribution.methods import layer_cam as layer_cam
from deepvis_jax._src.attribution.methods import occlusion as occlusion
from deepvis_jax._src.attribution.methods import saliency as saliency
from deepvis_jax._src.attribution.methods import score_cam as score_cam
from deepvis_jax._src.attribution.methods import smooth_grad as smooth_grad
from deepvis_jax._src.attribution.methods import smooth_noise as smooth_noise
from deepvis_jax._src.attribution.methods import to_map as to_map
from deepvis_jax._src.attribution.methods import upsample as upsample
from deepvis_jax._src.attribution.methods import xgrad_cam as xgrad_cam
from deepvis_jax._src.attribution.metrics import blur as blur
from deepvis_jax._src.attribution.metrics import deletion as deletion
from deepvis_jax._src.attribution.metrics import gaussian_perturbation as gaussian_perturbation
from deepvis_jax._src.attribution.metrics import infidelity as infidelity
from deepvis_jax._src.attribution.metrics import insertion as insertion
from deepvis_jax._src.attribution.metrics import sensitivity_max as sensitivity_max
from deepvis_jax._src.attribution.metrics import trapezoid_area as trapezoid_area
from deepvis_jax._src.attribution.metrics import uniform_perturbation as uniform_perturbation
from deepvis_jax._src.attribution.render import colormap as colormap
from deepvis_jax._src.attribution.render import overlay as overlay

__all__ = ["RULES", "colormap", "eigen_cam", "grad_cam", "grad_cam_pp", "guided_backprop", "guided_grad_cam",
           "hires_cam",
           "input_x_gradient", "integrated_gradients", "layer_cam", "occlusion", "overlay", "saliency", "score_cam",
           "smooth_grad", "smooth_noise", "to_map", "upsample", "xgrad_cam",
           "blur", "deletion", "gaussian_perturbation", "infidelity", "insertion", "sensitivity_max", "trapezoid_area",
           "uniform_perturbation"]  # fmt: skip
