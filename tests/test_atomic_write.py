"""sagan_tf.atomic_write: a small file is replaced whole or not at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from sagan_tf import atomic_write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_write_text_and_json_replace_the_file_and_leave_nothing_else(tmp_path):
  path = str(tmp_path / "labels.txt")
  atomic_write.write_text(path, "old\n")
  assert atomic_write.write_text(path, "0\tcats\n1\tdogs\n") == path
  assert open(path).read() == "0\tcats\n1\tdogs\n"
  jpath = str(tmp_path / "config.json")
  atomic_write.write_json(jpath, {"b": [1, 2], "a": "é"})
  assert json.load(open(jpath, encoding="utf-8")) == {"a": "é", "b": [1, 2]}
  assert sorted(os.listdir(tmp_path)) == ["config.json", "labels.txt"]


def test_a_failure_in_the_middle_of_the_write_keeps_the_old_content(tmp_path, monkeypatch):
  path = str(tmp_path / "config.json")
  atomic_write.write_json(path, {"step": 1})
  real_open = open

  class HalfWriter:
    """Writes half the bytes, then fails like a full disk."""

    def __init__(self, f):
      self.f = f

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      self.f.close()

    def write(self, data):
      self.f.write(data[:len(data) // 2])
      self.f.flush()
      raise OSError(28, "No space left on device")

  monkeypatch.setattr(atomic_write, "open", lambda p, m: HalfWriter(real_open(p, m)),
                      raising=False)
  with pytest.raises(OSError, match="No space"):
    atomic_write.write_json(path, {"step": 2, "pad": "x" * 10000})
  assert json.load(open(path)) == {"step": 1}
  assert os.listdir(tmp_path) == ["config.json"]  # the temporary file is gone


def test_a_kill_during_the_write_keeps_the_old_content(tmp_path):
  # The child writes half of the new content to disk, then SIGKILLs itself:
  # no exception handler or atexit runs, as with kill -9 from outside.
  path = str(tmp_path / "config.json")
  atomic_write.write_json(path, {"step": 1})
  child = textwrap.dedent(f"""
      import os, signal
      from sagan_tf import atomic_write
      real_open = open
      class Dying:
        def __init__(self, f): self.f = f
        def __enter__(self): return self
        def __exit__(self, *e): pass
        def write(self, data):
          self.f.write(data[:len(data) // 2]); self.f.flush(); os.fsync(self.f.fileno())
          os.kill(os.getpid(), signal.SIGKILL)
      atomic_write.open = lambda p, m: Dying(real_open(p, m))
      atomic_write.write_json({path!r}, {{"step": 2, "pad": "x" * 100000}})
  """)
  proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, timeout=120,
                        env=dict(os.environ, PYTHONPATH=REPO), capture_output=True)
  assert proc.returncode == -9, proc.stderr[-2000:]
  assert json.load(open(path)) == {"step": 1}
  leftovers = [n for n in os.listdir(tmp_path) if n != "config.json"]
  assert len(leftovers) == 1 and leftovers[0].startswith(".config.json.tmp-")
  assert os.path.getsize(tmp_path / leftovers[0]) > 0  # the kill really was mid-write


def test_a_value_json_cannot_hold_leaves_the_old_file(tmp_path):
  path = str(tmp_path / "eval.json")
  atomic_write.write_json(path, {"fid": 1.5})
  with pytest.raises(TypeError):
    atomic_write.write_json(path, {"fid": object()})
  assert json.load(open(path)) == {"fid": 1.5} and os.listdir(tmp_path) == ["eval.json"]


def test_other_file_systems_go_through_gfile():
  # ram:// is TensorFlow's in-memory file system: the gs:// code path.
  folder = "ram://atomic_write_test"
  tf.io.gfile.makedirs(folder)
  path = f"{folder}/manifest.json"
  atomic_write.write_json(path, {"shards": 2})
  atomic_write.write_text(path, "replaced\n")
  with tf.io.gfile.GFile(path) as f:
    assert f.read() == "replaced\n"
  assert tf.io.gfile.listdir(folder) == ["manifest.json"]
