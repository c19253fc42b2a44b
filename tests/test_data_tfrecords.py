"""The original record format and the tfrecords:GLOB input pipeline."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

try:
  from tests import data_fixtures as fx
except ImportError:  # tests/ is not a package: pytest put it on sys.path
  import data_fixtures as fx

from sagan_tf.data import pipeline, records, tfrecords_source
from sagan_tf.errors import UserError


def _take(ds, n):
  return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


@pytest.fixture(scope="module")
def id_shards(tmp_path_factory):
  d = tmp_path_factory.mktemp("id_shards")
  fx.write_id_shards(str(d), num_shards=4, per_shard=12)
  return str(d)


def test_every_uint8_value_round_trips_through_decode_and_back():
  values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
  x = records.to_float(tf.constant(values))
  assert float(tf.reduce_min(x)) == -1.0 and float(tf.reduce_max(x)) == 1.0
  np.testing.assert_array_equal(records.to_uint8(x).numpy(), values)
  # The original's formula, in float32.
  np.testing.assert_allclose(x.numpy(), values.astype(np.float32) * (2 / 255) - 1,
                             atol=1e-7)


def test_decode_record_names_each_kind_of_bad_field():
  good = records.encode_example(np.zeros((4, 4, 3), np.uint8), 3)
  assert records.decode_record(good).label == 3
  cases = {
      fx.raw_example(b"\0" * 47, 1, 4, 4): "47 bytes",
      fx.raw_example(b"\0" * 16, 1, 4, 4, 1): "depth 1",
      fx.raw_example(b"\0" * 48, -2, 4, 4): "negative label",
      b"not a proto at all \xff\xff": "not a tf.train.Example",
  }
  for raw, phrase in cases.items():
    with pytest.raises(records.RecordError, match=phrase):
      records.decode_record(raw)


def test_training_batches_are_static_float_in_range_with_int32_labels(id_shards):
  cfg = fx.tiny_config(dataset=f"tfrecords:{id_shards}/train-*.tfrecords")
  ds = pipeline.make_dataset(cfg)
  assert ds.element_spec[0].shape.as_list() == [8, 32, 32, 3]
  assert ds.element_spec[0].dtype == tf.float32
  assert ds.element_spec[1].shape.as_list() == [8]
  assert ds.element_spec[1].dtype == tf.int32
  batches = _take(ds, 10)  # 80 images from 48 records: it repeats
  ids = [fx.image_id(img) for x, _ in batches for img in x]
  labels = np.concatenate([y for _, y in batches])
  assert set(ids) <= set(range(48)) and len(set(ids)) > 30
  np.testing.assert_array_equal(labels, np.array(ids) % 10)  # label stays with its image
  x = batches[0][0]
  assert x.min() >= -1.0 and x.max() <= 1.0


def test_stored_pixels_come_back_exactly(id_shards):
  cfg = fx.tiny_config(dataset=f"tfrecords:{id_shards}/train-*.tfrecords")
  for x, _ in _take(pipeline.make_dataset(cfg, training=False), 6):
    for img in x:
      u8 = records.to_uint8(img).numpy()
      np.testing.assert_array_equal(u8, fx.id_image(fx.image_id(img), 32))


def test_evaluation_pass_reads_every_record_once_then_stops(id_shards):
  cfg = fx.tiny_config(dataset=f"tfrecords:{id_shards}/train-*.tfrecords",
                       eval_batch_size=10)
  batches = list(pipeline.make_dataset(cfg, training=False))
  ids = [fx.image_id(img) for x, _ in batches for img in x.numpy()]
  assert sorted(ids) == list(range(48))
  assert [int(x.shape[0]) for x, _ in batches] == [10, 10, 10, 10, 8]


def test_two_real_sets_for_evaluation_are_disjoint(id_shards):
  cfg = fx.tiny_config(dataset=f"tfrecords:{id_shards}/train-*.tfrecords",
                       eval_batch_size=7)
  sets = []
  for part in (0, 1):
    ds = pipeline.real_images_for_eval(cfg, 20, part=part)
    sets.append({fx.image_id(img) for x, _ in ds for img in x.numpy()})
  assert len(sets[0]) == len(sets[1]) == 20 and not sets[0] & sets[1]


def test_input_pipelines_read_disjoint_files_with_half_the_global_batch(id_shards):
  cfg = fx.tiny_config(dataset=f"tfrecords:{id_shards}/train-*.tfrecords")
  seen = []
  for i in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i,
                                     num_replicas_in_sync=2)
    ds = pipeline.make_dataset(cfg, ctx)
    assert ds.element_spec[0].shape.as_list()[0] == 4
    seen.append({fx.image_id(img) for x, _ in _take(ds, 12) for img in x})
  assert seen[0] and seen[1] and not seen[0] & seen[1]
  assert len(seen[0] | seen[1]) > 36


def test_a_single_file_is_sharded_by_record_when_pipelines_outnumber_files(tmp_path):
  fx.write_id_shards(str(tmp_path), num_shards=1, per_shard=20)
  cfg = fx.tiny_config(dataset=f"tfrecords:{tmp_path}/*.tfrecords")
  seen = []
  for i in range(2):
    ctx = tf.distribute.InputContext(2, i, 2)
    # 30 batches of 4 from a shuffled, repeated shard of 10: every record shows.
    seen.append({fx.image_id(img) for x, _ in _take(pipeline.make_dataset(cfg, ctx), 30)
                 for img in x})
  assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 20


def test_image_size_mismatch_names_both_sizes(id_shards):
  cfg = fx.tiny_config(dataset=f"tfrecords:{id_shards}/train-*.tfrecords",
                       image_size=64)
  with pytest.raises(UserError, match=r"32x32 but --image_size=64"):
    pipeline.make_dataset(cfg)


def test_glob_without_files_is_a_user_error(tmp_path):
  cfg = fx.tiny_config(dataset=f"tfrecords:{tmp_path}/nothing-*.tfrecords")
  with pytest.raises(UserError, match="matches no files"):
    pipeline.make_dataset(cfg)


def test_unknown_dataset_scheme_lists_the_choices():
  with pytest.raises(UserError, match=r"tfrecords:GLOB, tfds:NAME\[:SPLIT\], shapes"):
    pipeline.make_dataset(fx.tiny_config(dataset="imagenet"))


def _first_error(cfg):
  with pytest.raises(tf.errors.OpError) as info:
    for _ in pipeline.make_dataset(cfg, training=False):
      pass
  user_error = pipeline.translate_data_error(info.value)
  assert isinstance(user_error, UserError)
  return str(user_error)


def test_label_beyond_num_classes_stops_naming_file_and_record(tmp_path):
  imgs = [fx.id_image(i, 32) for i in range(6)]
  path = fx.write_records(f"{tmp_path}/train-0.tfrecords", imgs, [0, 1, 2, 12, 3, 4])
  message = _first_error(fx.tiny_config(dataset=f"tfrecords:{path}"))
  assert f"record 3 of {path} has label 12" in message
  assert "--num_classes=10" in message


def test_wrong_length_image_raw_stops_naming_file_and_record(tmp_path):
  path = f"{tmp_path}/train-0.tfrecords"
  good = records.encode_example(fx.id_image(0, 32), 0)
  short = fx.raw_example(b"\0" * 100, 1, 32, 32)
  with tf.io.TFRecordWriter(path) as w:
    for r in (good, good, short, good):
      w.write(r)
  message = _first_error(fx.tiny_config(dataset=f"tfrecords:{path}"))
  assert f"record 2 of {path} has 100 bytes of image_raw" in message


def _three_shards(tmp_path, per_shard=5):
  """a/b/c-0.tfrecords of identical layout (records start at the same offsets)."""
  return [fx.write_records(f"{tmp_path}/{name}-0.tfrecords",
                           [fx.id_image(i, 32) for i in range(per_shard)], [0] * per_shard)
          for name in "abc"]


def test_a_truncated_shard_is_named_with_its_record(tmp_path):
  _, _, bad = _three_shards(tmp_path)
  data = open(bad, "rb").read()
  with open(bad, "wb") as f:
    f.write(data[:-1000])  # the last of 5 records loses its end
  message = _first_error(fx.tiny_config(dataset=f"tfrecords:{tmp_path}/*.tfrecords"))
  assert message.startswith(f"Record 4 of {bad} cannot be read (truncated record")
  assert "Delete it and run the converter again" in message


def test_a_corrupt_shard_is_named_with_its_record(tmp_path):
  _, bad, _ = _three_shards(tmp_path)
  data = bytearray(open(bad, "rb").read())
  record = len(data) // 5
  data[2 * record + 500] ^= 0xFF  # a pixel of record 2: its data checksum fails
  open(bad, "wb").write(bytes(data))
  message = _first_error(fx.tiny_config(dataset=f"tfrecords:{tmp_path}"))
  assert message.startswith(f"Record 2 of {bad} cannot be read (corrupted record")
  # The healthy files have records at the same offsets and are not blamed.
  for healthy in (f"{tmp_path}/a-0.tfrecords", f"{tmp_path}/c-0.tfrecords"):
    assert tfrecords_source.damaged_record_index(healthy, 2 * record + 12) is None
  assert tfrecords_source.damaged_record_index(bad, 2 * record + 12) == 2


def test_a_damaged_file_that_cannot_be_found_still_points_to_the_inspector(monkeypatch):
  monkeypatch.setattr(tfrecords_source, "_FILES_READ", set())
  error = tf.errors.DataLossError(None, None, "corrupted record at 77")
  message = str(tfrecords_source.damaged_file_error(error))
  assert "corrupted record at 77" in message and "inspect_tfrecords" in message


def test_a_folder_is_read_as_its_tfrecords_files(tmp_path):
  id_shards = str(tmp_path)
  fx.write_id_shards(id_shards, num_shards=4, per_shard=12)
  # Beside the shards: labels.txt and a manifest, which are not records.
  open(f"{id_shards}/labels.txt", "w").write("".join(f"{i}\tc{i}\n" for i in range(10)))
  open(f"{id_shards}/manifest-train.json", "w").write("{}")
  by_glob = fx.tiny_config(dataset=f"tfrecords:{id_shards}/train-*.tfrecords")
  by_folder = fx.tiny_config(dataset=f"tfrecords:{id_shards}/")
  assert tfrecords_source.list_files(f"{id_shards}/") == tfrecords_source.list_files(
      f"{id_shards}/train-*.tfrecords")
  ids = [sorted(fx.image_id(img) for x, _ in pipeline.make_dataset(cfg, training=False)
                for img in x.numpy()) for cfg in (by_glob, by_folder)]
  assert ids[0] == ids[1] == list(range(48))
  batch = next(iter(pipeline.make_dataset(by_folder)))  # training reads it too
  assert batch[0].shape == (8, 32, 32, 3)
  assert pipeline.dataset_num_classes(by_folder) == 10
  from tfrecords_tools import inspect_tfrecords
  assert inspect_tfrecords.resolve_input(id_shards)[0] == tfrecords_source.list_files(
      id_shards)


def test_a_folder_with_shards_of_several_splits_says_so(tmp_path, caplog):
  fx.write_records(f"{tmp_path}/train-00000-of-00001.tfrecords", [fx.id_image(0, 32)], [0])
  fx.write_records(f"{tmp_path}/test-00000-of-00001.tfrecords", [fx.id_image(1, 32)], [0])
  with caplog.at_level("WARNING"):
    files = tfrecords_source.list_files(str(tmp_path))
  assert len(files) == 2
  assert "2 kinds (test, train)" in caplog.text


def test_records_that_are_not_square_rgb_are_refused(tmp_path):
  path = fx.write_records(f"{tmp_path}/x.tfrecords", [np.zeros((32, 16, 3), np.uint8)], [0])
  with pytest.raises(UserError, match=r"32x16x3 images"):
    pipeline.make_dataset(fx.tiny_config(dataset=f"tfrecords:{path}"))


def test_leftover_tmp_files_are_not_read(tmp_path):
  fx.write_id_shards(str(tmp_path), num_shards=1, per_shard=4)
  with open(f"{tmp_path}/train-00001-of-00002.tfrecords.tmp", "wb") as f:
    f.write(b"partial")
  files = tfrecords_source.list_files(f"{tmp_path}/train-*")
  assert [os.path.basename(f) for f in files] == ["train-00000-of-00001.tfrecords"]


def test_num_classes_comes_from_labels_txt_beside_the_records(id_shards, tmp_path):
  cfg = fx.tiny_config(dataset=f"tfrecords:{id_shards}/train-*.tfrecords")
  assert pipeline.dataset_num_classes(cfg) is None
  fx.write_id_shards(str(tmp_path), 1, 2)
  (tmp_path / "labels.txt").write_text("0\ta\n1\tb\n2\tc\n")
  cfg = fx.tiny_config(dataset=f"tfrecords:{tmp_path}/train-*.tfrecords")
  assert pipeline.dataset_num_classes(cfg) == 3


def test_shuffle_buffer_is_capped_by_available_memory(monkeypatch):
  from sagan_tf.data import memory
  monkeypatch.setattr(memory, "available_memory_bytes", lambda: 4_000_000)
  assert memory.capped_shuffle_buffer(100_000, 1000) == 1000  # 25% of 4 MB
  assert memory.capped_shuffle_buffer(500, 1000) == 500
