"""The one data interface: images and labels in batches, from any source.

`--dataset` chooses the source:
  tfrecords:GLOB     records in the original SAGAN format (SPEC.md, "Data");
                     a folder instead of the glob means its *.tfrecords
  tfds:NAME[:SPLIT]  a prepared TFDS image-classification dataset (no download)
  shapes             the embedded procedural dataset (sagan_tf/data/shapes.py)

Every source yields (images float32 [B, S, S, 3] in [-1, 1], labels int32 [B]).
Training streams are shuffled, repeated and batched with drop_remainder (static
shapes for XLA / TPU); evaluation streams are one ordered pass.

Use under a distribution strategy:
  strategy.distribute_datasets_from_function(lambda ctx: make_dataset(cfg, ctx))
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from absl import logging
import tensorflow as tf

from sagan_tf.data import shapes
from sagan_tf.data import tfds_source
from sagan_tf.data import tfrecords_source
from sagan_tf.errors import UserError

SCHEMES = ("tfrecords:GLOB", "tfds:NAME[:SPLIT]", "shapes")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A parsed --dataset value: kind in {tfrecords, tfds, shapes} and its argument."""
  kind: str
  arg: str = ""  # glob or folder for tfrecords, NAME for tfds
  split: Optional[str] = None  # tfds only: the split named in the spec


def parse_dataset_spec(value: str) -> DatasetSpec:
  """Parses --dataset; UserError listing the choices when it is not one of them."""
  value = (value or "").strip()
  scheme, sep, rest = value.partition(":")
  if value == "shapes":
    return DatasetSpec("shapes")
  if sep and scheme == "tfrecords" and rest:
    return DatasetSpec("tfrecords", rest)
  if sep and scheme == "tfds" and rest:
    name, split = tfds_source.parse_name(rest)
    return DatasetSpec("tfds", name, split)
  raise UserError(f"--dataset={value!r} is not a dataset this program reads; use "
                  f"one of {', '.join(SCHEMES)}.")


def _batch_size(global_batch: int, input_context, cfg) -> int:
  if input_context is None:
    return global_batch
  replicas = input_context.num_replicas_in_sync
  # cfg.per_replica_batch's message names --batch_size; reuse it for both.
  return dataclasses.replace(cfg, batch_size=global_batch).per_replica_batch(replicas)


def _eval_split(cfg, split: Optional[str]) -> str:
  return split if split else (cfg.eval_split or "")


def _tfrecords_pattern(spec: DatasetSpec, split: str) -> str:
  """`train` (or empty) -> the --dataset glob; anything else is a glob itself."""
  return spec.arg if split in ("", "train") else split


def _tfds_split(spec: DatasetSpec, split: str) -> str:
  """`train` (or empty) -> the split in --dataset (default 'train'); else `split`."""
  if split in ("", "train"):
    return spec.split or tfds_source.DEFAULT_SPLIT
  return split


def _shapes_classes(cfg) -> int:
  if cfg.num_classes > shapes.NUM_CLASSES:
    logging.warning("--num_classes=%d but the shapes dataset has %d classes: "
                    "classes %d.. never occur in the data.", cfg.num_classes,
                    shapes.NUM_CLASSES, shapes.NUM_CLASSES)
    return shapes.NUM_CLASSES
  if cfg.num_classes < shapes.NUM_CLASSES:
    logging.info("shapes: using its first %d classes (--num_classes=%d).",
                 cfg.num_classes, cfg.num_classes)
  return cfg.num_classes


def make_dataset(cfg,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 *,
                 split: str = "train",
                 training: bool = True,
                 seed: Optional[int] = None) -> tf.data.Dataset:
  """(images float32 [B, S, S, 3] in [-1, 1], labels int32 [B]) batches.

  Args:
    cfg: the Config (dataset, image_size, num_classes, batch_size (global),
      eval_batch_size, shuffle_buffer, tfds_data_dir, seed).
    input_context: from distribute_datasets_from_function; sets the
      per-replica batch (global / replicas) and this pipeline's shard
      (files for tfrecords, `Dataset.shard` for tfds and shapes).
    split: "train", or an evaluation split: a TFDS split for tfds, a glob or
      folder of record files for tfrecords, "test" / "heldout" for shapes.
    training: True -> infinite, shuffled, batch cfg.batch_size (per replica),
      drop_remainder=True (static batch). False -> one ordered pass,
      batch cfg.eval_batch_size, the last batch may be smaller.
    seed: shuffle seed (default cfg.seed). The shapes pool itself is always
      drawn from cfg.seed, so every pipeline shards the same pool.
  Raises:
    UserError: unknown --dataset, missing or unprepared data, image size or
      class count that does not match the data.
  """
  spec = parse_dataset_spec(cfg.dataset)
  seed = cfg.seed if seed is None else int(seed)
  batch = _batch_size(cfg.batch_size if training else cfg.eval_batch_size,
                      input_context, cfg)
  if spec.kind == "tfrecords":
    return tfrecords_source.make_tfrecords_dataset(
        _tfrecords_pattern(spec, split), image_size=cfg.image_size,
        num_classes=cfg.num_classes, batch_size=batch, training=training,
        shuffle_buffer=cfg.shuffle_buffer, seed=seed, input_context=input_context)
  if spec.kind == "tfds":
    return tfds_source.make_tfds_dataset(
        spec.arg, _tfds_split(spec, split), data_dir=cfg.tfds_data_dir,
        image_size=cfg.image_size, num_classes_expected=cfg.num_classes,
        batch_size=batch, training=training, shuffle_buffer=cfg.shuffle_buffer,
        seed=seed, input_context=input_context)
  shapes_split = split or "train"
  return shapes.make_shapes_dataset(
      image_size=cfg.image_size, num_classes=_shapes_classes(cfg),
      batch_size=batch, training=training, seed=cfg.seed, shuffle_seed=seed,
      split=shapes_split, input_context=input_context,
      num_images=None if shapes_split == "train" else _eval_pool_size(cfg))


def _eval_pool_size(cfg) -> int:
  return max(cfg.num_samples, cfg.eval_batch_size)


def real_images_for_eval(cfg, num_images: int, *, split: Optional[str] = None,
                         part: int = 0) -> tf.data.Dataset:
  """Up to `num_images` real images for evaluation, in batches of cfg.eval_batch_size.

  One ordered pass; the last batch may be smaller. Which images:
    shapes: a fresh pool of the split (default "test", never the training
      pool), exactly num_images.
    tfrecords / tfds: the first num_images of the split (default: the
      training data, as the original evaluated against ImageNet train);
      fewer if the split is smaller.
  `part` = k gives images k*num_images .. (k+1)*num_images - 1 of the
  stream, so part=0 and part=1 are two disjoint real sets.

  Args:
    split: overrides cfg.eval_split (see make_dataset for its meaning).
  Returns:
    A finite dataset of (images float32 [b, S, S, 3] in [-1, 1], labels int32 [b]).
  """
  spec = parse_dataset_spec(cfg.dataset)
  chosen = _eval_split(cfg, split)
  batch = cfg.eval_batch_size
  if spec.kind == "shapes":
    return shapes.make_shapes_dataset(
        image_size=cfg.image_size, num_classes=_shapes_classes(cfg),
        batch_size=batch, training=False, seed=cfg.seed,
        split=chosen or "test", part=part, num_images=num_images)
  skip = part * num_images
  if spec.kind == "tfrecords":
    return tfrecords_source.make_tfrecords_dataset(
        _tfrecords_pattern(spec, chosen), image_size=cfg.image_size,
        num_classes=cfg.num_classes, batch_size=batch, training=False,
        shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed, skip=skip,
        take=num_images)
  return tfds_source.make_tfds_dataset(
      spec.arg, _tfds_split(spec, chosen), data_dir=cfg.tfds_data_dir,
      image_size=cfg.image_size, num_classes_expected=cfg.num_classes,
      batch_size=batch, training=False, shuffle_buffer=cfg.shuffle_buffer,
      seed=cfg.seed, skip=skip, take=num_images)


def dataset_num_classes(cfg) -> Optional[int]:
  """Classes of the data, or None when only a full scan could tell.

  shapes: 10. tfds: the ClassLabel's num_classes. tfrecords: the lines of
  labels.txt beside the records (the converters write it), else None.
  """
  spec = parse_dataset_spec(cfg.dataset)
  if spec.kind == "shapes":
    return shapes.NUM_CLASSES
  if spec.kind == "tfds":
    return tfds_source.num_classes(spec.arg, cfg.tfds_data_dir)
  n, _ = tfrecords_source.labels_file_num_classes(spec.arg)
  return n


def translate_data_error(error: BaseException) -> Optional[UserError]:
  """A UserError for a data problem found while iterating, else None.

  The record checks run inside tf.data, so they surface as
  tf.errors.InvalidArgumentError when the training loop pulls a batch. A
  caller that wants the one-sentence message can do:
    except tf.errors.OpError as e:
      user_error = translate_data_error(e)
      if user_error: raise user_error from None
      raise
  """
  if not isinstance(error, tf.errors.OpError):
    return None
  message = error.message or ""
  if tfrecords_source.BAD_RECORD in message:
    first_line = message.split(tfrecords_source.BAD_RECORD, 1)[1].split("\n", 1)[0]
    return UserError(("Bad record:" + first_line).rstrip("] ").strip())
  if isinstance(error, tf.errors.DataLossError):
    return tfrecords_source.damaged_file_error(error)
  return None
