"""Presets are starting points: the records' size and labels.txt set image_size
and num_classes unless typed (a typed mismatch is an error naming both),
--self_eval is skipped where it cannot run, and --helpfull shows the chosen
preset's defaults and exits 0."""

import logging
import re
import sys

import pytest

from sagan_tf import config as config_lib
from sagan_tf import run_dir
from sagan_tf.errors import UserError
from sagan_tf.train import loop

import data_fixtures
import train_helpers as th


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """64x64 records of 5 classes, with the converters' labels.txt beside them."""
  directory = tmp_path_factory.mktemp("records")
  data_fixtures.write_id_shards(str(directory), num_shards=1, per_shard=12, size=64,
                                num_classes=5)
  (directory / "labels.txt").write_text("".join(f"class{c}\n" for c in range(5)))
  return str(directory)


def test_num_classes_and_image_size_come_from_the_records(tmp_path, records, caplog):
  # The preset (and the rest of the tiny config) says 32x32, 3 classes and
  # self_eval, none of them typed: the data decides, self_eval is skipped.
  cfg = th.tiny_config(model_dir=str(tmp_path / "run"), dataset=f"tfrecords:{records}",
                       self_eval=True)
  typed = config_lib.typed_fields(cfg) - {"num_classes", "image_size", "self_eval"}
  with caplog.at_level(logging.INFO):
    assert loop.train(cfg, typed=typed) == 0
  stored = run_dir.load_run_config(cfg.model_dir)
  assert (stored.num_classes, stored.image_size, stored.self_eval) == (5, 64, False)
  assert run_dir.checkpoint_step(run_dir.latest_checkpoint(cfg.model_dir)) == 2
  text = caplog.text
  assert "--num_classes=5 from labels.txt" in text and "--image_size=64 from the records" in text
  assert len(re.findall(r"Not evaluating at step 0 and the end \(--self_eval\): "
                        r"--dataset=tfrecords:\S+ is scored with Inception and no "
                        r"--inception_path was given", text)) == 1


def test_a_typed_num_classes_that_labels_txt_contradicts_is_an_error(tmp_path, records):
  cfg = th.tiny_config(model_dir=str(tmp_path / "run"), dataset=f"tfrecords:{records}",
                       image_size=64)
  with pytest.raises(UserError, match=r"--num_classes=3 but labels.txt of "
                                      r"--dataset=tfrecords:\S+ say 5"):
    loop.train(cfg, typed=config_lib.typed_fields(cfg))
  assert not run_dir.has_run_config(cfg.model_dir)


def test_helpfull_shows_the_presets_defaults_and_exits_0():
  demo = th.run([sys.executable, "-m", "sagan_tf.main", "train", "--helpfull"], timeout=120)
  assert demo.returncode == 0, demo.stderr[-2000:]
  assert re.search(r"--image_size: .*\n\s+\(default: '32'\)", demo.stdout)
  imagenet = th.run([sys.executable, "-m", "sagan_tf.main", "train", "--preset=imagenet128",
                     "--helpfull"], timeout=120)
  assert imagenet.returncode == 0
  assert re.search(r"--image_size: .*\n\s+\(default: '128'\)", imagenet.stdout)
