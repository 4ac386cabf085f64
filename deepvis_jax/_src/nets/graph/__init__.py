"""Graph networks: any network `torch.export` captures, held as plain data and run by an interpreter in JAX.

A `GraphArchitecture` is the captured graph as static, hashable data: a tuple of `Node`s in topological order (op
name, arguments that are other nodes (`Ref`) or Python constants, the torch module path that produced it), the
outputs, and the visualizable layers (`LayerSpec`). The weights are the Model's variables,
``{"params": {torch name: array}}`` (convolution weights stored HWIO). `converters.from_torch` builds both;
`weights.py` saves and loads them without torch (`files.py`: the graph as JSON).

`GraphModule.apply` (`interpreter.py`) runs the nodes in order with the op table (`values.OPS`, filled by
`ops_math.py`, `ops_nn.py` and `ops_shape.py`); every ReLU, activation and
max-pool goes through the ``ops`` object of `rules.py`, so `forward`, `project` (the three methods), `construct`,
occlusion and the atlas work on graph networks as on the hand-written ones.

Layers are torch module paths whose output is one feature map, as a forward hook returns it: NCHW maps (conv
networks) become NHWC; a vision transformer block's tokens (N, extra + h*w, D) become the (N, h, w, D) map of its
patch grid without the extra (class) tokens; channels-last maps (N, h, w, C) (Swin) stay as they are. The kind
of each layer is decided when the graph is imported, from the symbolic shapes torch gives (see
`converters/_export.py` and docs/graph-networks.md).

Receptive fields are computed over every path: the size is the largest, the offset the smallest, and strides must
agree where paths merge; a layer after an op that mixes all positions (a mean over space, attention, a flatten
and a linear layer, upsampling, a gate computed from the whole map) sees the whole image.
"""

from __future__ import annotations

from . import ops_math, ops_nn, ops_shape  # noqa: F401 - they fill the op table
from .architecture import GLOBAL, Field, GraphArchitecture, LayerSpec, Node, Ref
from .fields import receptive_field_of
from .files import from_json, to_json
from .interpreter import GraphModule
from .values import ACTIVATION_OPS, OPS, Ctx, DType, Hwio, Img, Perm, as_img, logical, logical_shape

__all__ = ["ACTIVATION_OPS", "GLOBAL", "OPS", "Ctx", "DType", "Field", "GraphArchitecture", "GraphModule", "Hwio",
           "Img", "LayerSpec", "Node", "Perm", "Ref", "as_img", "from_json", "logical", "logical_shape",
           "receptive_field_of", "to_json"]
