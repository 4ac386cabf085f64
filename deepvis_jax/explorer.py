"""The explorer: a static site over the atlas of a folder of images, and a local web app (`deepvis atlas`, `serve`).

The site (one folder per layer, a page per channel; it opens from the file system):

    info = SiteInfo(model.arch.name, num_images, None)
    summary = build_layer(model, "photos/", "conv5", Path("site/conv5"), channels=range(256), top_k=9,
                          batch_size=32, size=224, checkpoint_every=20, resume=False, construct=None,
                          replace_features=False, info=info)
    write_site_index("site", [summary], info)

The web app: ``serve(make_server(Explorer(model), "127.0.0.1", 8000))``.
"""

from deepvis_jax._src.explorer.build import STATE_FILE as STATE_FILE
from deepvis_jax._src.explorer.build import ConstructOptions as ConstructOptions
from deepvis_jax._src.explorer.build import build_layer as build_layer
from deepvis_jax._src.explorer.build import clear_layer as clear_layer
from deepvis_jax._src.explorer.build import parse_channels as parse_channels
from deepvis_jax._src.explorer.features import construct_features as construct_features
from deepvis_jax._src.digest import weights_digest as weights_digest
from deepvis_jax._src.explorer.live import Explorer as Explorer
from deepvis_jax._src.explorer.server import make_server as make_server
from deepvis_jax._src.explorer.server import serve as serve
from deepvis_jax._src.explorer.site import LayerSummary as LayerSummary
from deepvis_jax._src.explorer.site import SiteInfo as SiteInfo
from deepvis_jax._src.explorer.site import write_site_index as write_site_index

__all__ = ["STATE_FILE", "ConstructOptions", "Explorer", "LayerSummary", "SiteInfo", "build_layer", "clear_layer",
           "construct_features", "make_server", "parse_channels", "serve", "weights_digest", "write_site_index"]  # fmt: skip
