"""The one place TF-GAN is imported.

The original evaluation calls TF-GAN's `classifier_score_from_logits` (IS) and
`frechet_classifier_distance_from_activations` (FID). TF-GAN 2.1.0 cannot be
imported as a package on TF >= 2.16: `tensorflow_gan/python/__init__.py`
imports its Estimator and train modules, which subclass `tf.estimator` hooks
that no longer exist (AttributeError); the top-level `__init__` also imports
`distutils` (Python 3.12 has it only through setuptools' shim). The eval
functions themselves (`python/eval/classifier_metrics.py` + `eval_utils.py`)
only need `tensorflow` and `tensorflow_probability`, and work unchanged.

So: try the plain `import tensorflow_gan` first (a fixed TF-GAN just works);
when it fails, drop whatever half-imported `tensorflow_gan*` modules it left
behind, register bare package modules for `tensorflow_gan`,
`tensorflow_gan.python` and `tensorflow_gan.python.eval` whose `__path__` is
the installed directory (found with `importlib.util.find_spec`, which locates
a package without running its `__init__`), and import only
`tensorflow_gan.python.eval.classifier_metrics`. Python's import system then
finds the submodules on those paths and never runs the three `__init__` files.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from typing import Any

from absl import logging

_PACKAGES = ("tensorflow_gan", "tensorflow_gan.python", "tensorflow_gan.python.eval")

_module: Any = None
_how: str = ""


def _plain_import():
  """The TF-GAN eval namespace through the package, or None when it fails."""
  try:
    import tensorflow_gan  # pylint: disable=g-import-not-at-top,unused-import
    return importlib.import_module("tensorflow_gan.python.eval.classifier_metrics")
  except Exception as e:  # pylint: disable=broad-except
    # ImportError (distutils on 3.12), AttributeError (tf.estimator), ...
    logging.info("Plain `import tensorflow_gan` failed (%s: %s); importing its "
                 "eval module directly.", type(e).__name__, e)
    return None


def _direct_import():
  """`tensorflow_gan.python.eval.classifier_metrics` without the package inits."""
  for name in [n for n in sys.modules if n == "tensorflow_gan"
               or n.startswith("tensorflow_gan.")]:
    del sys.modules[name]  # half-initialised leftovers of the failed import
  spec = importlib.util.find_spec("tensorflow_gan")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("tensorflow-gan is not installed; install the versions in "
                      "requirements.txt (./run.sh does it).")
  root = list(spec.submodule_search_locations)[0]
  for depth, name in enumerate(_PACKAGES):
    package = types.ModuleType(name, "Bare stand-in: the real __init__ does not "
                               "import on this TensorFlow (see sagan_tf/eval/tfgan.py).")
    package.__path__ = [os.path.join(root, *name.split(".")[1:depth + 1])]
    package.__package__ = name
    sys.modules[name] = package
    if depth:
      setattr(sys.modules[_PACKAGES[depth - 1]], name.rsplit(".", 1)[1], package)
  return importlib.import_module("tensorflow_gan.python.eval.classifier_metrics")


def module():
  """TF-GAN's `classifier_metrics` module (cached): plain import, else direct.

  Its streaming variants (`*_streaming`) are TF1 graph-mode metrics built on
  local variables and update ops; in eager TF2 we stream with our own
  accumulators (sagan_tf/eval/metrics.py) instead, so they are not re-exported.
  """
  global _module, _how
  if _module is None:
    mod = _plain_import()
    _how = "package import"
    if mod is None:
      mod = _direct_import()
      _how = "direct import of tensorflow_gan.python.eval.classifier_metrics"
    _module = mod
    logging.info("TF-GAN eval functions reached by %s.", _how)
  return _module


def how_imported() -> str:
  """'package import' or the direct route; empty before the first use."""
  return _how


def classifier_score_from_logits(logits):
  """TF-GAN: exp(E_x KL(p(y|x) || p(y))) from logits [N, C], in float64 inside."""
  return module().classifier_score_from_logits(logits)


def frechet_classifier_distance_from_activations(activations1, activations2):
  """TF-GAN: Fréchet distance of two activation sets [N, D] (float64 inside)."""
  return module().frechet_classifier_distance_from_activations(
      activations1, activations2)

