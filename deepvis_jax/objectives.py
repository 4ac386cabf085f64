"""What `construct` maximizes: ``dv.objectives.channel("conv3")``, ``neuron``, ``class_logit``, their weighted sums.

An objective is ``fn(model, x, target) -> scalar`` for one normalized image and one (traced) filter index; see
`Objective`. `total_variation` is the regularizer `construct(tv=...)` adds.
"""

from deepvis_jax._src.optvis.construct import total_variation as total_variation
from deepvis_jax._src.optvis.objectives import Objective as Objective
from deepvis_jax._src.optvis.objectives import channel as channel
from deepvis_jax._src.optvis.objectives import class_logit as class_logit
from deepvis_jax._src.optvis.objectives import combine as combine
from deepvis_jax._src.optvis.objectives import neuron as neuron

__all__ = ["Objective", "channel", "class_logit", "combine", "neuron", "total_variation"]
