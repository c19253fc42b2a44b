"""A full or unwritable disk (issue 18): --model_dir, the converter's output
folder and --export_dir each end in one message naming the path, the OS error
and what to do, with nothing lost.

Tests run as root (chmod does not stop root) and cannot fill a disk, so the
write functions are made to fail as the OS makes them fail: OSError with the
errno where Python writes (open / os.*), and TensorFlow's error with the C
library's message where TensorFlow writes (tf.io, SaveV2), as seen on a real
full tmpfs."""

import errno
import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

try:
  from tests import data_fixtures as fx
except ImportError:
  import data_fixtures as fx

from sagan_tf import atomic_write, errors, export as export_lib, run_dir
from sagan_tf.errors import UserError
from sagan_tf.models.generator import build_generator
from tfrecords_tools import folder_to_tfrecords

import train_helpers as th


def _tf_full(path):
  # The message TensorFlow gave on a full 2 MB tmpfs (checkpoint save).
  return tf.errors.ResourceExhaustedError(None, None,
                                          f"{path}; No space left on device [Op:SaveV2]")


def test_storage_errno_knows_os_and_tensorflow_disk_errors_only():
  assert errors.storage_errno(OSError(errno.EROFS, "Read-only file system", "/x")) == errno.EROFS
  assert errors.storage_errno(_tf_full("/x/ckpt-3_temp/part")) == errno.ENOSPC
  assert errors.storage_errno(tf.errors.PermissionDeniedError(
      None, None, "/x/a.tmp; Permission denied")) == errno.EACCES
  assert errors.storage_errno(OSError(errno.EDQUOT, "Disk quota exceeded")) == errno.EDQUOT
  assert errors.storage_errno(OSError(errno.ENOENT, "No such file or directory")) is None
  assert errors.storage_errno(ValueError("bad value")) is None
  assert errors.storage_errno(UserError("No space left on device")) is None


def test_config_json_on_a_read_only_disk_is_named_and_the_old_one_kept(tmp_path, monkeypatch):
  model_dir = str(tmp_path / "run")
  path = run_dir.write_run_config(th.tiny_config(model_dir=model_dir), model_dir)
  before = open(path).read()

  def read_only(name, *args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), name)

  monkeypatch.setattr(atomic_write, "open", read_only, raising=False)
  with pytest.raises(UserError) as e:
    run_dir.write_run_config(th.tiny_config(model_dir=model_dir, lr_g=1e-5), model_dir)
  message = str(e.value)
  assert f"Cannot write {path}: EROFS (Read-only file system)" in message
  assert "the config.json there is unchanged" in message and "remount it read-write" in message
  assert open(path).read() == before and os.listdir(model_dir) == ["config.json"]


def test_a_launch_line_on_a_full_disk_is_undone(tmp_path, monkeypatch):
  model_dir = str(tmp_path)
  cfg = th.tiny_config(model_dir=model_dir)
  path = run_dir.append_launch(model_dir, cfg, 0)
  before = open(path).read()
  real_write = os.write
  monkeypatch.setattr(run_dir.os, "write", lambda fd, data: real_write(fd, data[:10]))
  with pytest.raises(UserError, match=r"launches.jsonl: ENOSPC \(No space left on device\)"
                                      r".*earlier launches' lines"):
    run_dir.append_launch(model_dir, cfg, 5)
  assert open(path).read() == before  # no torn line the next launch would append to


_FULL_AT_STEP_3 = textwrap.dedent("""
    import os, sys
    import tensorflow as tf
    real_save = tf.train.CheckpointManager.save

    def save(self, checkpoint_number=None, **kwargs):
      if checkpoint_number == 3:  # the disk is full: what SaveV2 leaves and raises
        prefix = os.path.join(self.directory, "ckpt-3")
        os.makedirs(prefix + "_temp")
        raise tf.errors.ResourceExhaustedError(None, None, prefix + "_temp/part-00000-of-"
            "00001.data-00000-of-00001.tempstate1; No space left on device [Op:SaveV2]")
      return real_save(self, checkpoint_number=checkpoint_number, **kwargs)

    tf.train.CheckpointManager.save = save
    from sagan_tf import main
    sys.argv = ["sagan_tf.main", "train"] + sys.argv[1:]
    main.main()
    """)


def test_a_full_disk_at_a_checkpoint_save_exits_2_and_keeps_the_older_checkpoints(tmp_path):
  model_dir = str(tmp_path / "run")
  flags = th.flag_args(model_dir=model_dir, batch_size=2, train_steps=4,
                       checkpoint_every_steps=1, keep_checkpoints=2)
  result = th.run([sys.executable, "-c", _FULL_AT_STEP_3, *flags])
  assert result.returncode == 2, result.stderr[-3000:]
  ckpts = run_dir.checkpoint_dir(model_dir)
  error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert error == [
      f"error: Cannot write {ckpts}/ckpt-3: ENOSPC (No space left on device). Nothing was "
      f"lost: the checkpoints written before are intact (the newest is {ckpts}/ckpt-2, which "
      "a re-run resumes from). To go on, free space on that disk (or use a folder on a "
      "larger one), then re-run the same command."], result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  assert [n for n, _ in run_dir.list_checkpoints(ckpts)] == [1, 2]
  for _, path in run_dir.list_checkpoints(ckpts):
    assert run_dir.checkpoint_problem(path) is None
  assert run_dir.latest_checkpoint(model_dir) == f"{ckpts}/ckpt-2"
  assert not os.path.exists(f"{ckpts}/ckpt-3_temp")  # its partial save is cleared


def test_export_on_a_full_disk_names_the_folder_and_leaves_the_versions(tmp_path, monkeypatch):
  cfg = th.tiny_config(model_dir=str(tmp_path))
  generator = build_generator(cfg)
  generator(tf.zeros([1, cfg.z_dim]), tf.zeros([1], tf.int32), training=False)
  root = str(tmp_path / "export")
  os.makedirs(f"{root}/1")
  with open(f"{root}/1/saved_model.pb", "wb") as f:
    f.write(b"an earlier version")

  def full(module, path, signatures=None):
    os.makedirs(f"{path}/variables")
    with open(f"{path}/variables/variables.data-00000-of-00001", "wb") as f:
      f.write(b"part")
    raise _tf_full(f"{path}/variables/variables.data-00000-of-00001")

  monkeypatch.setattr(export_lib.tf.saved_model, "save", full)
  with pytest.raises(UserError) as e:
    export_lib.export_generator(generator, cfg, root, 2)
  assert (f"Cannot write {root}: ENOSPC (No space left on device). Nothing was lost: the "
          "versions already in it are untouched and no partial version is left") in str(e.value)
  assert "--export_dir" in str(e.value)
  assert sorted(os.listdir(root)) == ["1"]
  assert open(f"{root}/1/saved_model.pb", "rb").read() == b"an earlier version"


def test_converter_on_a_full_disk_names_the_folder_and_a_rerun_finishes(tmp_path, monkeypatch):
  rng = np.random.default_rng(5)
  for c in range(2):
    for i in range(3):
      fx.save(fx.random_image(rng, 20, 20), f"{tmp_path}/in/c{c}/{i}.png", "PNG")
  out = f"{tmp_path}/out"
  real_writer = tf.io.TFRecordWriter
  opened = []

  class FillsUp(real_writer):
    def __init__(self, path, *args):
      super().__init__(path, *args)
      opened.append(path)

    def write(self, record):
      if len(opened) == 2:  # the second shard finds the disk full
        raise _tf_full(opened[-1])
      super().write(record)

  monkeypatch.setattr(tf.io, "TFRecordWriter", FillsUp)
  with pytest.raises(UserError) as e:
    folder_to_tfrecords.convert_folder(f"{tmp_path}/in", out, image_size=32, num_shards=2)
  assert f"Cannot write {out}: ENOSPC (No space left on device)" in str(e.value)
  assert "the shards completed so far are kept, no partial .tmp file is left" in str(e.value)
  assert not glob.glob(f"{out}/*.tmp")
  kept = glob.glob(f"{out}/*.tfrecords")
  assert len(kept) == 1
  monkeypatch.setattr(tf.io, "TFRecordWriter", real_writer)
  report = folder_to_tfrecords.convert_folder(f"{tmp_path}/in", out, image_size=32,
                                              num_shards=2)
  assert report.shards_already_complete == 1 and report.shards_written == 1
