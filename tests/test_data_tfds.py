"""`tfds:NAME[:SPLIT]`: prepared TFDS datasets, offline (tfds.testing.mock_data)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

try:
  from tests import data_fixtures as fx
except ImportError:
  import data_fixtures as fx

from sagan_tf.data import pipeline, tfds_source
from sagan_tf.errors import UserError


@pytest.fixture
def mocked():
  # Random examples generated from the dataset's feature spec: no files, no network.
  with tfds.testing.mock_data(num_examples=24):
    yield


def test_cifar10_batches_are_resized_to_image_size_in_range(mocked, tmp_path):
  cfg = fx.tiny_config(dataset="tfds:cifar10", image_size=64,
                       tfds_data_dir=str(tmp_path))
  ds = pipeline.make_dataset(cfg)
  assert ds.element_spec[0].shape.as_list() == [8, 64, 64, 3]
  x, y = next(iter(ds))
  assert x.dtype == tf.float32 and y.dtype == tf.int32
  assert float(tf.reduce_min(x)) >= -1 and float(tf.reduce_max(x)) <= 1
  assert set(y.numpy().tolist()) <= set(range(10))
  assert pipeline.dataset_num_classes(cfg) == 10


def test_greyscale_dataset_comes_out_rgb(mocked, tmp_path):
  cfg = fx.tiny_config(dataset="tfds:mnist:test", tfds_data_dir=str(tmp_path))
  x, _ = next(iter(pipeline.make_dataset(cfg, training=False)))
  x = x.numpy()
  assert x.shape[1:] == (32, 32, 3)
  np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_more_classes_in_the_data_than_num_classes_is_a_user_error(mocked, tmp_path):
  cfg = fx.tiny_config(dataset="tfds:cifar100", num_classes=10,
                       tfds_data_dir=str(tmp_path))
  with pytest.raises(UserError, match=r"100 classes but --num_classes=10"):
    pipeline.make_dataset(cfg)


def test_unprepared_dataset_says_how_to_prepare_it(tmp_path):
  cfg = fx.tiny_config(dataset="tfds:mnist", tfds_data_dir=str(tmp_path))
  with pytest.raises(UserError, match=rf"not prepared in {tmp_path}.*tfds build mnist"):
    pipeline.make_dataset(cfg)


def test_unknown_tfds_name_is_a_user_error(tmp_path):
  cfg = fx.tiny_config(dataset="tfds:no_such_dataset_xyz", tfds_data_dir=str(tmp_path))
  with pytest.raises(UserError, match="no dataset named 'no_such_dataset_xyz'"):
    pipeline.make_dataset(cfg)


def test_pipelines_get_disjoint_shards_and_half_the_batch(mocked, tmp_path):
  cfg = fx.tiny_config(dataset="tfds:cifar10", eval_batch_size=4,
                       tfds_data_dir=str(tmp_path))
  seen = []
  for i in range(2):
    ctx = tf.distribute.InputContext(2, i, 2)
    ds = pipeline.make_dataset(cfg, ctx, training=False)
    xs = [x.numpy() for x, _ in ds]
    assert all(len(x) <= 2 for x in xs)
    seen.append({x.tobytes() for batch in xs for x in batch})
  assert len(seen[0]) == len(seen[1]) == 12 and not seen[0] & seen[1]


def test_center_crop_resize_keeps_the_middle_square():
  # A 4x8 image whose middle 4x4 square is white and sides black: resizing the
  # crop to 4x4 keeps exactly the white square.
  img = np.zeros((4, 8, 1), np.uint8)
  img[:, 2:6] = 255
  out = tfds_source.center_crop_resize(tf.constant(img), 4).numpy()
  assert out.shape == (4, 4, 3) and (out == 255).all()
