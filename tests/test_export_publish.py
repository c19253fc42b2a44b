"""Publishing an export: a TF Serving poller never finds a version folder
without a complete SavedModel (sagan_tf/export.py, publish_version).

TF Serving lists the export base, takes every child named by an integer as
a version and loads the highest; the loader needs saved_model.pb. A poller
thread lists the base as fast as it can while export_generator runs.
"""

import os
import threading
import time

import pytest
import tensorflow as tf

from sagan_tf import export as export_lib
from tool_fixtures import perturbed_generator, tiny_config


def _inode(path):
  try:
    return os.stat(path).st_ino
  except FileNotFoundError:
    return None


def _snapshot(version_dir):
  """{relative path: size} of every file under version_dir (what a poll sees);
  None when the folder was renamed away or replaced during the walk (a walk
  is not atomic: it would list part of the old folder and none of the new)."""
  before = _inode(version_dir)
  out = {}
  for parent, _, files in os.walk(version_dir):
    for f in files:
      path = os.path.join(parent, f)
      try:
        out[os.path.relpath(path, version_dir)] = os.path.getsize(path)
      except OSError:
        pass  # removed between the listing and the stat
  return out if before is not None and _inode(version_dir) == before else None


class _Poller(threading.Thread):
  def __init__(self, root):
    super().__init__(daemon=True)
    self.root, self.stop, self.seen = root, threading.Event(), []

  def run(self):
    while not self.stop.is_set():
      try:
        names = os.listdir(self.root)
      except FileNotFoundError:
        continue
      for name in names:
        if name.isdigit():
          snapshot = _snapshot(os.path.join(self.root, name))
          if snapshot is not None:
            self.seen.append(snapshot)
      time.sleep(0.001)  # let the export run (the GIL)


@pytest.fixture(scope="module")
def generator_and_cfg():
  cfg = tiny_config("original")
  return perturbed_generator(cfg), cfg


def _export_while_polling(generator, cfg, root, atomic_rename):
  poller = _Poller(root)
  poller.start()
  try:
    path = export_lib.export_generator(generator, cfg, root, 3, atomic_rename=atomic_rename)
  finally:
    poller.stop.set()
    poller.join()
  return path, _snapshot(path), poller.seen


def test_local_export_appears_complete_in_one_rename(generator_and_cfg, tmp_path):
  generator, cfg = generator_and_cfg
  root = str(tmp_path / "export")
  path, final, seen = _export_while_polling(generator, cfg, root, atomic_rename=None)
  assert export_lib.SAVED_MODEL_FILE in final and "variables/variables.index" in final
  assert "assets.extra/" + export_lib.INFO_FILE in final
  assert all(s == final for s in seen), [s for s in seen if s != final][:1]
  assert sorted(os.listdir(root)) == ["3"]  # the staging folder is gone
  # Re-exporting the same version replaces it, again without a partial state.
  _, final2, seen2 = _export_while_polling(generator, cfg, root, atomic_rename=None)
  assert set(final2) == set(final)
  # Replacing a version moves the old folder aside in one rename, then renames
  # the new one in: a poll in between finds no version 3 (never a partial one).
  assert all(s in (final, final2) or not s for s in seen2), [
      s for s in seen2 if s not in (final, final2) and s][:1]
  tf.saved_model.load(path)


def test_object_store_export_copies_saved_model_pb_last(generator_and_cfg, tmp_path,
                                                        monkeypatch):
  # As on GCS: no directory rename (publish copies object by object), each
  # copy slowed down so the poller sees the folder fill. Whenever
  # saved_model.pb is listed, every other file is there at its final size.
  generator, cfg = generator_and_cfg
  copy = tf.io.gfile.copy

  def slow_copy(src, dst, overwrite=False):
    time.sleep(0.02)
    copy(src, dst, overwrite=overwrite)

  monkeypatch.setattr(tf.io.gfile, "copy", slow_copy)
  renamed = []
  monkeypatch.setattr(tf.io.gfile, "rename", lambda *a, **k: renamed.append(a))
  root = str(tmp_path / "export")
  path, final, seen = _export_while_polling(generator, cfg, root, atomic_rename=False)
  assert not renamed
  assert any(export_lib.SAVED_MODEL_FILE not in s for s in seen)  # it did poll mid-copy
  others = {k: v for k, v in final.items() if k != export_lib.SAVED_MODEL_FILE}
  for s in seen:
    if export_lib.SAVED_MODEL_FILE in s:
      assert {k: s.get(k) for k in others} == others
  assert sorted(os.listdir(root)) == ["3"]
  tf.saved_model.load(path)


def test_object_store_paths_are_published_by_copy():
  assert export_lib.renames_directories_atomically("/tmp/x/export/3")
  assert not export_lib.renames_directories_atomically("gs://bucket/run/export/3")
