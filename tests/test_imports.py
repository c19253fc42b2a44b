"""The import graph runs one way (sagan_tf.tools.check_imports), and the checker
itself catches what it promises to catch."""

import os
import subprocess
import sys

from sagan_tf.tools import check_imports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_package_has_no_cycle_and_follows_the_layers():
  run = subprocess.run([sys.executable, "-m", "sagan_tf.tools.check_imports"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stdout + run.stderr
  assert "OK: no cycle" in run.stdout


def _tree(tmp_path, files):
  for name, text in files.items():
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  return str(tmp_path)


def test_the_checker_reports_cycles_layer_violations_and_hidden_imports(tmp_path):
  root = _tree(tmp_path, {
      "sagan_tf/__init__.py": "",
      "sagan_tf/config.py": "",
      "sagan_tf/eval/__init__.py": "",
      # A cycle hidden behind a function-level import, and eval -> train
      # against the layers.
      "sagan_tf/eval/run.py": "def f():\n  from sagan_tf.train import loop\n",
      "sagan_tf/train/__init__.py": "",
      "sagan_tf/train/loop.py": "from sagan_tf.eval import run\n",
      "sagan_tf/models/__init__.py": "",
      "sagan_tf/models/generator.py": "import sagan_tf.config\n",
      "tfrecords_tools/__init__.py": "",
  })
  problems, lazy, _ = check_imports.check(root)
  text = "\n".join(problems)
  assert "import cycle: sagan_tf.eval.run <-> sagan_tf.train.loop" in text
  assert "sagan_tf.eval.run:2 imports sagan_tf.train.loop: sagan_tf.train is not in a layer" in text
  assert "sagan_tf.eval.run:2 imports sagan_tf.train.loop inside a function" in text
  assert [(i.importer, i.imported) for i in lazy] == [("sagan_tf.eval.run",
                                                       "sagan_tf.train.loop")]
  # The allowed direction alone is clean.
  os.remove(os.path.join(root, "sagan_tf/eval/run.py"))
  assert check_imports.check(root)[0] == []
  # A new top-level module must be given its place in the layers.
  _tree(tmp_path, {"sagan_tf/stray.py": ""})
  assert check_imports.check(root)[0] == ["sagan_tf.stray is in no unit of LAYERS; add it there"]
