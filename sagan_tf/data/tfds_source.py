"""`--dataset=tfds:NAME[:SPLIT]`: a prepared TFDS image-classification dataset.

Never downloads: the builder only reads what is already in --tfds_data_dir
(`as_dataset`, never `download_and_prepare`). Images get the converters'
preprocessing (centre-crop the largest square, bilinear resize to
--image_size, grey -> RGB, alpha dropped), are rounded to uint8 like stored
records, then mapped to [-1, 1] with the original's `x * 2/255 - 1`.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

from absl import logging
import tensorflow as tf

from sagan_tf.data import memory
from sagan_tf.data import records
from sagan_tf.errors import UserError

DEFAULT_SPLIT = "train"
# Preprocessed splits up to this size are cached in memory after the first
# pass (CIFAR-10 at 32x32 is 150 MB), so later epochs skip decode and resize.
_CACHE_LIMIT_BYTES = 2 << 30


def parse_name(spec: str) -> Tuple[str, Optional[str]]:
  """'NAME[:SPLIT]' -> (NAME, SPLIT or None).

  NAME is a TFDS name, with an optional config or version after '/' (e.g.
  'imagenet_resized/32x32'); SPLIT is a TFDS split such as 'train' or
  'train[:90%]'.
  """
  name, _, split = spec.partition(":")
  if not name:
    raise UserError(f"--dataset=tfds:{spec} has no dataset name; use "
                    "tfds:NAME[:SPLIT], e.g. tfds:cifar10:train.")
  return name, (split or None)


def builder(name: str, data_dir: str):
  """The TFDS builder for `name` reading from `data_dir` (no network)."""
  import tensorflow_datasets as tfds  # heavy import, only when used
  try:
    return tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f"TFDS has no dataset named {name!r}; check the spelling "
                    "(tfds.list_builders() lists the names).") from None


def _prepare_hint(name: str, data_dir: str) -> str:
  where = data_dir or "~/tensorflow_datasets"
  return (f"prepare it once on a machine with internet access (`tfds build {name} "
          f"--data_dir={where}`) and copy that directory here, then pass "
          f"--tfds_data_dir={where}")


def feature_keys(info) -> Tuple[str, str]:
  """(image key, label key) of an image-classification dataset.

  Raises:
    UserError: the dataset has no image + ClassLabel pair.
  """
  import tensorflow_datasets as tfds
  keys = info.supervised_keys
  if isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str)
                                                          for k in keys):
    image_key, label_key = keys
  else:
    image_key, label_key = "image", "label"
  feats = info.features
  ok = (image_key in feats and label_key in feats
        and isinstance(feats[image_key], tfds.features.Image)
        and isinstance(feats[label_key], tfds.features.ClassLabel))
  if not ok:
    raise UserError(f"TFDS dataset {info.name!r} is not an image-classification "
                    "dataset (it needs an Image feature and a ClassLabel); pick "
                    "another dataset or convert it with your own script.")
  return image_key, label_key


def num_classes(name: str, data_dir: str) -> int:
  """Number of classes of the dataset's ClassLabel."""
  info = builder(name, data_dir).info
  _, label_key = feature_keys(info)
  return int(info.features[label_key].num_classes)


def check_split(b, split: str) -> None:
  """UserError if the builder knows its splits and `split` is not one of them."""
  if not isinstance(split, str):
    return  # a tfds.even_splits part of an already checked split
  known = dict(b.info.splits)  # empty when not prepared (or mocked)
  base = re.split(r"[\[+]", split, maxsplit=1)[0]
  if known and base not in known:
    raise UserError(f"TFDS dataset {b.info.name!r} has no split {split!r}; "
                    f"choose one of {', '.join(sorted(known))}.")


def num_files(b, split) -> int:
  """Files (file pieces) the split reads, or 0 when the builder does not know
  (not prepared, or mocked)."""
  try:
    return len(b.info.splits[split].file_instructions)
  except (KeyError, ValueError, TypeError, AttributeError):
    return 0


def open_split(name: str, data_dir: str, split: str, *, shuffle_files: bool,
               seed: Optional[int], decoders=None,
               input_context: Optional[tf.distribute.InputContext] = None):
  """(builder, tf.data.Dataset of feature dicts) for an already prepared split.

  With `input_context`, TFDS reads only this input pipeline's files
  (`tfds.ReadConfig(input_context=...)`): a host never opens the others.

  Raises:
    UserError: unknown dataset or split, or the data is not prepared.
  """
  import tensorflow_datasets as tfds
  b = builder(name, data_dir)
  check_split(b, split)
  try:
    ds = b.as_dataset(
        split=split, shuffle_files=shuffle_files, decoders=decoders,
        read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False,
                                    input_context=input_context))
  except AssertionError:
    # TFDS's "could not find data" (as_dataset never downloads).
    raise UserError(f"TFDS dataset {name!r} is not prepared in "
                    f"{data_dir or '~/tensorflow_datasets'}; "
                    f"{_prepare_hint(name, data_dir)}.") from None
  except ValueError as e:
    raise UserError(f"TFDS cannot read split {split!r} of {name!r} ({e}); "
                    "check the split name.") from None
  return b, ds


def center_crop_resize(image: tf.Tensor, size: int) -> tf.Tensor:
  """One image uint8 [h, w, c] (c = 1, 3 or 4) -> uint8 [size, size, 3].

  Centre-crops the largest square (offsets (h-s)//2, (w-s)//2, as the
  converters), resizes bilinearly with antialiasing (like PIL's BILINEAR when
  shrinking), rounds to uint8.
  """
  c = tf.shape(image)[2]
  image = tf.cond(c == 1, lambda: tf.tile(image, [1, 1, 3]),
                  lambda: image[:, :, :3])
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  s = tf.minimum(h, w)
  image = tf.image.crop_to_bounding_box(image, (h - s) // 2, (w - s) // 2, s, s)
  image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
  image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
  return tf.ensure_shape(image, [size, size, 3])


def make_tfds_dataset(
    name: str,
    split: str,
    *,
    data_dir: str,
    image_size: int,
    num_classes_expected: int,
    batch_size: int,
    training: bool,
    shuffle_buffer: int,
    seed: int,
    input_context: Optional[tf.distribute.InputContext] = None,
    skip: int = 0,
    take: int = -1,
) -> tf.data.Dataset:
  """Batches (images float32 [B, S, S, 3] in [-1, 1], labels int32 [B]).

  Same contract as make_tfrecords_dataset. With several input pipelines
  each reads its own files (tfds.ReadConfig(input_context=...)), so a host
  reads 1/num_input_pipelines of the data; a split with fewer files than
  pipelines is sharded by element instead (every pipeline reads every file).
  """
  pipelines = input_context.num_input_pipelines if input_context else 1
  by_file = by_element = False
  if pipelines > 1:
    files = num_files(builder(name, data_dir), split)
    by_file = files >= pipelines
    by_element = not by_file
    if by_element:
      logging.warning("TFDS %s split %r has %s files for %d input pipelines: sharding "
                      "by element (every pipeline reads every file).", name, split,
                      files or "an unknown number of", pipelines)
  # Sharding by element needs the same element order in every pipeline, so
  # files are shuffled only when each pipeline reads its own.
  b, ds = open_split(name, data_dir, split, shuffle_files=training and not by_element,
                     seed=seed, input_context=input_context if by_file else None)
  image_key, label_key = feature_keys(b.info)
  classes = int(b.info.features[label_key].num_classes)
  if classes > num_classes_expected:
    raise UserError(f"TFDS dataset {name!r} has {classes} classes but "
                    f"--num_classes={num_classes_expected}; set --num_classes="
                    f"{classes}.")
  if classes < num_classes_expected:
    logging.warning("TFDS dataset %r has %d classes, --num_classes=%d: classes "
                    "%d.. never occur in the data.", name, classes,
                    num_classes_expected, classes)

  if by_element:
    ds = ds.shard(pipelines, input_context.input_pipeline_id)
  if not training:
    if skip:
      ds = ds.skip(skip)
    if take >= 0:
      ds = ds.take(take)

  def prepare(example):
    return (center_crop_resize(example[image_key], image_size),
            tf.cast(example[label_key], tf.int32))

  ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=not training)
  if training:
    try:
      n = int(b.info.splits[split].num_examples)
    except (KeyError, ValueError, TypeError):
      n = 0  # unknown (sliced or mocked split): do not cache
    nbytes = image_size * image_size * 3
    if 0 < n * nbytes <= _CACHE_LIMIT_BYTES:
      ds = ds.cache()
    ds = ds.shuffle(
        memory.capped_shuffle_buffer(shuffle_buffer, nbytes + 64, "images"),
        seed=seed, reshuffle_each_iteration=True).repeat()
  ds = ds.batch(batch_size, drop_remainder=training)
  ds = ds.map(lambda x, y: (records.to_float(x), y),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
  return ds.prefetch(tf.data.AUTOTUNE)
