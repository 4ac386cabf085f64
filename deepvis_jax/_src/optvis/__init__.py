"""Activation maximization (`construct`), split the way Lucent splits it: one module per kind of piece.

Each piece is small and pure, made by a factory that closes over its hyperparameters (the optax pattern):

- `objectives`: what to maximize, ``fn(model, x, target) -> scalar`` for one image (`channel`, `neuron`,
  `class_logit`, and their weighted sums),
- `param`: how the image is represented, ``(init, to_image, blur)`` (`pixel`, `fft`, colour decorrelation),
- `transforms`: random perturbations before each step, ``(key, image) -> image`` (`pad`, `jitter`, ...),
- `construct`: the regularizers, the compiled optimization loop (optax, ``lax.scan``, vmapped over filters), the
  seed class's recipe, and `construct` itself.

Nothing is exported from here: the public names are re-exported one by one by ``deepvis_jax/__init__.py``.
"""
