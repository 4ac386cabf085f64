"""Activation maximization (`construct`), split the way Lucent splits it: one module per kind of piece.

Each piece is small and pure, made by a factory that closes over its hyperparameters (the optax pattern):

- `objectives`: what to maximize, ``fn(model, x, target) -> scalar`` for one image (`channel`, `neuron`,
  `class_logit`, and their weighted sums),
- `param`: how the image is represented, ``(init, to_image, blur)`` (`pixel`, `fft`, colour decorrelation),
- `transforms`: random perturbations before each step, ``(key, image) -> image`` (`pad`, `jitter`, ...),
- `recipe`: the default recipe's constants, the seed class's staged recipe, and `resolve_recipe` (what a call
  leaves out, filled in) with `describe_recipe` (that recipe as plain data, for caches keyed on it),
- `memory`: the default number of filters per batch, from a memory budget,
- `construct`: the regularizers, the compiled optimization loop (optax, ``lax.scan``, vmapped over filters), and
  `construct` itself.

Nothing is exported from here: the public names are re-exported by ``deepvis_jax/__init__.py`` and the
namespaces ``deepvis_jax.objectives``, ``deepvis_jax.param`` and ``deepvis_jax.transforms``.
"""
