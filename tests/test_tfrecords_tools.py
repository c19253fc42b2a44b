"""Converters and inspector of the original record format (tfrecords_tools)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

try:
  from tests import data_fixtures as fx
except ImportError:
  import data_fixtures as fx

from sagan_tf.data import pipeline, records
from sagan_tf.errors import UserError
from tfrecords_tools import (convert_common, folder_to_tfrecords, imagenet_to_tfrecords,
                             inspect_tfrecords, preprocess, tfds_to_tfrecords)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read_all(pattern):
  out = {}
  for path in sorted(glob.glob(pattern)):
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
      rec = records.decode_record(raw)
      out[rec.image.tobytes()] = rec
  return list(out.values())


# ---------------------------------------------------------------- preprocess
def test_center_crop_box_takes_the_middle_of_the_long_side():
  assert preprocess.center_crop_box(7, 5) == (1, 0, 6, 5)
  assert preprocess.center_crop_box(4, 9) == (0, 2, 4, 6)
  assert preprocess.center_crop_box(6, 6) == (0, 0, 6, 6)


def test_crop_without_resize_is_the_exact_centre_square():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
  np.testing.assert_array_equal(preprocess.preprocess_array(a, 40), a[:, 4:44])
  b = rng.integers(0, 256, (45, 30, 3), dtype=np.uint8)  # odd margin: 7 above, 8 below
  np.testing.assert_array_equal(preprocess.preprocess_array(b, 30), b[7:37])


def test_png_preprocessing_matches_an_independent_crop_then_bilinear_resize(tmp_path):
  rng = np.random.default_rng(1)
  a = rng.integers(0, 256, (61, 90, 3), dtype=np.uint8)
  path = fx.save(a, f"{tmp_path}/x.png", "PNG")
  side = 61
  left = (90 - side) // 2
  reference = np.asarray(Image.fromarray(a[:, left:left + side]).resize(
      (32, 32), Image.BILINEAR))
  np.testing.assert_array_equal(preprocess.load_image(path, 32), reference)


def test_jpeg_draft_decoding_keeps_crop_and_colours_of_a_full_decode(tmp_path):
  # Smooth content (detail ~11 output pixels): a shifted crop box or a colour
  # conversion error would differ by tens of levels; the two reduction
  # filters differ by ~2.
  rng = np.random.default_rng(2)
  small = rng.integers(0, 256, (11, 15, 3), dtype=np.uint8)
  photo = np.asarray(Image.fromarray(small).resize((500, 375), Image.BICUBIC))
  path = fx.save(photo, f"{tmp_path}/x.jpg", "JPEG")
  fast = preprocess.load_image(path, 128, draft=True).astype(int)
  full = preprocess.load_image(path, 128, draft=False).astype(int)
  with Image.open(path) as im:
    im.draft("RGB", (128, 128))
    assert im.size == (250, 188)  # the draft path was really taken
  assert np.abs(fast - full).mean() < 3.0


def test_awkward_formats_all_become_rgb(tmp_path):
  tree = fx.make_class_tree(str(tmp_path))
  for path, _ in tree["good"]:
    out = preprocess.load_image(path, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8, path
  grey = preprocess.load_image(f"{tmp_path}/a_cats/grey.JPEG", 16)
  np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
  grey16 = preprocess.load_image(f"{tmp_path}/b_dogs/grey16.png", 16)
  assert grey16.max() > 100  # scaled from 16 bits, not clipped to 255 everywhere
  assert grey16.min() < 250


# --------------------------------------------------------------- conversion
@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  root = tmp_path_factory.mktemp("tree")
  tree = fx.make_class_tree(str(root / "images"))
  out = str(root / "records")
  report = folder_to_tfrecords.convert_folder(str(root / "images"), out, image_size=32,
                                              num_shards=3, log_every_secs=0)
  return tree, out, report


def test_class_tree_converts_with_sorted_folder_labels_and_reports_the_bad_file(converted):
  tree, out, report = converted
  assert report.written == len(tree["good"]) and report.shards_written == 3
  assert [o for o, _ in report.skipped] == tree["bad"]
  assert open(f"{out}/labels.txt").read() == "0\ta_cats\n1\tb_dogs\n2\tc_birds\n"
  assert tree["bad"][0] in open(f"{out}/{convert_common.SKIPPED_FILE}").read()
  assert sorted(os.listdir(out)) == sorted(
      ["labels.txt", convert_common.SKIPPED_FILE, "manifest-train.json"] +
      [f"train-{k:05d}-of-00003.tfrecords" for k in range(3)])
  want = sorted(preprocess.load_image(p, 32).tobytes() + bytes([lab])
                for p, lab in tree["good"])
  got = sorted(r.image.tobytes() + bytes([r.label]) for r in _read_all(f"{out}/*.tfrecords"))
  assert got == want  # every image, its preprocessing and its label


def test_converted_records_inspect_clean(converted):
  _, out, _ = converted
  files, leftovers = inspect_tfrecords.resolve_input(out)
  report = inspect_tfrecords.inspect(files, num_classes=3, image_size=32)
  assert report.ok and not leftovers
  assert report.num_records == 8 and report.image_shape == (32, 32, 3)
  assert dict(report.label_counts) == {0: 3, 1: 3, 2: 2}
  assert len(report.samples) == 8


def test_converted_records_round_trip_pixel_exact_through_the_pipeline(converted):
  _, out, _ = converted
  cfg = fx.tiny_config(dataset=f"tfrecords:{out}/train-*.tfrecords", num_classes=3)
  stored = {r.image.tobytes(): r.label for r in _read_all(f"{out}/*.tfrecords")}
  seen = {}
  for x, y in pipeline.make_dataset(cfg, training=False):
    for img, lab in zip(x, y.numpy()):
      seen[records.to_uint8(img).numpy().tobytes()] = int(lab)
  assert seen == stored
  assert pipeline.dataset_num_classes(cfg) == 3


def test_strict_mode_stops_at_the_unreadable_image_naming_it(tmp_path):
  tree = fx.make_class_tree(str(tmp_path / "images"))
  with pytest.raises(UserError, match=r"Cannot read image .*broken\.JPEG"):
    folder_to_tfrecords.convert_folder(str(tmp_path / "images"), str(tmp_path / "out"),
                                       image_size=32, num_shards=1, strict=True)
  # Nothing that looks complete was left behind.
  assert not glob.glob(f"{tmp_path}/out/*.tfrecords")
  assert tree["bad"]


def test_rerun_keeps_complete_shards_and_redoes_leftover_tmp(tmp_path):
  rng = np.random.default_rng(3)
  for c in range(2):
    for i in range(4):
      fx.save(fx.random_image(rng, 20, 20), f"{tmp_path}/in/c{c}/{i}.png", "PNG")
  out = f"{tmp_path}/out"
  first = folder_to_tfrecords.convert_folder(f"{tmp_path}/in", out, image_size=32,
                                             num_shards=2)
  assert first.shards_written == 2
  shard0, shard1 = sorted(glob.glob(f"{out}/*.tfrecords"))
  before = os.path.getmtime(shard0), open(shard0, "rb").read()
  good1 = open(shard1, "rb").read()
  os.rename(shard1, shard1 + ".tmp")  # as if the run died while writing shard 1
  with open(shard1 + ".tmp", "wb") as f:
    f.write(good1[:50])
  second = folder_to_tfrecords.convert_folder(f"{tmp_path}/in", out, image_size=32,
                                              num_shards=2)
  assert second.shards_already_complete == 1 and second.shards_written == 1
  assert (os.path.getmtime(shard0), open(shard0, "rb").read()) == before
  assert open(shard1, "rb").read() == good1
  assert not os.path.exists(shard1 + ".tmp")


def test_flat_folder_is_one_class(tmp_path):
  rng = np.random.default_rng(4)
  for i in range(3):
    fx.save(fx.random_image(rng, 20, 24), f"{tmp_path}/flat/{i}.jpg", "JPEG")
  report = folder_to_tfrecords.convert_folder(f"{tmp_path}/flat", f"{tmp_path}/out",
                                              image_size=32)
  assert report.written == 3
  assert {r.label for r in _read_all(f"{tmp_path}/out/*.tfrecords")} == {0}
  assert open(f"{tmp_path}/out/labels.txt").read() == "0\tflat\n"


def test_empty_folder_is_a_user_error_naming_it(tmp_path):
  os.makedirs(tmp_path / "empty")
  with pytest.raises(UserError, match=rf"No image files found in {tmp_path}/empty"):
    folder_to_tfrecords.convert_folder(str(tmp_path / "empty"), str(tmp_path / "out"))


def test_empty_class_folder_keeps_its_label_index_and_is_reported(tmp_path):
  rng = np.random.default_rng(5)
  fx.save(fx.random_image(rng, 20, 20), f"{tmp_path}/in/a/0.png", "PNG")
  os.makedirs(tmp_path / "in" / "b")
  fx.save(fx.random_image(rng, 20, 20), f"{tmp_path}/in/c/0.png", "PNG")
  listing = convert_common.list_class_folders(f"{tmp_path}/in")
  assert listing.class_names == ["a", "b", "c"]
  assert sorted(lab for _, lab in listing.files_and_labels) == [0, 2]
  assert any(f"{tmp_path}/in/b is empty" in w for w in listing.warnings)


def test_imagenet_layout_labels_synsets_in_sorted_order(tmp_path):
  rng = np.random.default_rng(6)
  for syn in ("n02000000", "n01000000"):
    fx.save(fx.random_image(rng, 30, 40), f"{tmp_path}/in/{syn}/{syn}_1.JPEG", "JPEG")
  fx.save(fx.random_image(rng, 30, 40), f"{tmp_path}/in/n01000000/png_1.JPEG", "PNG")
  report = imagenet_to_tfrecords.convert_imagenet(f"{tmp_path}/in", f"{tmp_path}/out",
                                                  image_size=32, num_shards=2)
  assert report.written == 3
  assert open(f"{tmp_path}/out/labels.txt").read() == "0\tn01000000\n1\tn02000000\n"
  labels = sorted(r.label for r in _read_all(f"{tmp_path}/out/*.tfrecords"))
  assert labels == [0, 0, 1]


def test_imagenet_converter_refuses_a_non_synset_folder(tmp_path):
  fx.save(np.zeros((8, 8, 3), np.uint8), f"{tmp_path}/in/cats/0.png", "PNG")
  with pytest.raises(UserError, match="'cats'.*folder_to_tfrecords"):
    imagenet_to_tfrecords.list_imagenet(f"{tmp_path}/in")


def test_tfds_converter_writes_records_and_class_names(tmp_path):
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=6):
    report = tfds_to_tfrecords.convert_tfds("cifar10:test", str(tmp_path / "tfds"),
                                            str(tmp_path / "out"), image_size=32,
                                            num_shards=1)
  assert report.written == 6 and not report.skipped
  assert glob.glob(f"{tmp_path}/out/test-00000-of-00001.tfrecords")
  lines = open(f"{tmp_path}/out/labels.txt").read().splitlines()
  assert len(lines) == 10 and lines[0].startswith("0\t")  # ClassLabel names
  recs = _read_all(f"{tmp_path}/out/*.tfrecords")
  assert all(r.image.shape == (32, 32, 3) and 0 <= r.label < 10 for r in recs)


def test_progress_logs_rate_and_eta(monkeypatch):
  lines = []
  monkeypatch.setattr(convert_common.logging, "info",
                      lambda fmt, *args: lines.append(fmt % args))
  p = convert_common.Progress(total=10, every_secs=0)
  p.add(5)
  assert lines and "5/10 images" in lines[-1] and "images/s, ETA" in lines[-1]


@pytest.mark.slow
def test_two_worker_processes_write_the_same_records_as_one(tmp_path):
  rng = np.random.default_rng(7)
  for i in range(8):
    fx.save(fx.random_image(rng, 24, 24), f"{tmp_path}/in/c{i % 2}/{i}.png", "PNG")
  one = folder_to_tfrecords.convert_folder(f"{tmp_path}/in", f"{tmp_path}/one",
                                           image_size=32, num_shards=4, num_workers=1)
  two = folder_to_tfrecords.convert_folder(f"{tmp_path}/in", f"{tmp_path}/two",
                                           image_size=32, num_shards=4, num_workers=2)
  assert one.written == two.written == 8
  for k in range(4):
    name = f"train-{k:05d}-of-00004.tfrecords"
    assert open(f"{tmp_path}/one/{name}", "rb").read() == open(
        f"{tmp_path}/two/{name}", "rb").read()


# ---------------------------------------------------------------- inspector
def _bad_records_file(path):
  good = records.encode_example(fx.id_image(0, 8), 1)
  with tf.io.TFRecordWriter(path) as w:
    w.write(good)
    w.write(fx.raw_example(b"\0" * 10, 1, 8, 8))  # record 1: short image_raw
    w.write(records.encode_example(fx.id_image(1, 8), 7))  # record 2: label 7
    w.write(records.encode_example(fx.id_image(2, 16), 0))  # record 3: other size
    w.write(good)
  return path


def test_inspector_names_file_and_index_of_every_bad_record(tmp_path):
  path = _bad_records_file(f"{tmp_path}/a.tfrecords")
  report = inspect_tfrecords.inspect([path], num_classes=5)
  assert [(p, i) for p, i, _ in report.bad] == [(path, 1), (path, 2), (path, 3)]
  whats = [w for _, _, w in report.bad]
  assert "10 bytes" in whats[0] and "label 7" in whats[1] and "16x16" in whats[2]
  assert report.num_records == 5 and report.num_good == 2
  assert any(f"BAD: record 1 of {path}" in line for line in report.lines())


def test_inspector_reports_a_truncated_file_at_the_record_it_cannot_read(tmp_path):
  path = fx.write_records(f"{tmp_path}/t.tfrecords",
                          [fx.id_image(i, 8) for i in range(4)], [0] * 4)
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:-20])
  report = inspect_tfrecords.inspect([path])
  assert [(p, i) for p, i, _ in report.bad] == [(path, 3)]
  assert "truncated or corrupt" in report.bad[0][2]


def test_inspector_input_must_match_something(tmp_path):
  with pytest.raises(UserError, match="matches no record files"):
    inspect_tfrecords.resolve_input(f"{tmp_path}/none-*.tfrecords")


def test_inspector_command_exits_nonzero_naming_the_bad_record(tmp_path, capsys):
  path = _bad_records_file(f"{tmp_path}/a.tfrecords")
  png = f"{tmp_path}/grid.png"
  status = inspect_tfrecords.run(path, num_classes=5, output_png=png)
  assert status == 1
  assert f"BAD: record 1 of {path}" in capsys.readouterr().out
  grid = tf.io.decode_png(tf.io.read_file(png)).numpy()
  assert grid.shape == (8 + 2, 2 * (8 + 1) + 1, 3)  # the two good 8x8 images
  good = fx.write_records(f"{tmp_path}/ok/b.tfrecords", [fx.id_image(0, 8)], [0])
  assert inspect_tfrecords.run(good, num_classes=5) == 0
  assert inspect_tfrecords.run(f"{tmp_path}/missing-*") == 2


@pytest.mark.slow
def test_converter_and_inspector_run_as_modules(tmp_path):
  rng = np.random.default_rng(8)
  for i in range(4):
    fx.save(fx.random_image(rng, 24, 30), f"{tmp_path}/in/c{i % 2}/{i}.jpg", "JPEG")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)

  def run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)

  conv = run("tfrecords_tools.folder_to_tfrecords", f"--input_dir={tmp_path}/in",
             f"--output_dir={tmp_path}/out", "--image_size=32", "--num_workers=1")
  assert conv.returncode == 0, conv.stderr[-2000:]
  assert "Wrote 4 images" in conv.stdout
  insp = run("tfrecords_tools.inspect_tfrecords", f"--input={tmp_path}/out",
             "--num_classes=1")
  assert insp.returncode == 1 and "label 1 is outside" in insp.stdout


# ------------------------------------------------- hostile inputs (issue 18)
def _records_by_content(pattern):
  """sorted (image bytes, label) of every record (duplicates kept)."""
  out = []
  for path in sorted(glob.glob(pattern)):
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
      rec = records.decode_record(raw)
      out.append((rec.image.tobytes(), rec.label))
  return sorted(out)


def _expected(files_and_labels, size=32):
  return sorted((preprocess.load_image(p, size).tobytes(), lab)
                for p, lab in files_and_labels)


def test_a_symlink_loop_converts_each_image_once_with_its_own_label(tmp_path):
  images = fx.make_two_class_pngs(f"{tmp_path}/in")
  os.symlink("..", f"{tmp_path}/in/c0/up")  # a loop back to the top
  os.symlink("../c1", f"{tmp_path}/in/c0/sib")  # the other class's images
  report = folder_to_tfrecords.convert_folder(f"{tmp_path}/in", f"{tmp_path}/out",
                                              image_size=32, num_shards=2)
  assert report.written == 8  # the original followed the links: 488 records
  assert _records_by_content(f"{tmp_path}/out/*.tfrecords") == _expected(images)
  skipped = dict(report.skipped)
  assert set(skipped) == {f"{tmp_path}/in/c0/up", f"{tmp_path}/in/c0/sib"}
  assert all("symlinked folder" in why for why in skipped.values())
  assert "c0/sib" in open(f"{tmp_path}/out/{convert_common.SKIPPED_FILE}").read()


def test_a_file_linked_into_another_class_is_converted_once(tmp_path):
  images = fx.make_two_class_pngs(f"{tmp_path}/in")
  os.symlink(images[0][0], f"{tmp_path}/in/c1/also_c0.png")
  listing = convert_common.list_class_folders(f"{tmp_path}/in")
  assert sorted(listing.files_and_labels) == sorted(images)
  assert listing.skipped[0][0] == f"{tmp_path}/in/c1/also_c0.png"


def test_class_folders_that_overlap_are_refused(tmp_path):
  fx.make_two_class_pngs(f"{tmp_path}/in")
  os.symlink(f"{tmp_path}/in/c0", f"{tmp_path}/in/c2")
  with pytest.raises(UserError, match=r"c0 and .*c2 are the same folder"):
    convert_common.list_class_folders(f"{tmp_path}/in")
  os.remove(f"{tmp_path}/in/c2")
  os.symlink(".", f"{tmp_path}/in/all")
  with pytest.raises(UserError, match=r"holds the input folder"):
    convert_common.list_class_folders(f"{tmp_path}/in")


def test_a_fifo_named_like_an_image_is_skipped_not_read(tmp_path):
  import threading
  images = fx.make_two_class_pngs(f"{tmp_path}/in")
  fifo = f"{tmp_path}/in/c1/pipe.jpg"
  os.mkfifo(fifo)
  result = {}

  def run():
    result["report"] = folder_to_tfrecords.convert_folder(
        f"{tmp_path}/in", f"{tmp_path}/out", image_size=32, num_shards=1)

  worker = threading.Thread(target=run, daemon=True)
  worker.start()
  worker.join(timeout=120)
  if worker.is_alive():  # opening the FIFO blocks until a writer comes: release it
    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    worker.join(timeout=10)
    pytest.fail("the converter blocked reading a named pipe")
  report = result["report"]
  assert report.written == 8
  assert report.skipped == [(fifo, "a named pipe (FIFO), not an image file: skipped")]
  assert _records_by_content(f"{tmp_path}/out/*.tfrecords") == _expected(images)


def test_an_input_with_no_readable_image_is_an_error_and_leaves_no_shard(tmp_path):
  for i in range(3):
    os.makedirs(tmp_path / "in" / f"c{i}")
    (tmp_path / "in" / f"c{i}" / "x.jpg").write_bytes(b"not an image")
  with pytest.raises(UserError, match=r"No image could be converted .* 3 input\(s\) "
                     r"skipped, such as .*x\.jpg"):
    folder_to_tfrecords.convert_folder(f"{tmp_path}/in", f"{tmp_path}/out",
                                       image_size=32, num_shards=2)
  left = sorted(os.listdir(tmp_path / "out"))
  assert left == ["labels.txt", convert_common.SKIPPED_FILE]  # no shard, no manifest


def test_the_converter_refuses_a_size_the_model_cannot_train(tmp_path):
  fx.make_two_class_pngs(f"{tmp_path}/in")
  for size in (48, 16, 1024):  # Config.validate's rule: powers of two 32..512
    with pytest.raises(UserError, match=rf"--image_size={size} must be a power of two"):
      folder_to_tfrecords.convert_folder(f"{tmp_path}/in", f"{tmp_path}/out",
                                         image_size=size)
  assert not os.path.exists(tmp_path / "out")
  with pytest.raises(UserError, match="--image_size=48"):
    tfds_to_tfrecords.convert_tfds("cifar10", str(tmp_path / "tfds"),
                                   str(tmp_path / "out"), image_size=48)
  import dataclasses
  from sagan_tf.config import Config
  with pytest.raises(UserError):  # the trainer refuses what the converter refuses
    dataclasses.replace(Config(), image_size=48).validate()


# ------------------------------------------------------------- reruns
def _convert(tmp_path, **kwargs):
  args = dict(image_size=32, num_shards=4)
  args.update(kwargs)
  return folder_to_tfrecords.convert_folder(f"{tmp_path}/in", f"{tmp_path}/out", **args)


def test_a_rerun_with_another_image_size_does_not_keep_the_old_shards(tmp_path):
  images = fx.make_two_class_pngs(f"{tmp_path}/in")
  _convert(tmp_path)
  manifest = json.load(open(f"{tmp_path}/out/manifest-train.json"))
  assert manifest["complete"] and manifest["settings"]["image_size"] == 32
  with pytest.raises(UserError, match=r"image_size: 32 then, 64 now.*--overwrite"):
    _convert(tmp_path, image_size=64)
  report = _convert(tmp_path, image_size=64, overwrite=True)
  assert report.shards_written == 4 and report.shards_already_complete == 0
  assert _records_by_content(f"{tmp_path}/out/train-*") == _expected(images, 64)
  assert json.load(open(f"{tmp_path}/out/manifest-train.json"))["settings"][
      "image_size"] == 64


def test_a_rerun_with_the_same_flags_keeps_every_shard(tmp_path):
  fx.make_two_class_pngs(f"{tmp_path}/in")
  _convert(tmp_path)
  again = _convert(tmp_path)
  assert again.shards_already_complete == 4 and again.shards_written == 0


def test_a_rerun_with_another_shard_count_leaves_one_set(tmp_path):
  images = fx.make_two_class_pngs(f"{tmp_path}/in")
  _convert(tmp_path, num_shards=8)
  with pytest.raises(UserError, match=r"num_shards: 8 then, 4 now"):
    _convert(tmp_path)
  _convert(tmp_path, overwrite=True)
  assert sorted(os.path.basename(p) for p in glob.glob(f"{tmp_path}/out/train-*")) == [
      f"train-{k:05d}-of-00004.tfrecords" for k in range(4)]
  assert _records_by_content(f"{tmp_path}/out/train-*") == _expected(images)


def test_a_new_class_is_not_mixed_with_shards_of_the_old_labels(tmp_path):
  fx.make_two_class_pngs(f"{tmp_path}/in")
  _convert(tmp_path)
  labels = open(f"{tmp_path}/out/labels.txt").read()
  fx.save(np.zeros((24, 24, 3), np.uint8), f"{tmp_path}/in/a_new/0.png", "PNG")
  with pytest.raises(UserError, match=r"class_names: 2 classes then, 3 now"):
    _convert(tmp_path)
  assert open(f"{tmp_path}/out/labels.txt").read() == labels  # untouched
  _convert(tmp_path, overwrite=True)
  assert open(f"{tmp_path}/out/labels.txt").read().startswith("0\ta_new\n")
  assert {lab for _, lab in _records_by_content(f"{tmp_path}/out/train-*")} == {0, 1, 2}


def test_shards_without_a_manifest_are_not_taken_as_complete(tmp_path):
  fx.make_two_class_pngs(f"{tmp_path}/in")
  fx.write_records(f"{tmp_path}/out/train-00000-of-00004.tfrecords",
                   [fx.id_image(0, 32)], [0])
  with pytest.raises(UserError, match=r"no manifest-train.json"):
    _convert(tmp_path)


def test_an_interrupted_conversion_leaves_an_incomplete_manifest(tmp_path):
  fx.make_class_tree(str(tmp_path / "images"))
  with pytest.raises(UserError, match="broken"):
    folder_to_tfrecords.convert_folder(str(tmp_path / "images"), str(tmp_path / "out"),
                                       image_size=32, num_shards=1, strict=True)
  assert json.load(open(f"{tmp_path}/out/manifest-train.json"))["complete"] is False


def _children(pid):
  out = []
  for d in os.listdir("/proc"):
    if d.isdigit():
      try:
        fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
      except OSError:
        continue
      if int(fields[1]) == pid:
        out.append(int(d))
  return out


def _alive(pid):
  try:
    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
  except OSError:
    return False
  return state != "Z"


@pytest.mark.slow  # spawned workers import TensorFlow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the workers")
def test_killing_the_parent_stops_its_workers_and_a_rerun_finishes(tmp_path):
  import signal
  import threading
  import time
  images = fx.make_two_class_pngs(f"{tmp_path}/in", per_class=8)
  out = f"{tmp_path}/out"
  # Workers take 1 s per image (8 s per shard), so the kill lands mid-shard
  # and a worker that kept going would outlive its parent by seconds.
  script = (
      "import sys; sys.path[:0] = [%r, %r]\n"
      "import data_fixtures\n"
      "from tfrecords_tools import convert_common, folder_to_tfrecords\n"
      "convert_common.FileItems = data_fixtures.SlowFileItems\n"
      "folder_to_tfrecords.convert_folder(%r, %r, image_size=32, num_shards=2,"
      " num_workers=2)\n" % (REPO, os.path.join(REPO, "tests"), f"{tmp_path}/in", out))
  parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 240
    while not glob.glob(f"{out}/*.tmp") and time.time() < deadline:
      assert parent.poll() is None, "the converter ended before writing"
      time.sleep(0.02)
    assert glob.glob(f"{out}/*.tmp"), "no shard was being written"
    workers = [p for p in _children(parent.pid) if _alive(p)]
    assert workers
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    killed = time.time()
    died = {}

    def watch():  # when the last worker is gone, timed beside the rerun
      while any(_alive(p) for p in workers) and time.time() < killed + 60:
        time.sleep(0.02)
      died["at"] = time.time()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    # An immediate rerun: the dead run's workers may still be in their last
    # half-second, writing shard files of their own.
    report = folder_to_tfrecords.convert_folder(f"{tmp_path}/in", out, image_size=32,
                                                num_shards=2)
    assert report.shards_written + report.shards_already_complete == 2
    watcher.join(timeout=70)
    assert died["at"] - killed < 3.0, "workers outlived their parent"
  finally:
    if parent.poll() is None:
      parent.kill()
  assert _records_by_content(f"{out}/*.tfrecords") == _expected(images)
  assert not glob.glob(f"{out}/*.tmp")
  assert json.load(open(f"{out}/manifest-train.json"))["complete"]
