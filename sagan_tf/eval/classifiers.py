"""Feature networks for evaluation: Inception (TF-Hub module) and a shapes CNN.

Both return, for images float32 [N, H, W, 3] in [-1, 1], a dict with
`logits` [N, C] (classifier score / IS) and `features` [N, D] (Fréchet
distance); Inception also names its features `pool_3`, as TF-GAN does.

- `load_inception(path)`: a local copy of the TF-Hub module
  tensorflow/tfgan/eval/inception/1 (a SavedModel directory), loaded with
  `tensorflow_hub.load`, which never downloads for a local directory. Images
  are resized to 299x299 with TF 1.x bilinear sampling (the original's
  `tf.image.resize_bilinear`) before the network: TF-GAN's module does not
  resize, and feeding 128x128 unresized gives wrong numbers (tensorflow/gan #12).
- `build_fake_inception_savedmodel(path, seed)`: a tiny SavedModel with the
  module's interface, for tests.
- `shapes_classifier(...)`: a small CNN for the embedded `shapes` dataset,
  trained once on freshly generated shapes and cached as weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import time
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from sagan_tf.data import shapes
from sagan_tf.errors import UserError

INCEPTION_MODULE = "tensorflow/tfgan/eval/inception/1"
INCEPTION_SIZE = 299
INCEPTION_LOGITS = 1008
INCEPTION_POOL = 2048

_GET_INCEPTION = (
    f"download the TF-Hub module {INCEPTION_MODULE} (its compressed tarball, on a "
    "machine with internet), extract it to a directory holding saved_model.pb and "
    "variables/, and pass --inception_path=DIR")


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A feature network: images [-1, 1] [N, H, W, 3] -> {'logits', 'features'}.

  `name` identifies the network's weights (it keys cached real statistics);
  `test_accuracy` is the accuracy on held-out real images when known.
  """
  name: str
  num_classes: int
  feature_dim: int
  fn: Callable[[tf.Tensor], Dict[str, tf.Tensor]]
  test_accuracy: Optional[float] = None

  def __call__(self, images) -> Dict[str, tf.Tensor]:
    return self.fn(tf.convert_to_tensor(images, tf.float32))


# ------------------------------------------------------------------- Inception
def resize_for_inception(images: tf.Tensor) -> tf.Tensor:
  """Bilinear resize to 299x299 as TF 1.x `tf.image.resize_bilinear` did.

  No half-pixel centres and no corner alignment: the original's sampling grid
  (TF2's `tf.image.resize` uses half-pixel centres and differs by up to ~0.6
  on 32 -> 299).
  """
  return tf.raw_ops.ResizeBilinear(
      images=images, size=[INCEPTION_SIZE, INCEPTION_SIZE],
      align_corners=False, half_pixel_centers=False)


def _check_savedmodel_dir(path: str) -> None:
  if not path:
    raise UserError(f"IS and FID need the Inception network: {_GET_INCEPTION}.")
  if not tf.io.gfile.exists(path):
    raise UserError(f"--inception_path={path} does not exist; {_GET_INCEPTION}.")
  if not any(tf.io.gfile.exists(os.path.join(path, f))
             for f in ("saved_model.pb", "saved_model.pbtxt")):
    raise UserError(f"--inception_path={path} is not a SavedModel directory (no "
                    f"saved_model.pb in it); {_GET_INCEPTION}.")


def _fingerprint(path: str) -> str:
  """Short hash of saved_model.pb (size, first and last MiB): keys cached stats."""
  pb = os.path.join(path, "saved_model.pb")
  if not tf.io.gfile.exists(pb):
    pb = os.path.join(path, "saved_model.pbtxt")
  digest = hashlib.sha1()
  size = tf.io.gfile.stat(pb).length
  digest.update(str(size).encode())
  with tf.io.gfile.GFile(pb, "rb") as f:
    digest.update(f.read(1 << 20))
    if size > 2 << 20:
      f.seek(size - (1 << 20))
      digest.update(f.read())
  return digest.hexdigest()[:8]


def _module_callable(module, path: str) -> Callable[[tf.Tensor], Dict[str, tf.Tensor]]:
  """The module's forward function: `module(images)` as TF-GAN calls it, else a signature."""
  if callable(module):
    return module
  signatures = getattr(module, "signatures", {}) or {}
  if not signatures:
    raise UserError(f"--inception_path={path} holds a SavedModel that is neither "
                    f"callable nor has signatures; {_GET_INCEPTION}.")
  sig = signatures["default"] if "default" in signatures else next(iter(signatures.values()))
  input_names = list(sig.structured_input_signature[1])
  if len(input_names) != 1:
    raise UserError(f"--inception_path={path}: expected one image input, the "
                    f"signature takes {input_names}; {_GET_INCEPTION}.")
  return lambda images: sig(**{input_names[0]: images})


def load_inception(path: str, strategy=None) -> Classifier:
  """The TF-GAN Inception network from a local SavedModel directory.

  Returns a Classifier mapping images [N, H, W, 3] in [-1, 1] (any H, W) to
  {'logits': [N, 1008], 'pool_3': [N, 2048], 'features': same as pool_3}.
  Raises UserError naming what to download when `path` is empty, missing or
  not a SavedModel. With `strategy`, the module's variables are created
  under strategy.scope() (one copy per replica device).
  """
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  _check_savedmodel_dir(path)
  try:
    with strategy.scope() if strategy else contextlib.nullcontext():
      module = hub.load(path)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"--inception_path={path} could not be loaded as a SavedModel "
                    f"({type(e).__name__}: {str(e)[:200]}); {_GET_INCEPTION}.") from e
  forward = _module_callable(module, path)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def inception(images):
    outputs = forward(resize_for_inception(images))
    batch = tf.shape(images)[0]
    logits = tf.reshape(outputs["logits"], [batch, -1])
    pool_3 = tf.reshape(outputs["pool_3"], [batch, -1])
    return {"logits": logits, "pool_3": pool_3, "features": pool_3}

  try:
    probe = inception(tf.zeros([1, 8, 8, 3]))  # also checks the output keys
  except KeyError as e:
    keys = sorted(forward(tf.zeros([1, INCEPTION_SIZE, INCEPTION_SIZE, 3])))
    raise UserError(f"--inception_path={path} outputs {keys}, not 'logits' and "
                    f"'pool_3'; {_GET_INCEPTION}.") from e
  num_logits = int(probe["logits"].shape[-1])
  feature_dim = int(probe["pool_3"].shape[-1])
  if (num_logits, feature_dim) != (INCEPTION_LOGITS, INCEPTION_POOL):
    logging.warning("Inception module at %s gives logits %d / pool_3 %d, not the "
                    "TF-GAN module's %d / %d: numbers will not compare with the paper.",
                    path, num_logits, feature_dim, INCEPTION_LOGITS, INCEPTION_POOL)
  del module  # kept alive by `forward`
  return Classifier(name=f"inception_{_fingerprint(path)}", num_classes=num_logits,
                    feature_dim=feature_dim, fn=inception)


class _FakeInception(tf.Module):
  """Same interface as the TF-Hub module, ~4 MFLOPs per image: for tests only."""

  def __init__(self, seed: int):
    super().__init__()
    rng = np.random.RandomState(seed)
    cells = 23 * 23 * 3  # 299 / 13 = 23 cells per side
    self.proj_pool = tf.Variable(rng.normal(0, 1 / np.sqrt(cells), [cells, INCEPTION_POOL])
                                 .astype(np.float32), trainable=False)
    self.proj_logits = tf.Variable(
        rng.normal(0, 3 / np.sqrt(INCEPTION_POOL), [INCEPTION_POOL, INCEPTION_LOGITS])
        .astype(np.float32), trainable=False)

  @tf.function(input_signature=[
      tf.TensorSpec([None, INCEPTION_SIZE, INCEPTION_SIZE, 3], tf.float32)])
  def __call__(self, images):
    cells = tf.nn.avg_pool2d(images, 13, 13, "VALID")           # [N, 23, 23, 3]
    flat = tf.reshape(cells, [tf.shape(images)[0], -1])
    pool_3 = tf.nn.relu(tf.matmul(flat, self.proj_pool))          # >= 0 like pool_3
    return {"logits": tf.matmul(pool_3, self.proj_logits), "pool_3": pool_3}


def build_fake_inception_savedmodel(path: str, seed: int = 0) -> str:
  """Writes a tiny SavedModel with the Inception module's interface; returns path.

  Input images [N, 299, 299, 3] in [-1, 1] (other sizes are rejected, so a
  missing resize fails loudly); outputs `logits` [N, 1008] and `pool_3`
  [N, 2048] from 13x13 average pooling and fixed random projections.
  """
  tf.saved_model.save(_FakeInception(seed), path)
  return path


# ------------------------------------------------------------ shapes classifier
def _shapes_model(image_size: int, num_classes: int, seed: int):
  """A small CNN, ~3.5 MMAC per 32x32 image: logits and 128-d features.

  conv-BN-ReLU-maxpool x3, conv-BN-ReLU, flatten (keeps the layout that tells
  shapes apart), dense 128 + ReLU = features, dense = logits.
  """
  import keras  # pylint: disable=g-import-not-at-top
  init = lambda i: keras.initializers.GlorotUniform(seed=seed * 100 + i)  # noqa: E731
  f32 = dict(dtype="float32")  # whatever global policy a caller has set
  x = inputs = keras.Input([image_size, image_size, 3], dtype="float32")
  for i, width in enumerate((16, 32, 64, 64)):
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                            kernel_initializer=init(i), **f32)(x)
    x = keras.layers.BatchNormalization(**f32)(x)
    x = keras.layers.ReLU(**f32)(x)
    if i < 3:
      x = keras.layers.MaxPooling2D(2, **f32)(x)
  x = keras.layers.Flatten(**f32)(x)
  features = keras.layers.Dense(128, activation="relu", kernel_initializer=init(4),
                                name="features", **f32)(x)
  logits = keras.layers.Dense(num_classes, kernel_initializer=init(5),
                              name="logits", **f32)(features)
  return keras.Model(inputs, {"logits": logits, "features": features})


def _heldout_shapes(n: int, size: int, seed: int, part: int):
  """Shapes of the data's "heldout" split, which GAN training never reads."""
  return shapes.shapes_pool(n, size, seed, split="heldout", part=part)


def _to_unit_range(images_uint8: np.ndarray) -> np.ndarray:
  return images_uint8.astype(np.float32) * (2.0 / 255.0) - 1.0


def _write_bytes(path: str, data: bytes) -> None:
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(data)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def shapes_classifier(cache_dir: str, image_size: int = 32, seed: int = 0,
                      num_classes: int = 10, pool_fn=None, strategy=None,
                      save: bool = True,
                      train_images: int = 10_000, test_images: int = 2_000,
                      max_epochs: int = 8, target_accuracy: float = 0.99,
                      min_accuracy: float = 0.95) -> Classifier:
  """The shapes classifier, trained on first use and cached in `cache_dir`.

  Trained on the shapes "heldout" split (never the GAN's training images):
  part 0 to train, `max_epochs` at most, stopping once part 1 (validation)
  reaches `target_accuracy`; its accuracy on part 2 (test) is recorded and
  logged (a warning below `min_accuracy`: the metric would mean little).
  Weights live in `cache_dir/shapes_classifier_<size>_<seed>/`; weights trained
  on another `shapes.RENDERING_VERSION` than the current one are retrained.

  Args:
    pool_fn: (n, size, seed, part) -> (uint8 images [n, size, size, 3],
      int labels [n]); default: `sagan_tf.data.shapes.shapes_pool`, split "heldout".
    strategy: the trained weights are copied into a model built under
      strategy.scope() (training itself always runs on one device).
    save: cache freshly trained weights (False on non-chief workers).
  """
  pool_fn = pool_fn or _heldout_shapes
  model = _shapes_model(image_size, num_classes, seed)
  directory = os.path.join(cache_dir, f"shapes_classifier_{image_size}_{seed}")
  weights_path = os.path.join(directory, "weights.npz")
  meta_path = os.path.join(directory, "meta.json")
  meta = None
  if tf.io.gfile.exists(weights_path) and tf.io.gfile.exists(meta_path):
    try:
      with tf.io.gfile.GFile(weights_path, "rb") as f:
        data = f.read()
      with np.load(io.BytesIO(data)) as npz:
        model.set_weights([npz[f"w{i}"] for i in range(len(npz.files))])
      with tf.io.gfile.GFile(meta_path) as f:
        meta = json.load(f)
      if meta.get("rendering", 1) != shapes.RENDERING_VERSION:
        raise ValueError(f"trained on shapes rendering {meta.get('rendering', 1)}, "
                         f"the data is rendering {shapes.RENDERING_VERSION}")
      logging.info("Loaded the shapes classifier from %s (test accuracy %.4f).",
                   directory, meta["test_accuracy"])
    except (ValueError, KeyError, OSError) as e:  # other architecture, damaged file
      logging.warning("Cannot use the shapes classifier in %s (%s); retraining.",
                      directory, e)
      model, meta = _shapes_model(image_size, num_classes, seed), None
  if meta is None:
    meta = _train_shapes_classifier(model, pool_fn, image_size, seed, num_classes,
                                    train_images, test_images, max_epochs,
                                    target_accuracy)
    buf = io.BytesIO()
    np.savez(buf, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    data = buf.getvalue()
    if save:
      tf.io.gfile.makedirs(directory)
      _write_bytes(weights_path, data)
      _write_bytes(meta_path, json.dumps(meta, indent=1).encode())
  if meta["test_accuracy"] < min_accuracy:
    logging.warning("The shapes classifier reaches only %.3f on held-out shapes "
                    "(< %.2f): its FCD / classifier score mean little. Delete %s "
                    "to retrain.", meta["test_accuracy"], min_accuracy, directory)

  if strategy is not None:
    with strategy.scope():
      replicated = _shapes_model(image_size, num_classes, seed)
    replicated.set_weights(model.get_weights())
    model = replicated

  @tf.function  # traced per input shape: a handful (eval batch, remainder)
  def classify(images):
    if images.shape[1] != image_size or images.shape[2] != image_size:
      images = tf.image.resize(images, [image_size, image_size])
    out = model(images, training=False)
    return {"logits": out["logits"], "features": out["features"]}

  fingerprint = hashlib.sha1(data).hexdigest()[:8]
  return Classifier(name=f"shapes{image_size}_s{seed}_{fingerprint}",
                    num_classes=num_classes, feature_dim=128, fn=classify,
                    test_accuracy=float(meta["test_accuracy"]))


def _accuracy(model, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
  correct = 0
  for i in range(0, len(images), batch):
    logits = model(images[i:i + batch], training=False)["logits"]
    correct += int(np.sum(np.argmax(logits.numpy(), axis=1) == labels[i:i + batch]))
  return correct / len(images)


_BATCH = 64


def _train_shapes_classifier(model, pool_fn, image_size, seed, num_classes,
                             train_images, test_images, max_epochs, target_accuracy):
  """Adam (cosine-decayed from 3e-3 over max_epochs) on cross-entropy.

  Returns the metadata saved next to the weights.
  """
  import keras  # pylint: disable=g-import-not-at-top
  start = time.time()
  x_train, y_train = pool_fn(train_images, image_size, seed, 0)
  x_val, y_val = pool_fn(test_images // 2, image_size, seed, 1)
  x_test, y_test = pool_fn(test_images, image_size, seed, 2)
  x_train, x_val, x_test = map(_to_unit_range, (x_train, x_val, x_test))
  y_train, y_val, y_test = (np.asarray(y, np.int64) for y in (y_train, y_val, y_test))
  steps = max(1, max_epochs * (len(x_train) // _BATCH))
  lr = keras.optimizers.schedules.CosineDecay(3e-3, steps)
  # jit_compile=False: Keras' "auto" picks XLA where it can, and TensorFlow's
  # TPU build has no XLA CPU backend ("no registered transfer manager for
  # platform Host"); this small network needs none.
  model.compile(optimizer=keras.optimizers.Adam(lr),
                loss={"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                jit_compile=False)
  rng = np.random.RandomState(seed)
  val_accuracy = 0.0
  epochs = 0
  for epochs in range(1, max_epochs + 1):
    order = rng.permutation(len(x_train))
    model.fit(x_train[order], {"logits": y_train[order]}, batch_size=_BATCH, epochs=1,
              shuffle=False, verbose=0)
    val_accuracy = _accuracy(model, x_val, y_val)
    logging.info("Shapes classifier epoch %d: validation accuracy %.4f.", epochs,
                 val_accuracy)
    if val_accuracy >= target_accuracy:
      break
  test_accuracy = _accuracy(model, x_test, y_test)
  logging.info("Shapes classifier trained in %.1f s (%d epochs): held-out test "
               "accuracy %.4f.", time.time() - start, epochs, test_accuracy)
  return {"image_size": image_size, "seed": seed, "num_classes": num_classes,
          "rendering": shapes.RENDERING_VERSION, "train_images": train_images,
          "epochs": epochs, "val_accuracy": val_accuracy, "test_accuracy": test_accuracy,
          "test_images": test_images}
