"""TF-GAN's eval functions are reachable on TF 2.21, where `import tensorflow_gan` fails."""

import sys

import numpy as np

from sagan_tf.eval import tfgan


def test_tfgan_eval_functions_are_reachable_on_this_tensorflow():
  mod = tfgan.module()
  assert callable(mod.classifier_score_from_logits)
  assert callable(mod.frechet_classifier_distance_from_activations)
  assert tfgan.how_imported()
  logits = np.zeros([4, 3])
  assert abs(float(tfgan.classifier_score_from_logits(logits)) - 1.0) < 1e-9


def test_direct_route_imports_classifier_metrics_without_the_package_inits():
  mod = tfgan._direct_import()  # pylint: disable=protected-access
  assert mod.__name__ == "tensorflow_gan.python.eval.classifier_metrics"
  # The inits that break on TF >= 2.16 (estimator, train: tf.estimator) never ran.
  for name in ("tensorflow_gan.python.estimator", "tensorflow_gan.python.train",
               "tensorflow_gan.python.eval.summaries"):
    assert name not in sys.modules, name
  assert not hasattr(sys.modules["tensorflow_gan"], "estimator")
  a = np.random.RandomState(0).normal(size=(50, 4))
  assert abs(float(mod.frechet_classifier_distance_from_activations(a, a))) < 1e-6


def test_a_working_plain_import_is_used_first(monkeypatch):
  sentinel = object()
  monkeypatch.setattr(tfgan, "_module", None)
  monkeypatch.setattr(tfgan, "_how", "")
  monkeypatch.setattr(tfgan, "_plain_import", lambda: sentinel)
  monkeypatch.setattr(tfgan, "_direct_import", lambda: 1 / 0)
  assert tfgan.module() is sentinel
  assert tfgan.how_imported() == "package import"
