"""What a training run shows in TensorBoard besides its loss scalars.

All of it runs on the host between train calls (train/loop.py decides when),
never inside the compiled train step:

* `config_markdown`: the launch's config as a text summary (tag "config",
  at the launch's start step; a resume with --allow_config_change lists
  its changes);
* `real_images_grid`: the first real batch of the launch (tag "real_images");
* `sigma_function`: per spectral-normalised layer the sigma that layer's next
  forward pass divides its weight by (one power iteration from the stored
  `u`, as the layer itself computes it), tags "sn_sigma/<model>/<layer>";
* `gradient_norm_function`: the global L2 norm of each model's last gradient, read
  from Adam's first moment: with --beta1=0 (the original's) `m` IS the last
  gradient (m <- m + (g - m) * (1 - beta1)), so the norm costs one pass over
  the slots and nothing in the step. With beta1 > 0 the slot is an EMA of
  the gradients; the bias-corrected EMA's norm is written under another tag
  ("grad_norm_ema/...") so it is not mistaken for a gradient's;
* `attention_grids`: where the generator's self-attention looks, rendered
  with attention_image.image_panels (the `./run.sh attention` pictures).
"""

from __future__ import annotations

import json
from typing import Callable, Dict, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf

from sagan_tf import attention_image
from sagan_tf import config as config_lib
from sagan_tf import image_grid as grid_lib

# The sigma and gradient-norm summaries run every EXTRA_EVERY-th summary step:
# they read every weight / slot (one pass over the parameters, plus one
# power iteration per layer), against a few scalars for the losses.
EXTRA_EVERY = 10
REAL_IMAGES = 64  # at most, 8 per row
REAL_COLUMNS = 8
ATTENTION_IMAGES = 4  # generated images per attention summary (one per grid row)
ATTENTION_PIXELS = 64  # panels are upscaled (nearest) to about this size


def config_markdown(cfg, start_step: int, changes: Sequence[str] = ()) -> str:
  """The "config" text summary: the launch's start step, its changes, the config as JSON."""
  lines = [f"Launch at step {start_step} of {cfg.train_steps}, model_dir `{cfg.model_dir}`."]
  if changes:
    lines += ["", "Changed from the launch before (--allow_config_change):", ""]
    lines += [f"* {c}" for c in changes]
  text = json.dumps(config_lib.to_dict(cfg), indent=1, sort_keys=True)
  # Indented = a Markdown code block (TensorBoard renders text summaries as Markdown).
  lines += [""] + ["    " + line for line in text.splitlines()]
  return "\n".join(lines)


def real_images_grid(images) -> np.ndarray:
  """uint8 [1, H', W', 3]: up to REAL_IMAGES of images ([N, H, W, 3] in [-1, 1]), 8 a row."""
  images = np.asarray(images, np.float32)[:REAL_IMAGES]
  return grid_lib.image_grid(images, REAL_COLUMNS)[None]


def _named_models(models) -> Tuple[Tuple[str, object], ...]:
  return (("generator", models.generator), ("discriminator", models.discriminator))


def sigma_function(models) -> Callable[[], Dict[str, float]]:
  """fn() -> {"sn_sigma/<model>/<tf1 scope>": sigma} of every SN layer of G
  and D (SNLayer.sigma), one traced tf.function for all layers."""
  layers = {f"sn_sigma/{name}/{layer.tf1_scope}": layer
            for name, model in _named_models(models) for layer in model.sn_layers()}
  sigmas = tf.function(lambda: {tag: layer.sigma() for tag, layer in layers.items()})
  return lambda: {tag: float(v.numpy()) for tag, v in sigmas().items()}


def spectral_sigmas(models) -> Dict[str, float]:
  """sigma_function(models)() (one call)."""
  return sigma_function(models)()


def gradient_norm_function(models, beta1: float) -> Callable[[], Dict[str, float]]:
  """fn() -> {tag: norm} of G's and D's last gradients from their Adam first moments.

  beta1 == 0: "grad_norm/<model>" = ||last gradient||_2 over all the model's
  trainable variables. beta1 > 0: "grad_norm_ema/<model>" = the norm of the
  bias-corrected gradient EMA m / (1 - beta1^t). Models whose optimiser has
  not stepped yet are left out.
  """
  optimizers = {name: optimizer for (name, _), optimizer in zip(
      _named_models(models), (models.g_optimizer, models.d_optimizer))}

  @tf.function
  def norms():
    return {name: tf.linalg.global_norm([tf.convert_to_tensor(m) for m in
                                         opt._momentums])  # pylint: disable=protected-access
            for name, opt in optimizers.items()}

  def gradient_norms_now():
    steps = {name: int(np.asarray(opt.iterations)) for name, opt in optimizers.items()}
    out = {}
    for name, norm in norms().items():
      t = steps[name]
      if t == 0:
        continue
      if beta1 == 0:
        out[f"grad_norm/{name}"] = float(norm)
      else:
        out[f"grad_norm_ema/{name}"] = float(norm) / (1.0 - beta1 ** t)
    return out

  return gradient_norms_now


def gradient_norms(models, beta1: float) -> Dict[str, float]:
  """gradient_norm_function(models, beta1)() (one call)."""
  return gradient_norm_function(models, beta1)()


def attention_queries(image_size: int):
  """The query points of the attention summaries: attention_image's default spread."""
  return attention_image.parse_queries("", image_size)


def gather_queries(attention: Mapping[str, tf.Tensor], queries, image_size: int):
  """{layer: probs [B, Nq, Nk]} -> {layer: (grid, probs [B, len(queries), Nk])}:
  the layer's H = W (an int32 tensor) and the query rows only, so that a
  128x128 run moves kilobytes, not the full maps, to the host."""
  out = {}
  for name, probs in attention.items():
    grid = int(round(np.sqrt(probs.shape[1])))
    idx = [attention_image.query_index(y, x, image_size, grid) for y, x in queries]
    out[name] = (tf.constant(grid, tf.int32), tf.cast(tf.gather(probs, idx, axis=1),
                                                      tf.float32))
  return out


def attention_grids(images, query_probs: Mapping[str, Tuple], queries
                    ) -> Dict[str, np.ndarray]:
  """{"attention/<layer>": uint8 [1, H', W', 3]}: one row per image, the image
  with the queries marked and one attention panel per query (image_panels).

  Args:
    images: [B, S, S, 3] generated images in [-1, 1].
    query_probs: {layer: (grid, [B, len(queries), Nk])} (gather_queries).
    queries: [(y, x)] image pixels.
  """
  rgb = grid_lib.to_rgb_uint8(np.asarray(images, np.float32))
  factor = max(1, ATTENTION_PIXELS // rgb.shape[1])
  out = {}
  for name, (grid, probs) in query_probs.items():
    probs = np.asarray(probs, np.float32)
    panels = [p for b in range(len(rgb)) for p in
              attention_image.image_panels(rgb[b], probs[b], queries, int(grid), factor)]
    out[f"attention/{name}"] = grid_lib.image_grid(np.stack(panels), len(queries) + 1,
                                                   pad=2)[None]
  return out
