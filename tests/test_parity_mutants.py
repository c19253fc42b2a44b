"""The parity verdict catches real bugs: each mutant below must make it FAIL.

Every mutant is a monkeypatch of one narrow function of the port (the
float32 run and its float64 twin both see it), followed by the in-process
verdict on ../shared/parity/public. A verdict that passes a mutant is a bug
in the verdict (issue 14).

MUTANTS is the single table of (name, patch target, replacement factory,
part of a name the failures must include): a factory takes the original
object and returns its replacement, so moving a function means editing one
target. The verdict stops at the first item with a FAIL (the tool's
stop_at_first_failure), which keeps the nine runs short.
"""

import dataclasses
import functools
import os

import pytest
import tensorflow as tf

from conftest import PUBLIC_FIXTURE

pytestmark = [
    pytest.mark.skipif(
        not os.path.exists(os.path.join(PUBLIC_FIXTURE, "meta.json")),
        reason=f"parity fixture not found at {PUBLIC_FIXTURE} (it ships in ../shared)"),
    pytest.mark.slow,  # nine verdict runs (~25 s of CPU each)
]


def _sigma_stop_gradient(orig):
  # The folded backward with sigma treated as a constant: only g_w_bar / sigma.
  def spectral_norm_backward(w_mat, u, parts, g_w_bar, g_sigma=None, g_u_new=None):
    return g_w_bar / parts[4]
  return spectral_norm_backward


def _force_update_u(value):
  def factory(orig):
    @functools.wraps(orig)
    def call(self, *args, **kwargs):
      kwargs["update_u"] = value
      return orig(self, *args, **kwargs)
    return call
  return factory


def _bn_epsilon(orig):
  @functools.wraps(orig)
  def call(self, *args, **kwargs):
    self.epsilon = 1e-3
    return orig(self, *args, **kwargs)
  return call


def _softmax_over_queries(orig):
  def attend(queries, keys, values):
    probs = tf.nn.softmax(tf.matmul(queries, keys, transpose_b=True), axis=1)
    return tf.matmul(probs, values), probs
  return attend


def _adam_epsilon(orig):
  return lambda cfg, learning_rate: orig(dataclasses.replace(cfg, adam_epsilon=1e-7),
                                         learning_rate)


def _d_before_g(orig):
  from sagan_tf.train import step

  def replica_iteration(models, cfg, gradient_fns, real_batches, global_step):
    g_fn, d_fn = gradient_fns
    b = real_batches[0][0].shape[0]
    for k, (x_real, y_real) in enumerate(real_batches):
      z, y = step.generator_inputs(cfg, global_step, 1 + k, b)
      d_metrics = step.discriminator_step(models, z, y, x_real, y_real, d_fn)
    z, y = step.generator_inputs(cfg, global_step, 0, b)
    g_metrics = step.generator_step(models, z, y, g_fn)
    return {"d_loss": d_metrics["d_loss"], "g_loss": g_metrics["g_loss"]}
  return replica_iteration


def _bilinear(orig):
  def upsample_2x(x):
    up = tf.image.resize(x, [2 * x.shape[1], 2 * x.shape[2]], method="bilinear")
    return tf.cast(up, x.dtype)
  return upsample_2x


MUTANTS = [
    ("sigma_stop_gradient", "sagan_tf.layers.spectral_norm.spectral_norm_backward",
     _sigma_stop_gradient, "grad/"),
    ("u_updated_on_d_fake_pass", "sagan_tf.models.discriminator.Discriminator.call",
     _force_update_u(True), "after_step/model/d_"),
    ("u_not_updated_on_g_forward", "sagan_tf.models.generator.Generator.call",
     _force_update_u(False), "u_after_g_forward/"),
    ("batch_norm_epsilon_1e-3", "sagan_tf.layers.conditional_bn.ConditionalBatchNorm.call",
     _bn_epsilon, "g_train_out"),
    ("softmax_over_wrong_axis", "sagan_tf.layers.attention.attend",
     _softmax_over_queries, "_non_local/"),
    ("no_max_pool_on_keys", "sagan_tf.layers.attention._max_pool_2x2",
     lambda orig: lambda x: x, "_non_local/"),
    ("adam_epsilon_1e-7", "sagan_tf.train.setup.make_adam", _adam_epsilon, "after_step/model/"),
    ("d_update_before_g_update", "sagan_tf.train.step.replica_iteration",
     _d_before_g, "step/"),
    ("bilinear_upsampling", "sagan_tf.models.generator.upsample_2x", _bilinear, "g_train_out"),
]


def _resolve(target):
  module_name, attr = target.rsplit(".", 1)
  parts = module_name.split(".")
  for i in range(len(parts), 0, -1):
    try:
      obj = __import__(".".join(parts[:i]), fromlist=["_"])
    except ImportError:
      continue
    for p in parts[i:]:
      obj = getattr(obj, p)
    return obj, attr
  raise ImportError(target)


@pytest.mark.parametrize("name,target,factory,expected", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_the_verdict(monkeypatch, name, target, factory, expected):
  from sagan_tf.tools.parity_check import verdict
  owner, attr = _resolve(target)
  monkeypatch.setattr(owner, attr, factory(getattr(owner, attr)))
  lines = []
  status = verdict(PUBLIC_FIXTURE, out=lines.append, stop_at_first_failure=True)
  failed = [l for l in lines if l.startswith("FAIL")]
  assert status == 1, f"{name}: the verdict passed a mutant\n" + "\n".join(lines[-5:])
  assert any(expected in l.split()[1] for l in failed), (
      f"{name}: no failing quantity named *{expected}*; failed:\n" + "\n".join(failed[:20]))
