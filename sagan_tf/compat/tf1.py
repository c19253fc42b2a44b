"""Load checkpoints written by the original TF1 code into the Keras models.

The original saves every variable under the scope `model/` (e.g.
`model/g_block1/snconv1/w`), Adam slots as `<var>/Adam` (m) and
`<var>/Adam_1` (v), the optimisers' `beta1_power`/`beta2_power` (and
`_1`-suffixed twins for the second optimiser) and step counters
`global_step`, `d_step`, `g_step`. Keras 3 variable names cannot contain
'/', so the models keep the TF1 names in an explicit map
(`model.tf1_variable_map()`).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from sagan_tf.errors import UserError

ADAM_SLOTS = {"Adam": "m", "Adam_1": "v"}
_OPTIMIZER_SCALARS = ("beta1_power", "beta2_power", "beta1_power_1", "beta2_power_1")
_COUNTERS = ("global_step", "d_step", "g_step")


class CheckpointMismatch(UserError):
  """A TF1 checkpoint and the Keras models disagree; the message names the variables."""


def _is_slot(name: str) -> bool:
  return name.rsplit("/", 1)[-1] in ADAM_SLOTS


def read_tf1_checkpoint(path: str) -> Dict[str, np.ndarray]:
  """{name: array} of every tensor in a TF1 (V2 format) checkpoint."""
  try:
    reader = tf.train.load_checkpoint(path)
  except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
    raise UserError(f"Cannot read a TF1 checkpoint at {path!r} ({e}); pass the prefix "
                    "(e.g. .../model.ckpt-1000, without .index).") from e
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def model_variable_map(generator, discriminator) -> Dict[str, object]:
  """{tf1 name: keras variable} over both models (names must not collide)."""
  out = dict(generator.tf1_variable_map())
  for name, var in discriminator.tf1_variable_map().items():
    if name in out:
      raise ValueError(f"generator and discriminator both define {name}")
    out[name] = var
  return out


def load_tf1_checkpoint(path: str, generator, discriminator, g_optimizer=None,
                        d_optimizer=None) -> Dict[str, object]:
  """Assigns every `model/...` variable of an original checkpoint to the models.

  Returns {tf1_variable_name: keras_variable}. Raises CheckpointMismatch naming
  every missing, extra or mis-shaped variable. When optimizers are given
  (built Keras Adam over the models' trainable variables), the Adam slots and
  step counts are loaded too, so an original run can be continued; a
  checkpoint without slots (the initial state) leaves them at zero.
  """
  tensors = read_tf1_checkpoint(path)
  var_map = model_variable_map(generator, discriminator)
  model_names = {n for n in tensors if n.startswith("model/") and not _is_slot(n)}
  missing = sorted(set(var_map) - model_names)
  extra = sorted(model_names - set(var_map))
  shape_errors = [
      f"{n}: checkpoint {list(tensors[n].shape)} vs model {list(var_map[n].shape)}"
      for n in sorted(model_names & set(var_map))
      if tuple(tensors[n].shape) != tuple(var_map[n].shape)]
  problems = []
  if missing:
    problems.append(f"missing from the checkpoint: {', '.join(missing)}")
  if extra:
    problems.append(f"not in the model: {', '.join(extra)}")
  if shape_errors:
    problems.append(f"shape mismatch: {'; '.join(shape_errors)}")
  if problems:
    raise CheckpointMismatch(
        f"TF1 checkpoint {path} does not match the model configuration ("
        + " | ".join(problems) + "); rebuild the models with the checkpoint's "
        "image_size / gf_dim / df_dim / num_classes / z_dim / attention settings.")
  for name, var in var_map.items():
    var.assign(tensors[name])
  unused = sorted(n for n in tensors if not n.startswith("model/")
                  and n not in _OPTIMIZER_SCALARS and n not in _COUNTERS)
  if unused:
    logging.warning("TF1 checkpoint %s: ignored non-model variables %s", path, unused)
  for opt, models, counter in ((g_optimizer, generator, "g_step"),
                               (d_optimizer, discriminator, "d_step")):
    if opt is not None:
      _load_adam(tensors, opt, models, counter)
  return var_map


def _load_adam(tensors, optimizer, model, counter: str) -> None:
  """Loads `<var>/Adam`, `<var>/Adam_1` and the step count into a Keras Adam."""
  name_of = {id(v): n for n, v in model.tf1_variable_map().items()}
  for var in model.trainable_variables:
    name = name_of[id(var)]
    idx = optimizer._get_variable_index(var)  # Keras 3: slot index of a variable.
    for suffix, attr in ADAM_SLOTS.items():
      slot = getattr(optimizer, "_momentums" if attr == "m" else "_velocities")[idx]
      key = f"{name}/{suffix}"
      slot.assign(tensors[key] if key in tensors else np.zeros(var.shape, np.float32))
  if counter in tensors:
    # Keras Adam derives beta^t from `iterations`; TF1 kept beta powers. With
    # the step counter both give beta^(steps): one number carries the state.
    optimizer.iterations.assign(int(tensors[counter]))


def beta_power_steps(beta2_power: float, beta2: float = 0.999) -> int:
  """Number of Adam steps that produced a TF1 `beta2_power` (for checking)."""
  return int(round(math.log(beta2_power) / math.log(beta2)))
