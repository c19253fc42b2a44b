"""Parity check against a fixture recorded from the original TF1 code.

    python -m sagan_tf.tools.parity_check --fixture ../shared/parity/public

The fixture (format of `shared/parity/public/README.md`): `meta.json`
(configuration), `init.ckpt` (TF1 initial state), `fixture.npz` (inputs and
recorded outputs), `grads.npz` (gradients at the initial state),
`after_step.ckpt` (every variable after one training iteration).

Every recorded computation (README items 2-10) is repeated from a freshly
loaded initial state and compared; one line per quantity: name, max abs
diff, relative L2 diff, tolerance, OK/FAIL. Exit status 1 on any FAIL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Callable, Dict, List, Optional

import numpy as np

# Tolerances (float32, CPU); see BUILD_NOTES.md "Parity tolerances".
FORWARD_TOL = 1e-4          # rel L2 and max abs: outputs, logits, losses, u
GRAD_REL_TOL = 1e-3         # rel L2 for gradients with norm >= GRAD_NORM_FLOOR
GRAD_NORM_FLOOR = 1e-3
GRAD_ABS_TOL = 1e-5         # max abs for gradients below the floor (rounding noise)
STEP_ABS_TOL = 1e-5         # after the iteration: >= 99% of elements within this
STEP_FRACTION = 0.99
BN_STAT_TOL = 1e-5

_ATTENTION_BY_FN = {
    "generator.generator": (), "generator.generator_test": (32,),
    "generator.generator_test_64": (64,),
    "discriminator.discriminator": (), "discriminator.discriminator_test": (32,),
    "discriminator.discriminator_test_64": (64,),
}


@dataclasses.dataclass
class Result:
  name: str
  max_abs: float
  rel_l2: float
  tolerance: str
  ok: bool

  def line(self) -> str:
    return (f"{'OK  ' if self.ok else 'FAIL'} {self.name:<70s} max_abs={self.max_abs:.3e} "
            f"rel_l2={self.rel_l2:.3e}  tol: {self.tolerance}")


def _diffs(got, want):
  got = np.asarray(got, np.float64).reshape(np.shape(want))
  want = np.asarray(want, np.float64)
  diff = got - want
  max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
  norm = float(np.linalg.norm(want))
  rel = float(np.linalg.norm(diff) / norm) if norm > 0 else (0.0 if max_abs == 0 else np.inf)
  return diff, max_abs, rel


def compare_forward(name, got, want) -> Result:
  _, max_abs, rel = _diffs(got, want)
  ok = max_abs <= FORWARD_TOL and (rel <= FORWARD_TOL or max_abs <= FORWARD_TOL * 1e-2)
  return Result(name, max_abs, rel, f"rel_l2<={FORWARD_TOL:g} and max_abs<={FORWARD_TOL:g}", ok)


def compare_gradient(name, got, want) -> Result:
  _, max_abs, rel = _diffs(got, want)
  if np.linalg.norm(want) >= GRAD_NORM_FLOOR:
    return Result(name, max_abs, rel, f"rel_l2<={GRAD_REL_TOL:g} (norm>={GRAD_NORM_FLOOR:g})",
                  rel <= GRAD_REL_TOL)
  return Result(name, max_abs, rel, f"max_abs<={GRAD_ABS_TOL:g} (norm<{GRAD_NORM_FLOOR:g})",
                max_abs <= GRAD_ABS_TOL)


def compare_after_step(name, got, want, lr: float, counts: Optional[list] = None) -> Result:
  """Element-wise bound 2*lr + 1e-5; tallies elements within 1e-5 into `counts`.

  The ">= 99% within 1e-5" rule is applied to all elements of a group
  (model variables, Adam slots) by `fraction_result`: a variable whose
  gradient is rounding noise around 0 (the G biases that feed a batch norm)
  moves by a noise-driven +-lr on Adam's first step in the original too.
  """
  diff, max_abs, rel = _diffs(got, want)
  bound = 2 * lr + STEP_ABS_TOL
  within = int(np.sum(np.abs(diff) <= STEP_ABS_TOL))
  if counts is not None:
    counts[0] += within
    counts[1] += diff.size
  frac = within / diff.size if diff.size else 1.0
  return Result(f"{name} (within 1e-5: {100 * frac:.2f}%)", max_abs, rel,
                f"max_abs<={bound:.2e}", max_abs <= bound)


def fraction_result(name: str, counts) -> Result:
  frac = counts[0] / max(counts[1], 1)
  return Result(f"{name}: {counts[0]} of {counts[1]} elements within {STEP_ABS_TOL:g} "
                f"({100 * frac:.3f}%)", 0.0, 0.0, f">={100 * STEP_FRACTION:g}% within "
                f"{STEP_ABS_TOL:g}", frac >= STEP_FRACTION)


def compare_abs(name, got, want, tol: float) -> Result:
  _, max_abs, rel = _diffs(got, want)
  return Result(name, max_abs, rel, f"max_abs<={tol:g}", max_abs <= tol)


def config_from_meta(meta: dict):
  """The port's Config for a fixture's meta.json."""
  from sagan_tf.config import Config
  c = meta["config"]
  try:
    g_attn = _ATTENTION_BY_FN[c["generator"]]
    d_attn = _ATTENTION_BY_FN[c["discriminator"]]
  except KeyError as e:
    raise SystemExit(f"fixture uses an unknown original function {e}; known: "
                     f"{sorted(_ATTENTION_BY_FN)}")
  adam = c.get("adam", {})
  return Config(
      preset="parity", image_size=int(c.get("image_size", 128)),
      num_classes=int(c["num_classes"]), z_dim=int(c["z_dim"]), gf_dim=int(c["gf_dim"]),
      df_dim=int(c["df_dim"]), g_attention_res=g_attn, d_attention_res=d_attn,
      batch_size=int(c["batch"]), lr_g=float(c["lr_g"]), lr_d=float(c["lr_d"]),
      beta1=float(adam.get("beta1", c.get("beta1", 0.0))),
      beta2=float(adam.get("beta2", 0.999)), adam_epsilon=float(adam.get("epsilon", 1e-8)),
      loss="hinge", seed=int(c.get("seed", 0))).validate()


class ParityRunner:
  """Holds the port's models and replays the fixture's computations."""

  def __init__(self, fixture_dir: str):
    import tensorflow as tf
    from sagan_tf.compat import tf1
    from sagan_tf.train import setup, step
    self.tf, self.tf1, self.setup, self.step = tf, tf1, setup, step
    self.dir = fixture_dir
    with open(os.path.join(fixture_dir, "meta.json")) as f:
      self.meta = json.load(f)
    self.cfg = config_from_meta(self.meta)
    self.fx = dict(np.load(os.path.join(fixture_dir, "fixture.npz")))
    self.grads = dict(np.load(os.path.join(fixture_dir, "grads.npz")))
    self.models = setup.build_gan(self.cfg)
    self.init_ckpt = os.path.join(fixture_dir, "init.ckpt")
    self.var_map = self.reset()
    self.g_names = self.models.generator.tf1_variable_map()
    self.d_names = self.models.discriminator.tf1_variable_map()
    self.z = tf.constant(self.fx["z"])
    self.y_fake = tf.constant(self.fx["y_fake"].astype(np.int32))
    self.x_real = tf.constant(self.fx["x_real"])
    self.y_real = tf.constant(self.fx["y_real"].astype(np.int32))
    kind = self.cfg.loss
    self.g_grad_fn, self.d_grad_fn = step.gradient_functions(self.models, kind)

  def reset(self):
    """The fixture's fresh session: init.ckpt restored, Adam slots zero."""
    m = self.models
    self.setup.reset_optimizer(m.g_optimizer)
    self.setup.reset_optimizer(m.d_optimizer)
    return self.tf1.load_tf1_checkpoint(self.init_ckpt, m.generator, m.discriminator,
                                        m.g_optimizer, m.d_optimizer)

  def g(self, training=True, update_u=True):
    return self.models.generator(self.z, self.y_fake, training=training, update_u=update_u)

  def d(self, images, labels, update_u):
    return self.models.discriminator(images, labels, training=True, update_u=update_u)

  def _u(self, names):
    return {n: v.numpy() for n, v in self.var_map.items() if n in names and n.endswith("/u")}

  # -------------------------------------------------------------- the items
  def run(self) -> List[Result]:
    fx, out = self.fx, []
    tf = self.tf

    # 2. G_train forward; G u after it.
    self.reset()
    out.append(compare_forward("g_train_out", self.g(), fx["g_train_out"]))
    for n, u in self._u(self.g_names).items():
      out.append(compare_forward(f"u_after_g_forward/{n}", u, fx[f"u_after_g_forward/{n}"]))
    # 3. G_eval forward (moving statistics at their initial values).
    self.reset()
    out.append(compare_forward("g_eval_out", self.g(training=False), fx["g_eval_out"]))
    # 4. D_real; D u after it.
    self.reset()
    out.append(compare_forward("d_real_logits", self.d(self.x_real, self.y_real, True),
                               fx["d_real_logits"]))
    for n, u in self._u(self.d_names).items():
      out.append(compare_forward(f"u_after_d_real/{n}", u, fx[f"u_after_d_real/{n}"]))
    # 5. D_fake (no u update) on G_train's images.
    self.reset()
    out.append(compare_forward("d_fake_logits", self.d(self.g(), self.y_fake, False),
                               fx["d_fake_logits"]))
    # 6. The four losses from one joint pass.
    self.reset()
    _, metrics = self.d_grad_fn(self.z, self.y_fake, self.x_real, self.y_real)
    for k in ("d_loss", "d_loss_real", "d_loss_fake"):
      out.append(compare_forward(f"loss_init/{k}", metrics[k], fx[f"loss_init/{k}"]))
    out.append(compare_forward("loss_init/g_loss", metrics["g_loss_in_d_step"],
                               fx["loss_init/g_loss"]))
    # 7. Gradients of d_loss (D variables) and g_loss (G variables).
    self.reset()
    grads, _ = self.d_grad_fn(self.z, self.y_fake, self.x_real, self.y_real)
    out += self._compare_grads(self.models.discriminator, self.d_names, grads, self.grads)
    self.reset()
    grads, _ = self.g_grad_fn(self.z, self.y_fake)
    out += self._compare_grads(self.models.generator, self.g_names, grads, self.grads)
    # 8. One full iteration: G train op, then D train op.
    out += self._full_iteration()
    # 9. The other read order: D_fake reads u after D_real assigned it.
    out += self._read_after_update()
    # 10. Attention switched on.
    out += self._attention_on()
    return out

  def _compare_grads(self, model, names, grads, reference, prefix=""):
    by_id = {id(v): n for n, v in names.items()}
    res = []
    for var, g in zip(model.trainable_variables, grads):
      n = by_id[id(var)]
      if f"{prefix}{n}" in reference:
        res.append(compare_gradient(f"grad/{n}" if not prefix else f"{prefix}{n}",
                                    g, reference[f"{prefix}{n}"]))
    return res

  def _full_iteration(self) -> List[Result]:
    fx, m, step = self.fx, self.models, self.step
    self.reset()
    g_metrics = step.generator_step(m, self.z, self.y_fake, self.g_grad_fn)
    d_metrics = step.discriminator_step(m, self.z, self.y_fake, self.x_real, self.y_real,
                                        self.d_grad_fn)
    res = [compare_forward("step/g_run/g_loss", g_metrics["g_loss"], fx["step/g_run/g_loss"]),
           compare_forward("step/g_run/d_fake_logits", g_metrics["g_fake_logits"],
                           fx["step/g_run/d_fake_logits"])]
    for k, mk in (("d_loss", "d_loss"), ("d_loss_real", "d_loss_real"),
                  ("d_loss_fake", "d_loss_fake"), ("g_loss", "g_loss_in_d_step"),
                  ("d_real_logits", "real_logits"), ("d_fake_logits", "fake_logits")):
      res.append(compare_forward(f"step/d_run/{k}", d_metrics[mk], fx[f"step/d_run/{k}"]))
    after = self.tf1.read_tf1_checkpoint(os.path.join(self.dir, "after_step.ckpt"))
    lrs = {id(v): self.cfg.lr_g for v in self.g_names.values()}
    lrs.update({id(v): self.cfg.lr_d for v in self.d_names.values()})
    var_counts, slot_counts = [0, 0], [0, 0]
    for n, v in self.var_map.items():
      leaf = n.rsplit("/", 1)[-1]
      if leaf == "u":
        res.append(compare_forward(f"after_step/{n}", v.numpy(), after[n]))
      elif leaf in ("mean", "var", "moving_mean", "moving_variance"):
        res.append(compare_abs(f"after_step/{n}", v.numpy(), after[n], BN_STAT_TOL))
      else:
        res.append(compare_after_step(f"after_step/{n}", v.numpy(), after[n], lrs[id(v)],
                                      var_counts))
    res.append(fraction_result("after_step model variables", var_counts))
    for opt, model, names in ((m.g_optimizer, m.generator, self.g_names),
                              (m.d_optimizer, m.discriminator, self.d_names)):
      by_id = {id(v): n for n, v in names.items()}
      lr = float(opt.learning_rate.numpy())
      for var in model.trainable_variables:
        idx = opt._get_variable_index(var)
        n = by_id[id(var)]
        for suffix, slot in (("Adam", opt._momentums[idx]), ("Adam_1", opt._velocities[idx])):
          res.append(compare_after_step(f"after_step/{n}/{suffix}", slot.numpy(),
                                        after[f"{n}/{suffix}"], lr, slot_counts))
    res.append(fraction_result("after_step Adam slots", slot_counts))
    # TF1 Adam keeps beta2^(t+1) after t steps; Keras derives it from `iterations`.
    for opt, which in ((m.d_optimizer, "beta2_power"), (m.g_optimizer, "beta2_power_1")):
      if which in after:
        got = np.float32(self.cfg.beta2) ** (float(opt.iterations.numpy()) + 1)
        res.append(compare_forward(f"after_step/{which} (beta2^(iterations+1))", got,
                                   after[which]))
    return res

  def _read_after_update(self) -> List[Result]:
    from sagan_tf import losses
    fx, m, step = self.fx, self.models, self.step
    prefix = "alt_read_after_update/"
    res = []
    self.reset()
    real_logits = self.d(self.x_real, self.y_real, True)
    fake_logits = self.d(self.g(), self.y_fake, False)
    d_loss, d_real, d_fake = losses.discriminator_loss("hinge", real_logits, fake_logits)
    res.append(compare_forward(f"{prefix}d_fake_logits", fake_logits, fx[f"{prefix}d_fake_logits"]))
    for k, v in (("d_loss", d_loss), ("d_loss_real", d_real), ("d_loss_fake", d_fake)):
      res.append(compare_forward(f"{prefix}loss_init/{k}", v, fx[f"{prefix}loss_init/{k}"]))
    # 8a canonical, then 8b with the other order.
    self.reset()
    step.generator_step(m, self.z, self.y_fake, self.g_grad_fn)
    fakes = self.tf.stop_gradient(self.g())
    real_logits = self.d(self.x_real, self.y_real, True)
    fake_logits = self.d(fakes, self.y_fake, False)
    d_loss, d_real, d_fake = losses.discriminator_loss("hinge", real_logits, fake_logits)
    for k, v in (("d_fake_logits", fake_logits), ("d_loss", d_loss), ("d_loss_real", d_real),
                 ("d_loss_fake", d_fake)):
      res.append(compare_forward(f"{prefix}step/d_run/{k}", v, fx[f"{prefix}step/d_run/{k}"]))
    return res

  def _attention_on(self) -> List[Result]:
    fx = self.fx
    prefix = "attn_on/"
    ratios = self.meta.get("attn_on_sigma_ratio", {})
    if not ratios:
      return []

    def reset_on():
      self.reset()
      for name, value in ratios.items():
        self.var_map[name].assign(value)

    res = []
    reset_on()
    res.append(compare_forward(f"{prefix}g_train_out", self.g(), fx[f"{prefix}g_train_out"]))
    reset_on()
    _, metrics = self.d_grad_fn(self.z, self.y_fake, self.x_real, self.y_real)
    res.append(compare_forward(f"{prefix}d_real_logits", metrics["real_logits"],
                               fx[f"{prefix}d_real_logits"]))
    res.append(compare_forward(f"{prefix}d_fake_logits", metrics["fake_logits"],
                               fx[f"{prefix}d_fake_logits"]))
    res.append(compare_forward(f"{prefix}loss/d_loss", metrics["d_loss"], fx[f"{prefix}loss/d_loss"]))
    res.append(compare_forward(f"{prefix}loss/g_loss", metrics["g_loss_in_d_step"],
                               fx[f"{prefix}loss/g_loss"]))
    reset_on()
    grads, _ = self.d_grad_fn(self.z, self.y_fake, self.x_real, self.y_real)
    res += self._compare_grads(self.models.discriminator, self.d_names, grads, fx,
                               prefix=f"{prefix}grads/")
    reset_on()
    grads, _ = self.g_grad_fn(self.z, self.y_fake)
    res += self._compare_grads(self.models.generator, self.g_names, grads, fx,
                               prefix=f"{prefix}grads/")
    return res


def run_parity(fixture_dir: str) -> List[Result]:
  """All comparisons for a fixture directory."""
  return ParityRunner(fixture_dir).run()


def main(argv=None) -> int:
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--fixture", required=True, help="fixture directory (meta.json, init.ckpt, ...)")
  args = parser.parse_args(argv)
  if not os.path.exists(os.path.join(args.fixture, "meta.json")):
    print(f"error: {args.fixture} has no meta.json; pass a parity fixture directory", file=sys.stderr)
    return 2
  print("Tolerances: forward/logits/losses/u: rel_l2 and max_abs <= 1e-4; gradients: rel_l2 <= 1e-3 "
        "(norm >= 1e-3) else max_abs <= 1e-5; after one iteration: every element within 2*lr + 1e-5 "
        "and >= 99% of all elements within 1e-5 (model variables; Adam slots), BN moving stats "
        "max_abs <= 1e-5.")
  results = run_parity(args.fixture)
  for r in results:
    print(r.line())
  failed = [r for r in results if not r.ok]
  print(f"{len(results) - len(failed)} OK, {len(failed)} FAIL of {len(results)} quantities")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
