"""The dataset-scale atlas (Zeiler & Fergus Fig. 2): each channel's top-k activations over a stream of images.

- `topk`: the running top-k and its jit-compiled update, sharded over a device mesh;
- `sources`: where the images come from (a folder read as `load_image` reads files, or an iterable of arrays);
- `checkpoint`: the running state on disk, and the record a resume must agree with;
- `project`: each winner's projection and image patch (`atlas_project`);
- `result`: the `Atlas` it returns; `stream`: `atlas` itself, which runs the others.
"""

from .project import atlas_project
from .result import Atlas
from .stream import atlas

__all__ = ["Atlas", "atlas", "atlas_project"]
