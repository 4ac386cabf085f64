"""What `construct` maximizes: Lucid's and Lucent's objectives, ``dv.objectives.channel("conv3")`` and the rest.

A per-image objective is ``fn(model, x, target) -> scalar`` for one normalized image and one (traced) filter
index; a batch objective (`diversity`, `alignment`, `channel_interpolate`) reads the whole batch, and `construct`
then optimizes its images jointly. `evaluate` computes either on images you give. `l2_penalty` and `tv_penalty`
are the regularizers `construct(l2=..., tv=...)` adds (means); `l2` and `total_variation` are Lucid's (sums).
See `Objective` for the algebra and docs/construct.md for the Lucid/Lucent spelling of each.
"""

from deepvis_jax._src.optvis.construct import l2_penalty as l2_penalty
from deepvis_jax._src.optvis.construct import tv_penalty as tv_penalty
from deepvis_jax._src.optvis.objectives import Objective as Objective
from deepvis_jax._src.optvis.objectives import alignment as alignment
from deepvis_jax._src.optvis.objectives import blur_input_each_step as blur_input_each_step
from deepvis_jax._src.optvis.objectives import channel as channel
from deepvis_jax._src.optvis.objectives import channel_interpolate as channel_interpolate
from deepvis_jax._src.optvis.objectives import channel_weight as channel_weight
from deepvis_jax._src.optvis.objectives import class_logit as class_logit
from deepvis_jax._src.optvis.objectives import combine as combine
from deepvis_jax._src.optvis.objectives import deepdream as deepdream
from deepvis_jax._src.optvis.objectives import direction as direction
from deepvis_jax._src.optvis.objectives import direction_neuron as direction_neuron
from deepvis_jax._src.optvis.objectives import diversity as diversity
from deepvis_jax._src.optvis.objectives import evaluate as evaluate
from deepvis_jax._src.optvis.objectives import input_diff as input_diff
from deepvis_jax._src.optvis.objectives import l1 as l1
from deepvis_jax._src.optvis.objectives import l2 as l2
from deepvis_jax._src.optvis.objectives import localgroup_weight as localgroup_weight
from deepvis_jax._src.optvis.objectives import neuron as neuron
from deepvis_jax._src.optvis.objectives import neuron_weight as neuron_weight
from deepvis_jax._src.optvis.objectives import total_variation as total_variation

__all__ = ["Objective", "alignment", "blur_input_each_step", "channel", "channel_interpolate", "channel_weight",
           "class_logit", "combine", "deepdream", "direction", "direction_neuron", "diversity", "evaluate",
           "input_diff", "l1", "l2", "l2_penalty", "localgroup_weight", "neuron", "neuron_weight",
           "total_variation", "tv_penalty"]  # fmt: skip
