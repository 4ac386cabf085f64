"""JAX's persistent compilation cache for the `deepvis` command: repeat runs do not recompile."""

from __future__ import annotations

import os
from pathlib import Path

from ._common import warn

CACHE_ENV = "DEEPVIS_JAX_CACHE"


def default_cache_dir() -> Path:
    """$DEEPVIS_JAX_CACHE, else $XDG_CACHE_HOME/deepvis_jax/jax, else ~/.cache/deepvis_jax/jax."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deepvis_jax" / "jax"


def setup_compilation_cache(cache_dir: str | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache so repeat runs do not recompile; returns the folder or None.

    ``cache_dir`` (the --cache-dir flag) wins over $DEEPVIS_JAX_CACHE, which wins over a folder already set with
    $JAX_COMPILATION_CACHE_DIR, which wins over the user cache folder. "off" (or "none", "0") disables it.
    """
    import jax

    chosen = cache_dir or os.environ.get(CACHE_ENV)
    if chosen is not None and chosen.strip().lower() in ("off", "none", "0", ""):
        return None
    if chosen is None and jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    path = Path(chosen).expanduser() if chosen else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        warn(f"cannot create the compilation cache folder {path}; compiling without a cache")
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # CPU compiles are short: cache them too
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
