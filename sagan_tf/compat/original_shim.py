"""Run the user's checkout of the original SAGAN code (TF 1.5) under TensorFlow 2.

The original files (`ops.py`, `non_local.py`, `generator.py`,
`discriminator.py`, `model.py` of brain-research/self-attention-gan at
commit ad9612e) are imported from the checkout at run time, never copied.
They are TF1 graph code; this module supplies what TF 2 lacks:

* the TF1 top-level names: the original's `tf` is a module that answers
  every name from `tf.compat.v1`, plus
* `tf.contrib.layers.xavier_initializer` (Glorot uniform),
* `tf.contrib.layers.batch_norm` as TF 1.5 executed the original's call
  (the fused kernel, epsilon raised to at least 1.001e-5, moving averages
  `v -= (v - stat) * (1 - decay)` put into UPDATE_OPS, the variance update
  with the kernel's Bessel-corrected batch variance),
* `tf.layers.max_pooling2d` (VALID, NHWC),
* stand-ins for `tf.contrib.gan` / `tf.contrib.training` and `utils_ori`
  (imported by `model.py`, unused by the functions read from it).

Call `disable_eager()` first (graph mode), then `import_original(path)`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import types
from typing import Dict, Optional

import tensorflow as tf

from sagan_tf.errors import UserError

COMMIT = "ad9612e60f6ba2b5ad3d3340ebae60f724636d75"
# git blob ids of the files the parity tools execute (shared/original/README.md).
MODEL_FILE_BLOBS = {
    "ops.py": "30ece1eac9507da6bab18cd37bb1245721e71c21",
    "non_local.py": "e54315c88bc6f7f9a1da24d41eb824fea47c57da",
    "generator.py": "c357540438bf521de8679c49083e405ad79499ef",
    "discriminator.py": "55e218ffecffac8ae3c9e029812695d49e070792",
    "model.py": "70e2b151e3f4af0e6fcf557c267d10c8b4e00a4c",
}
# TF 1.5's nn.fused_batch_norm raised any smaller epsilon to this value.
FUSED_BN_MIN_EPSILON = 1.001e-5


def git_blob_id(path: str) -> str:
  """The git blob id of a file: sha1 of b"blob <size>\\0" + content."""
  with open(path, "rb") as f:
    data = f.read()
  return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_original_repo(path: str) -> Optional[str]:
  """None if `path` holds the original's model files at commit ad9612e, else what is wrong."""
  if not os.path.isdir(path):
    return (f"--original_repo={path} is not a directory; pass a checkout of "
            "https://github.com/brain-research/self-attention-gan")
  problems = []
  for name, blob in MODEL_FILE_BLOBS.items():
    f = os.path.join(path, name)
    if not os.path.exists(f):
      problems.append(f"{name} is missing")
    elif git_blob_id(f) != blob:
      problems.append(f"{name} has git blob {git_blob_id(f)}, expected {blob}")
  if problems:
    return (f"{path} is not brain-research/self-attention-gan at commit {COMMIT[:7]}: "
            + "; ".join(problems) + f". Check out that commit (git checkout {COMMIT[:7]}) "
            "with the files unmodified.")
  return None


def _xavier_initializer(uniform=True, seed=None, dtype=tf.float32):
  if uniform:
    return tf.compat.v1.glorot_uniform_initializer(seed=seed, dtype=dtype)
  return tf.compat.v1.glorot_normal_initializer(seed=seed, dtype=dtype)


def _contrib_batch_norm(inputs, decay=0.999, center=True, scale=False, epsilon=0.001,
                        is_training=True, scope=None, **unsupported):
  """`tf.contrib.layers.batch_norm` (NHWC, fused) as TF 1.5 ran it."""
  if unsupported:
    raise NotImplementedError(f"contrib batch_norm shim: unsupported {sorted(unsupported)}")
  v1 = tf.compat.v1
  c = inputs.shape[-1]
  with v1.variable_scope(scope, "BatchNorm", [inputs]):
    beta = v1.get_variable("beta", [c], initializer=v1.zeros_initializer(),
                           trainable=center) if center else tf.zeros([c])
    gamma = v1.get_variable("gamma", [c], initializer=v1.ones_initializer(),
                            trainable=scale) if scale else tf.ones([c])
    moving_mean = v1.get_variable("moving_mean", [c], initializer=v1.zeros_initializer(),
                                  trainable=False)
    moving_var = v1.get_variable("moving_variance", [c], initializer=v1.ones_initializer(),
                                 trainable=False)
    eps = max(epsilon, FUSED_BN_MIN_EPSILON)
    if not is_training:
      y, _, _ = v1.nn.fused_batch_norm(inputs, gamma, beta, mean=moving_mean,
                                       variance=moving_var, epsilon=eps, is_training=False)
      return y
    y, mean, var = v1.nn.fused_batch_norm(inputs, gamma, beta, epsilon=eps, is_training=True)
    rate = tf.constant(1.0 - decay, tf.float32)
    for variable, stat in ((moving_mean, mean), (moving_var, var)):
      v1.add_to_collection(v1.GraphKeys.UPDATE_OPS,
                           v1.assign_sub(variable, (variable - stat) * rate))
    return y


def _max_pooling2d(inputs, pool_size, strides, padding="valid", data_format="channels_last",
                   name=None):
  if data_format != "channels_last":
    raise NotImplementedError("max_pooling2d shim: channels_last only")
  return tf.nn.max_pool2d(inputs, pool_size, strides, padding.upper(), name=name)


def _not_supplied(what):
  def fail(*args, **kwargs):
    raise NotImplementedError(f"{what} is not supplied by the shim (the parity recorder "
                              "wires losses and optimisers itself)")
  return fail


class _TF1Module(types.ModuleType):
  """`tensorflow` as the original sees it: tf.compat.v1 plus the names above."""

  def __init__(self):
    super().__init__("tensorflow")
    self.contrib = types.SimpleNamespace(
        layers=types.SimpleNamespace(xavier_initializer=_xavier_initializer,
                                     batch_norm=_contrib_batch_norm),
        gan=types.SimpleNamespace(eval=types.SimpleNamespace(image_grid=_not_supplied(
            "tf.contrib.gan.eval.image_grid"))),
        training=types.SimpleNamespace())
    self.layers = types.SimpleNamespace(max_pooling2d=_max_pooling2d)

  def __getattr__(self, name):
    return getattr(tf.compat.v1, name)


def disable_eager() -> None:
  """TF1 graph mode for this process (call before building anything)."""
  tf.compat.v1.disable_eager_execution()


def import_original(path: str) -> Dict[str, types.ModuleType]:
  """{'ops', 'non_local', 'generator', 'discriminator', 'model'}: the checkout's modules.

  Refuses (UserError) a checkout whose model files are not commit ad9612e.
  """
  problem = check_original_repo(path)
  if problem:
    raise UserError(problem)
  shim = _TF1Module()
  saved_tf = sys.modules["tensorflow"]
  sys.modules.setdefault("utils_ori", types.ModuleType("utils_ori"))
  sys.path.insert(0, os.path.abspath(path))
  sys.modules["tensorflow"] = shim
  try:
    mods = {name: importlib.import_module(name)
            for name in ("ops", "non_local", "generator", "discriminator", "model")}
  finally:
    sys.modules["tensorflow"] = saved_tf
    sys.path.remove(os.path.abspath(path))
  for name, mod in mods.items():
    if os.path.dirname(os.path.abspath(mod.__file__)) != os.path.abspath(path):
      raise UserError(f"module {name!r} was imported from {mod.__file__}, not from {path}; "
                      "another module of that name shadows the original")
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS([sys.argv[0]], known_only=True)  # model.py's flag defaults
  return mods
