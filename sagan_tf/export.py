"""SavedModel export of a trained generator for TF Serving (`./run.sh export`).

`./run.sh export --model_dir=DIR [--export_dir=ROOT]` restores the run's
generator (the EMA weights when the checkpoint has them and --use_ema) and
writes `ROOT/<step>/` (default ROOT = DIR/export): a numbered version folder,
as TF Serving expects.

The served graph is the generator's own forward pass
(`models.generator.generator_forward`, the same block functions the Keras
model runs) in inference mode, on constants (BUILD_NOTES.md, "Export"):

* spectral norm: every kernel is stored as W / sigma, sigma from ONE power
  iteration from the stored `u` -- exactly what `generator(z, labels,
  training=False, update_u=False)` computes -- so serving does no power
  iteration and holds no `u`;
* batch norms keep gamma/beta (per class [num_classes, C] for the
  conditional ones) and their moving statistics;
* the self-attention blocks keep their four (folded) 1x1 kernels and the
  scalar gamma.

The SavedModel is a plain `tf.Module` of `tf.Variable`s and TF ops: it loads
and runs with TensorFlow alone (no Keras, no sagan_tf).

Signatures:
  serving_default(z float32 [N, z_dim], labels int32 [N])
  sample(labels int32 [N], seed int64 [], truncation float32 [])
    -> {"images": uint8 [N, S, S, 3] = clip(round((x + 1) * 127.5), 0, 255),
        "images_float": float32 [N, S, S, 3] = x in [-1, 1]}

`sample` draws z with `sample_latents` (stateless, a function of the seed):
truncation t == 1 gives plain N(0, 1); 0 < t < 1 gives t * x with x a
normal truncated to [-2, 2] (components beyond 2 sigma re-drawn), BigGAN's
truncation trick, so |z| <= 2t. Labels outside [0, num_classes) and t
outside (0, 1] fail with InvalidArgumentError naming the allowed range.
"""

from __future__ import annotations

import json
import os
import time
from typing import Dict, Optional, Tuple

from absl import logging
import tensorflow as tf

from sagan_tf import run_dir
from sagan_tf.data.records import to_uint8
from sagan_tf.errors import storage_errors
from sagan_tf.layers import attention as attention_lib
from sagan_tf.layers import conditional_bn as bn_lib
from sagan_tf.layers import spectral_norm as sn_lib
from sagan_tf.layers.fast_conv import ConvPolicy
from sagan_tf.models import generator as generator_lib

INFO_FILE = "export_info.json"  # in <version>/assets.extra/ (TF Serving ignores it)
SIGNATURES = ("serving_default", "sample")
# Second word of the stateless seed of `sample_latents` (the first is the seed).
_LATENT_STREAM = 0x5A67


# ------------------------------------------------------------ latents
def sample_latents(num: int, z_dim: int, seed, truncation=1.0) -> tf.Tensor:
  """z [num, z_dim] float32, a deterministic function of (seed, truncation).

  truncation == 1: z ~ N(0, 1) (what training samples).
  0 < truncation < 1: z = truncation * x, x ~ N(0, 1) truncated to [-2, 2]
  (`tf.random.stateless_truncated_normal` re-draws components beyond two
  standard deviations), BigGAN's truncation trick; |z| <= 2 * truncation.
  Anything else raises InvalidArgumentError.

  Args:
    num: number of latents (int or scalar int tensor).
    z_dim: latent dimension (Python int).
    seed: integer seed (int or int64 scalar tensor).
    truncation: float in (0, 1].
  """
  t = tf.convert_to_tensor(truncation, tf.float32)
  check = tf.debugging.Assert(
      tf.logical_and(t > 0.0, t <= 1.0),
      ["truncation must be in (0, 1] (1 = plain N(0,1)); got", t])
  with tf.control_dependencies([check]):
    t = tf.identity(t)
  key = tf.stack([tf.cast(seed, tf.int64), tf.constant(_LATENT_STREAM, tf.int64)])
  shape = tf.stack([tf.cast(num, tf.int32), z_dim])
  plain = tf.random.stateless_normal(shape, seed=key)
  truncated = t * tf.random.stateless_truncated_normal(shape, seed=key)
  return tf.where(t < 1.0, truncated, plain)


# ------------------------------------------------------------ folding
def fold_spectral_norm(layer) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
  """(W / sigma, bias or None) of an SN layer: one power iteration from its stored u.

  The same `spectral_normalize` the layer runs in its forward pass, so the
  kernel equals what `update_u=False` inference uses; `u` is not changed.
  """
  w_bar, _, _ = sn_lib.spectral_normalize(tf.convert_to_tensor(layer.kernel_variable),
                                          tf.convert_to_tensor(layer.u))
  bias = None
  if getattr(layer, "use_bias", True):
    bias = tf.convert_to_tensor(layer.biases if hasattr(layer, "biases") else layer.bias)
  return tf.cast(w_bar, tf.float32), bias


# The exported model has no gradients: the policy that picks the cheapest forward.
FORWARD_ONLY = ConvPolicy("native")


class _Conv(tf.Module):
  """Folded SN conv (stride 1, SAME): kernel W / sigma [k,k,Cin,Cout], optional bias."""

  def __init__(self, layer, name):
    super().__init__(name=name)
    kernel, bias = fold_spectral_norm(layer)
    self.kernel = tf.Variable(kernel, trainable=False, name="kernel")
    self.bias = None if bias is None else tf.Variable(bias, trainable=False, name="bias")

  def __call__(self, x, upsample=False):
    # Forward only: "native" gradients, so upsample + conv takes the sub-pixel form.
    return sn_lib.conv(x, self.kernel, self.bias, FORWARD_ONLY, upsample)


def _constants(module: tf.Module, layer, names) -> None:
  """Copies layer.<name> for each name into a constant tf.Variable of module."""
  for name in names:
    setattr(module, name, tf.Variable(tf.convert_to_tensor(getattr(layer, name)),
                                      trainable=False, name=name))


class _ConditionalBatchNorm(tf.Module):
  """ConditionalBatchNorm in inference mode: gamma/beta tables, moving statistics."""

  def __init__(self, cbn, name):
    super().__init__(name=name)
    _constants(self, cbn, ("gamma", "beta", "moving_mean", "moving_var"))
    self.epsilon = float(cbn.epsilon)

  def __call__(self, x, classes):
    return bn_lib.conditional_batch_norm(x, classes, self.gamma, self.beta, self.moving_mean,
                                         self.moving_var, self.epsilon)


class _OutputBatchNorm(tf.Module):
  """OutputBatchNorm (`g_bn`) in inference mode."""

  def __init__(self, bn, name):
    super().__init__(name=name)
    _constants(self, bn, ("gamma", "beta", "moving_mean", "moving_variance"))
    self.epsilon = float(bn.epsilon)

  def __call__(self, x):
    return bn_lib.output_batch_norm(x, self.gamma, self.beta, self.moving_mean,
                                    self.moving_variance, self.epsilon)


class _Block(tf.Module):
  """Folded GeneratorBlock, a generator stage: (x, classes) -> (`up_block`, None)."""

  def __init__(self, block, name):
    super().__init__(name=name)
    self.cbn_0 = _ConditionalBatchNorm(block.cbn_0, "cbn_0")
    self.snconv1 = _Conv(block.snconv1, "snconv1")
    self.cbn_1 = _ConditionalBatchNorm(block.cbn_1, "cbn_1")
    self.snconv2 = _Conv(block.snconv2, "snconv2")
    self.snconv3 = _Conv(block.snconv3, "snconv3")

  def __call__(self, x, classes):
    out = generator_lib.up_block(x, lambda t: self.cbn_0(t, classes),
                                 lambda t: self.snconv1(t, upsample=True),
                                 lambda t: self.cbn_1(t, classes), self.snconv2, self.snconv3)
    return out, None


class _Attention(tf.Module):
  """Folded SelfAttention, a generator stage: (x, classes) -> `self_attention`."""

  def __init__(self, layer: attention_lib.SelfAttention, name):
    super().__init__(name=name)
    self.variant = layer.variant
    self.query = _Conv(layer.query_conv, "query")
    self.key = _Conv(layer.key_conv, "key")
    self.value = _Conv(layer.value_conv, "value")
    self.out = _Conv(layer.out_conv, "out")
    self.gamma = tf.Variable(tf.convert_to_tensor(layer.gamma), trainable=False, name="gamma")

  def __call__(self, x, classes):
    del classes  # attention is not class-conditional
    return attention_lib.self_attention(x, self.query, self.key, self.value, self.out,
                                        self.gamma, self.variant)


class ServingGenerator(tf.Module):
  """The generator in inference mode, folded: tf.Variables and TF ops only.

  Built from a (float32 or mixed) Keras `Generator`; nothing of it is kept,
  so a SavedModel of this module loads without Keras or sagan_tf. The
  forward pass is the generator's own (`models.generator.generator_forward`)
  on the folded constants.
  Attributes `num_classes`, `z_dim`, `image_size` are plain ints.
  """

  def __init__(self, generator, name: str = "sagan_generator"):
    super().__init__(name=name)
    cfg = generator.cfg
    self.num_classes = int(cfg.num_classes)
    self.z_dim = int(cfg.z_dim)
    self.image_size = int(cfg.image_size)
    self.base_channels = int(generator.base_channels)
    matrix, bias = fold_spectral_norm(generator.g_snh0)
    self.dense_matrix = tf.Variable(matrix, trainable=False, name="g_snh0_matrix")
    self.dense_bias = tf.Variable(bias, trainable=False, name="g_snh0_bias")
    stages = []
    for stage in generator.stages:
      if isinstance(stage, attention_lib.SelfAttention):
        stages.append(_Attention(stage, stage.tf1_scope))
      elif isinstance(stage, generator_lib.GeneratorBlock):
        stages.append(_Block(stage, stage.name))
      else:
        raise TypeError(f"cannot fold generator stage {stage.name} of type "
                        f"{type(stage).__name__}; extend sagan_tf/export.py")
    self.stages = stages
    self.g_bn = _OutputBatchNorm(generator.g_bn, "g_bn")
    self.last_conv = _Conv(generator.g_snconv_last, "g_snconv_last")

    z_spec = tf.TensorSpec([None, self.z_dim], tf.float32, name="z")
    labels_spec = tf.TensorSpec([None], tf.int32, name="labels")
    self.serve = tf.function(self._serve, input_signature=[z_spec, labels_spec])
    self.sample = tf.function(self._sample, input_signature=[
        labels_spec, tf.TensorSpec([], tf.int64, name="seed"),
        tf.TensorSpec([], tf.float32, name="truncation")])

  def check_labels(self, labels: tf.Tensor) -> tf.Tensor:
    """labels (int32) after an assertion that they are in [0, num_classes)."""
    labels = tf.cast(labels, tf.int32)
    ok = tf.reduce_all(tf.logical_and(labels >= 0, labels < self.num_classes))
    check = tf.debugging.Assert(ok, [
        f"labels must be class ids in [0, {self.num_classes - 1}] (this model has "
        f"{self.num_classes} classes); got", labels], summarize=16)
    with tf.control_dependencies([check]):
      return tf.identity(labels)

  def images(self, z: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """float32 images [N, S, S, 3] in [-1, 1] for z [N, z_dim] and labels [N]."""
    z = tf.convert_to_tensor(z, tf.float32)
    labels = self.check_labels(labels)
    same = tf.debugging.assert_equal(
        tf.shape(z)[0], tf.shape(labels)[0],
        message="z and labels must have the same batch size")
    with tf.control_dependencies([same]):
      z = tf.identity(z)
    images, _ = generator_lib.generator_forward(
        z, labels, lambda t: sn_lib.dense(t, self.dense_matrix, self.dense_bias),
        [(stage.name, stage) for stage in self.stages], self.g_bn, self.last_conv,
        self.base_channels)
    return images

  def _outputs(self, z, labels) -> Dict[str, tf.Tensor]:
    images = self.images(z, labels)
    return {"images": to_uint8(images), "images_float": images}

  def _serve(self, z, labels):
    return self._outputs(z, labels)

  def _sample(self, labels, seed, truncation):
    z = sample_latents(tf.shape(labels)[0], self.z_dim, seed, truncation)
    return self._outputs(z, labels)


# ------------------------------------------------------------ writing
def _reference_check(generator, path: str) -> float:
  """Max |SavedModel - generator| on a few fixed inputs; RuntimeError above tolerance.

  Tolerance 1e-4 for a float32 generator; a bfloat16 one (the served model
  is float32) is only checked to 0.1.
  """
  cfg = generator.cfg
  tolerance = 1e-4 if generator.compute_dtype == "float32" else 0.1
  n = min(4, cfg.num_classes)
  z = tf.random.stateless_normal([n, cfg.z_dim], seed=[1, 2])
  labels = tf.range(n, dtype=tf.int32) * max(1, cfg.num_classes // n)
  want = generator(z, labels, training=False, update_u=False)
  got = tf.saved_model.load(path).signatures["serving_default"](z=z, labels=labels)
  diff = float(tf.reduce_max(tf.abs(got["images_float"] - tf.cast(want, tf.float32))))
  if not diff <= tolerance:
    raise RuntimeError(f"the exported model at {path} differs from the generator by "
                       f"{diff:g} (> {tolerance:g}); this is a bug in sagan_tf/export.py")
  return diff


# ------------------------------------------------------------ publishing
SAVED_MODEL_FILE = "saved_model.pb"
STAGING_PREFIX = ".staging-"  # not a number: TF Serving never takes it for a version


def renames_directories_atomically(path: str) -> bool:
  """True for a local path (POSIX rename of a directory is atomic).

  Object stores (gs://, s3://, ...) have no directories: tf.io.gfile.rename
  copies object by object, so a version folder would appear half written.
  """
  return "://" not in path or path.startswith("file://")


def _files_under(directory: str):
  """Relative paths of every file under `directory` (tf.io.gfile.walk)."""
  out = []
  for parent, _, files in tf.io.gfile.walk(directory):
    rel = os.path.relpath(parent, directory) if parent != directory else ""
    out += [os.path.join(rel, f) if rel else f for f in files]
  return out


def publish_version(staging: str, final: str, atomic_rename: Optional[bool] = None) -> None:
  """Makes the complete SavedModel in `staging` appear as the version folder `final`.

  TF Serving polls the export base, takes every child whose name is an
  integer as a version and loads the highest; the SavedModel loader needs
  saved_model.pb to recognise the folder as a model. So:
  * local (atomic directory rename): one rename; the folder appears complete;
  * object stores: every object is copied to `final` with saved_model.pb
    copied last, so when saved_model.pb is there, every other file already
    is (a poll in between finds no SavedModel, and TF Serving retries the
    load); then the staging copy is deleted.
  An existing `final` is replaced: locally moved aside in one rename; on
  object stores its saved_model.pb is deleted first, so it stops being a
  model before its other files go.
  """
  if atomic_rename is None:
    atomic_rename = renames_directories_atomically(final)
  if tf.io.gfile.exists(final):
    logging.warning("Replacing the existing export %s.", final)
    if atomic_rename:  # move the old version aside in one step, delete it after
      old = f"{staging}-replaced"
      tf.io.gfile.rename(final, old)
      tf.io.gfile.rename(staging, final)
      tf.io.gfile.rmtree(old)
      return
    old_pb = os.path.join(final, SAVED_MODEL_FILE)
    if tf.io.gfile.exists(old_pb):
      tf.io.gfile.remove(old_pb)
    tf.io.gfile.rmtree(final)
  if atomic_rename:
    tf.io.gfile.rename(staging, final)
    return
  files = sorted(_files_under(staging), key=lambda f: f == SAVED_MODEL_FILE)
  for rel in files:
    target = os.path.join(final, rel)
    tf.io.gfile.makedirs(os.path.dirname(target))
    tf.io.gfile.copy(os.path.join(staging, rel), target, overwrite=True)
  tf.io.gfile.rmtree(staging)


def export_generator(generator, cfg, export_root: str, version: int,
                     info: Optional[dict] = None, verify: bool = True,
                     atomic_rename: Optional[bool] = None) -> str:
  """Writes `export_root/<version>/` (a SavedModel of ServingGenerator); returns its path.

  The SavedModel is written and verified in `export_root/.staging-<version>-<ms>/`
  (a name TF Serving never loads) and then published by `publish_version`,
  so a TF Serving polling export_root never loads half a model. An existing
  `<version>` folder is replaced (with a warning).

  Args:
    generator: a built Keras Generator with the weights to export.
    cfg: the run's Config (recorded in assets.extra/export_info.json).
    export_root: folder of version folders (local or gs://).
    version: the version number (the training step).
    info: extra JSON-able fields for export_info.json.
    verify: reload the SavedModel and compare it with the generator.
    atomic_rename: publish by one directory rename (default: for local paths).
  """
  version = int(version)
  if version < 0:
    raise ValueError(f"version must be >= 0, got {version}")
  module = ServingGenerator(generator)
  final = os.path.join(export_root, str(version))
  tmp = os.path.join(export_root, f"{STAGING_PREFIX}{version}-{int(time.time() * 1000)}")
  kept = ("the versions already in it are untouched and no partial version is left"
          if tf.io.gfile.isdir(export_root) else "nothing was published")

  def remove_staging():
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)

  with storage_errors(export_root, kept, "re-run the same command (or pass another "
                      "--export_dir)", cleanup=remove_staging):
    _write_version(module, generator, cfg, tmp, final, version, info, verify, atomic_rename)
  return final


def _write_version(module, generator, cfg, tmp: str, final: str, version: int,
                   info: Optional[dict], verify: bool, atomic_rename: Optional[bool]) -> None:
  """export_generator's writes: the SavedModel in `tmp`, checked, published as `final`."""
  tf.io.gfile.makedirs(os.path.dirname(tmp))
  signatures = {
      "serving_default": module.serve.get_concrete_function(),
      "sample": module.sample.get_concrete_function(),
  }
  tf.saved_model.save(module, tmp, signatures=signatures)
  meta = {
      "version": version,
      "num_classes": module.num_classes,
      "z_dim": module.z_dim,
      "image_size": module.image_size,
      "attention_variant": cfg.attention_variant,
      "g_attention_res": list(cfg.g_attention_res),
      "signatures": {
          "serving_default": "z float32 [N, z_dim], labels int32 [N] -> images uint8 "
                             "[N,S,S,3], images_float float32 [N,S,S,3] in [-1,1]",
          "sample": "labels int32 [N], seed int64 [], truncation float32 [] -> same",
      },
      "truncation": "1 = z ~ N(0,1); 0<t<1: z = t * (N(0,1) truncated to [-2,2])",
  }
  meta.update(info or {})
  extra = os.path.join(tmp, "assets.extra")
  tf.io.gfile.makedirs(extra)
  with tf.io.gfile.GFile(os.path.join(extra, INFO_FILE), "w") as f:
    f.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
  if verify:
    try:
      diff = _reference_check(generator, tmp)
    except Exception:
      tf.io.gfile.rmtree(tmp)  # never leave a model that failed the check
      raise
    logging.info("Exported model matches the generator (max abs difference %.3g).", diff)
  publish_version(tmp, final, atomic_rename)


def export(cfg, typed=None) -> int:
  """`./run.sh export`: the run's generator -> export_dir/<step>/ SavedModel."""
  run_cfg, generator, step, source = run_dir.restore_for_mode(cfg, "export", typed)
  export_root = run_dir.export_root(run_cfg)
  path = export_generator(generator, run_cfg, export_root, step,
                          info={"step": step, **source})
  logging.info("Wrote the SavedModel %s (signatures: %s). Serve it with: docker run -p "
               "8501:8501 -v %s:/models/sagan -e MODEL_NAME=sagan tensorflow/serving",
               path, ", ".join(SIGNATURES), os.path.abspath(export_root)
               if "://" not in export_root else export_root)
  return 0
