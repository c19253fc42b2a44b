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


class SaganTinyFiles(tfds.core.GeneratorBasedBuilder):
  """40 distinct 8x8 images in 4 record files, written in tmp_path (no network)."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, supervised_keys=("image", "label"),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 3)),
            "label": tfds.features.ClassLabel(num_classes=3)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(40):
      yield i, {"image": np.full((8, 8, 3), 5 * i, np.uint8), "label": i % 3}


def test_each_input_pipeline_reads_its_own_half_of_the_files(tmp_path):
  # Per-host reading (tfds.ReadConfig(input_context=...)): each of 2 pipelines
  # opens 2 of the 4 files, and together they read every image once. The
  # file of each image comes from TFDS itself (add_tfds_id), not our code.
  b = SaganTinyFiles(data_dir=str(tmp_path))
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=4))
  file_of = {}
  for ex in b.as_dataset(split="train", read_config=tfds.ReadConfig(add_tfds_id=True)):
    file_of[int(ex["image"][0, 0, 0])] = ex["tfds_id"].numpy().decode().rsplit("__", 1)[0]
  assert len(set(file_of.values())) == 4 and len(file_of) == 40

  cfg = fx.tiny_config(dataset="tfds:sagan_tiny_files", image_size=8, num_classes=3,
                       eval_batch_size=4, tfds_data_dir=str(tmp_path))
  read = []
  for i in range(2):
    ds = pipeline.make_dataset(cfg, tf.distribute.InputContext(2, i, 2), training=False)
    # Constant images survive the resize and [-1, 1] mapping: recover the value.
    values = [int(round((float(x[0, 0, 0]) + 1) * 127.5)) for xs, _ in ds for x in xs]
    assert len(values) == len(set(values))
    read.append(set(values))
  assert not read[0] & read[1] and read[0] | read[1] == set(file_of)
  files = [{file_of[v] for v in values} for values in read]
  assert len(files[0]) == len(files[1]) == 2 and not files[0] & files[1]
