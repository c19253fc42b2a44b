"""Parity check of the port against the original TF1 code.

    python -m sagan_tf.tools.parity_check --fixture ../shared/parity/public
    python -m sagan_tf.tools.parity_check --original_repo=PATH [--preset=imagenet128]
        [--batch_size=2] [--num_classes=N] [--iterations=N] [--gf_dim=N --df_dim=N]

`--fixture`: a fixture recorded from the original (format of
`shared/parity/public/README.md`: `meta.json`, `init.ckpt`, `fixture.npz`,
`grads.npz`, `after_step.ckpt`). Every recorded computation is repeated from
the fixture's initial state by the port in float32, and once more by the
same port code in float64 (exact math, `float64_twin.py`), and compared:

* forward quantities from the initial state (outputs, logits, losses, `u`
  after one pass): max_abs and rel_l2 <= FORWARD_TOL;
* gradients and everything after an update (variables, Adam slots, `u`,
  batch-norm statistics, logits/losses of the D run): the port's distance to
  the fixture must be within NOISE_K times this machine's float32 noise,
  ||port32 - fixture|| <= NOISE_K * ||port32 - port64|| + floor,
  floor = NOISE_FLOOR_REL * ||fixture|| + NOISE_FLOOR_ABS * sqrt(size)
  (L2 norms over the tensor), plus, for a trained variable, 2 lr per Adam
  step on each element whose gradient float32 noise could flip
  (`adam_sign_allowance`); BUILD_NOTES.md, "Parity verdict", says why.

`--original_repo`: live mode. Records a fixture by running the user's checkout
of brain-research/self-attention-gan at the requested size (make_fixture.py,
in a subprocess: TF1 graph mode), then checks the port against it (another
subprocess). One line per quantity; exit status 1 on any FAIL, 2 on bad input.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

FORWARD_TOL = 1e-4       # forward from the initial state: max_abs and rel_l2
NOISE_K = 30.0           # distance to the fixture, in units of float32 noise here
NOISE_FLOOR_REL = 1e-4   # ... plus this fraction of the fixture's norm (or update)
NOISE_FLOOR_ABS = 1e-7   # ... plus this RMS per element (quantities that are 0)

_ATTENTION_BY_FN = {
    "generator.generator": (), "generator.generator_test": (32,),
    "generator.generator_test_64": (64,),
    "discriminator.discriminator": (), "discriminator.discriminator_test": (32,),
    "discriminator.discriminator_test_64": (64,),
}

FORWARD, NOISY, AUX = "forward", "noisy", "aux"  # AUX: measured, not compared


def tolerance_text() -> str:
  """The rule, printed from the constants that decide it."""
  return (f"Tolerances: forward from the initial state (outputs, logits, losses, u): "
          f"max_abs <= {FORWARD_TOL:g} and rel_l2 <= {FORWARD_TOL:g}; gradients and "
          f"state after an update: dist <= {NOISE_K:g} * noise + {NOISE_FLOOR_REL:g} * "
          f"||fixture|| (of the update, for variables after the iterations) + "
          f"{NOISE_FLOOR_ABS:g} * sqrt(size) [+ for trained variables, 2 * lr per Adam step "
          f"on elements whose gradient is within {NOISE_K:g} * its noise of 0], with "
          f"dist = ||port32 - fixture||, noise = ||port32 - port64|| (L2; port64 = the "
          f"port's graph in float64).")


@dataclasses.dataclass
class Result:
  name: str
  kind: str
  max_abs: float
  rel_l2: float
  ok: bool
  dist: float = 0.0
  noise: float = 0.0
  bound: float = 0.0

  def line(self) -> str:
    head = f"{'OK  ' if self.ok else 'FAIL'} {self.name:<66s}"
    if self.kind == FORWARD:
      return f"{head} max_abs={self.max_abs:.3e} rel_l2={self.rel_l2:.3e}"
    return (f"{head} dist={self.dist:.3e} noise={self.noise:.3e} bound={self.bound:.3e} "
            f"rel_l2={self.rel_l2:.3e}")


def _as64(x, shape):
  return np.asarray(x, np.float64).reshape(shape)


def compare(name: str, kind: str, got32, got64, want, scale=None, allowance=None) -> Result:
  """One quantity: the forward rule or the float32-noise rule (module docstring).

  got64 (the float64 twin's value) is needed for the noise rule only; the
  floor is relative to ||scale|| (default: the fixture's value). `allowance`
  (per element, added to the bound in L2) is `adam_sign_allowance`'s.
  """
  want = np.asarray(want, np.float64)
  p32 = _as64(got32, want.shape)
  diff = p32 - want
  max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
  dist = float(np.linalg.norm(diff))
  norm = float(np.linalg.norm(want))
  rel = dist / norm if norm > 0 else (0.0 if dist == 0 else np.inf)
  if kind == FORWARD:
    ok = max_abs <= FORWARD_TOL and (rel <= FORWARD_TOL or max_abs <= FORWARD_TOL * 1e-2)
    return Result(name, kind, max_abs, rel, bool(ok))
  noise = float(np.linalg.norm(p32 - _as64(got64, want.shape)))
  ref_norm = norm if scale is None else float(np.linalg.norm(scale))
  bound = NOISE_K * noise + NOISE_FLOOR_REL * ref_norm + NOISE_FLOOR_ABS * np.sqrt(want.size)
  if allowance is not None:
    bound += float(np.linalg.norm(allowance))
  return Result(name, kind, max_abs, rel, bool(dist <= bound), dist, noise, float(bound))


def adam_sign_allowance(grads32, grads64, lr: float) -> np.ndarray:
  """Per element: 2 lr for each Adam step whose gradient float32 noise could flip.

  Adam's early steps move an element by nearly lr * sign(g) whatever |g| is
  (public fixture README, "Adam"), so where |g32| <= NOISE_K * |g32 - g64|
  the sign is not determined at float32 precision and the element may end
  up to 2 lr from the original's for that step.
  """
  out = 0.0
  for g32, g64 in zip(grads32, grads64):
    g32 = np.asarray(g32, np.float64)
    out = out + 2 * lr * (np.abs(g32) <= NOISE_K * np.abs(g32 - g64))
  return np.asarray(out)


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


class PortRun:
  """The port's models, replaying the fixture's computations (README items 2-10).

  Each item of `items()` calls `put(name, value, kind)` per quantity; the
  names are the fixture's keys (`grad/<var>` for grads.npz,
  `after_step/<var>` for after_step.ckpt).
  """

  def __init__(self, fixture_dir: str):
    import tensorflow as tf
    from sagan_tf.compat import tf1
    from sagan_tf.train import setup, step
    self.tf, self.tf1, self.setup, self.step = tf, tf1, setup, step
    self.dir = fixture_dir
    with open(os.path.join(fixture_dir, "meta.json")) as f:
      self.meta = json.load(f)
    self.cfg = config_from_meta(self.meta)
    self.iterations = int(self.meta.get("iterations", 1))
    fx = np.load(os.path.join(fixture_dir, "fixture.npz"))
    self.models = setup.build_gan(self.cfg)
    self.init_ckpt = os.path.join(fixture_dir, "init.ckpt")
    self.var_map = self.reset()
    self.g_names = self.models.generator.tf1_variable_map()
    self.d_names = self.models.discriminator.tf1_variable_map()
    self.z = tf.constant(fx["z"])
    self.y_fake = tf.constant(fx["y_fake"].astype(np.int32))
    self.x_real = tf.constant(fx["x_real"])
    self.y_real = tf.constant(fx["y_real"].astype(np.int32))
    self.g_grad_fn, self.d_grad_fn = step.gradient_functions(self.models, self.cfg.loss)

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

  def items(self) -> List[Tuple[str, Callable, bool]]:
    """[(name, fn(put), has noisy quantities)] in the fixture's order (README items 2-10)."""
    forward = [("forward", self._forward, False)]
    if self.iterations == 0:  # a forward-only fixture (make_fixture --iterations=0)
      return forward
    return forward + [("gradients", self._gradients, True),
                      ("iterations", self._iterations, True),
                      ("read_after_update", self._read_after_update, True),
                      ("attention_on", self._attention_on, True)]

  def _forward(self, put):
    # 2. G_train forward; G u after it.  3. G_eval forward.
    self.reset()
    put("g_train_out", self.g())
    for n, u in self._u(self.g_names).items():
      put(f"u_after_g_forward/{n}", u)
    self.reset()
    put("g_eval_out", self.g(training=False))
    # 4. D_real; D u after it.  5. D_fake (no u update) on G_train's images.
    self.reset()
    put("d_real_logits", self.d(self.x_real, self.y_real, True))
    for n, u in self._u(self.d_names).items():
      put(f"u_after_d_real/{n}", u)
    self.reset()
    put("d_fake_logits", self.d(self.g(), self.y_fake, False))

  def _gradients(self, put):
    # 6. The four losses from one joint pass.  7. Gradients of d_loss and g_loss.
    self.reset()
    grads, metrics = self.d_grad_fn(self.z, self.y_fake, self.x_real, self.y_real)
    for k in ("d_loss", "d_loss_real", "d_loss_fake"):
      put(f"loss_init/{k}", metrics[k])
    put("loss_init/g_loss", metrics["g_loss_in_d_step"])
    self._put_grads(put, self.models.discriminator, self.d_names, grads, "grad/")
    self.reset()
    grads, _ = self.g_grad_fn(self.z, self.y_fake)
    self._put_grads(put, self.models.generator, self.g_names, grads, "grad/")

  def _put_grads(self, put, model, names, grads, prefix):
    by_id = {id(v): n for n, v in names.items()}
    for var, g in zip(model.trainable_variables, grads):
      put(f"{prefix}{by_id[id(var)]}", g, NOISY)

  def _one_iteration(self, grads_log=None):
    """One `step.replica_iteration` on the fixture's inputs: (G metrics, D metrics).

    The port's own iteration function decides the order of the G and D
    steps; the fixture's fixed z / labels stand in for its sampler (as the
    fixture's placeholders did for the original's in-graph sampling).
    """
    step, seen = self.step, {}
    saved = step.generator_inputs, step.generator_step, step.discriminator_step

    def record(key, fn):
      def wrapped(*args, **kwargs):
        seen[key] = fn(*args, **kwargs)
        return seen[key]
      return wrapped

    def logged(fn, model):
      names = {id(v): n for n, v in model.tf1_variable_map().items()}

      def wrapped(*args):
        grads, metrics = fn(*args)
        if grads_log is not None:
          grads_log.append({names[id(v)]: np.asarray(g)
                            for v, g in zip(model.trainable_variables, grads)})
        return grads, metrics
      return wrapped

    grad_fns = (logged(self.g_grad_fn, self.models.generator),
                logged(self.d_grad_fn, self.models.discriminator))
    step.generator_inputs = lambda cfg, s, draw, b: (self.z, self.y_fake)
    step.generator_step = record("g", saved[1])
    step.discriminator_step = record("d", saved[2])
    try:
      step.replica_iteration(self.models, self.cfg, grad_fns, [(self.x_real, self.y_real)], 0)
    finally:
      step.generator_inputs, step.generator_step, step.discriminator_step = saved
    return seen["g"], seen["d"]

  def _iterations(self, put):
    m = self.models
    self.reset()
    grads_log = []
    for _ in range(self.iterations):
      g_metrics, d_metrics = self._one_iteration(grads_log)
    for t, grads in enumerate(grads_log):  # every Adam step's gradients (auxiliary)
      for n, g in grads.items():
        put(f"adam_step{t}_grad/{n}", g, AUX)
    put("step/g_run/g_loss", g_metrics["g_loss"], NOISY)
    put("step/g_run/d_fake_logits", g_metrics["g_fake_logits"], NOISY)
    for k, mk in (("d_loss", "d_loss"), ("d_loss_real", "d_loss_real"),
                  ("d_loss_fake", "d_loss_fake"), ("g_loss", "g_loss_in_d_step"),
                  ("d_real_logits", "real_logits"), ("d_fake_logits", "fake_logits")):
      put(f"step/d_run/{k}", d_metrics[mk], NOISY)
    for n, v in self.var_map.items():
      put(f"after_step/{n}", v.numpy(), NOISY)
    for opt, model, names in ((m.g_optimizer, m.generator, self.g_names),
                              (m.d_optimizer, m.discriminator, self.d_names)):
      by_id = {id(v): n for n, v in names.items()}
      for var in model.trainable_variables:
        idx = opt._get_variable_index(var)  # Keras 3: slot index of a variable.
        n = by_id[id(var)]
        put(f"after_step/{n}/Adam", opt._momentums[idx].numpy(), NOISY)
        put(f"after_step/{n}/Adam_1", opt._velocities[idx].numpy(), NOISY)
    # TF1 Adam keeps beta2^(t+1) after t steps; Keras derives it from `iterations`.
    for opt, which in ((m.d_optimizer, "beta2_power"), (m.g_optimizer, "beta2_power_1")):
      put(f"after_step/{which}",
          np.float32(self.cfg.beta2) ** (float(opt.iterations.numpy()) + 1))

  def _read_after_update(self, put):
    if not self.meta.get("alt_read_after_update", True):
      return
    from sagan_tf import losses
    prefix = "alt_read_after_update/"
    self.reset()
    real_logits = self.d(self.x_real, self.y_real, True)
    fake_logits = self.d(self.g(), self.y_fake, False)
    d_loss, d_real, d_fake = losses.discriminator_loss("hinge", real_logits, fake_logits)
    put(f"{prefix}d_fake_logits", fake_logits)
    for k, v in (("d_loss", d_loss), ("d_loss_real", d_real), ("d_loss_fake", d_fake)):
      put(f"{prefix}loss_init/{k}", v)
    # 8a canonical, then 8b with the other order.
    self.reset()
    self.step.generator_step(self.models, self.z, self.y_fake, self.g_grad_fn)
    fakes = self.tf.stop_gradient(self.g())
    real_logits = self.d(self.x_real, self.y_real, True)
    fake_logits = self.d(fakes, self.y_fake, False)
    d_loss, d_real, d_fake = losses.discriminator_loss("hinge", real_logits, fake_logits)
    for k, v in (("d_fake_logits", fake_logits), ("d_loss", d_loss), ("d_loss_real", d_real),
                 ("d_loss_fake", d_fake)):
      put(f"{prefix}step/d_run/{k}", v, NOISY)

  def _attention_on(self, put):
    ratios = self.meta.get("attn_on_sigma_ratio", {})
    if not ratios:
      return
    prefix = "attn_on/"

    def reset_on():
      self.reset()
      for name, value in ratios.items():
        self.var_map[name].assign(value)

    reset_on()
    put(f"{prefix}g_train_out", self.g())
    reset_on()
    grads, metrics = self.d_grad_fn(self.z, self.y_fake, self.x_real, self.y_real)
    put(f"{prefix}d_real_logits", metrics["real_logits"])
    put(f"{prefix}d_fake_logits", metrics["fake_logits"])
    put(f"{prefix}loss/d_loss", metrics["d_loss"])
    put(f"{prefix}loss/g_loss", metrics["g_loss_in_d_step"])
    self._put_grads(put, self.models.discriminator, self.d_names, grads, f"{prefix}grads/")
    reset_on()
    grads, _ = self.g_grad_fn(self.z, self.y_fake)
    self._put_grads(put, self.models.generator, self.g_names, grads, f"{prefix}grads/")


def fixture_arrays(fixture_dir: str) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
  """(recorded arrays under the names `PortRun` uses, the scale of each noisy one).

  A variable after the iterations is scaled by how far the original moved it
  (after - init): the floor is relative to the update, not to the weight.
  """
  from sagan_tf.compat import tf1
  ref = {k: v for k, v in np.load(os.path.join(fixture_dir, "fixture.npz")).items()
         if k not in ("z", "y_fake", "x_real", "y_real")}
  if not os.path.exists(os.path.join(fixture_dir, "grads.npz")):
    return ref, {}  # a forward-only fixture (make_fixture --iterations=0)
  ref.update({f"grad/{k}": v for k, v in np.load(os.path.join(fixture_dir, "grads.npz")).items()})
  after = tf1.read_tf1_checkpoint(os.path.join(fixture_dir, "after_step.ckpt"))
  init = tf1.read_tf1_checkpoint(os.path.join(fixture_dir, "init.ckpt"))
  ref.update({f"after_step/{k}": v for k, v in after.items()
              if k.startswith("model/") or k in ("beta2_power", "beta2_power_1")})
  scale = {f"after_step/{k}": np.asarray(after[k], np.float64) - init[k] for k in init
           if k.startswith("model/")}
  return ref, scale


def run_parity(fixture_dir: str, stop_at_first_failure: bool = False) -> List[Result]:
  """All comparisons for a fixture directory: port32, its float64 twin, the fixture.

  Items run in order, each in float32 and (when it has noisy quantities) in
  float64. With stop_at_first_failure, stops after the first item that has a
  FAIL (the mutation tests: a verdict is reached sooner).
  """
  from sagan_tf.tools.float64_twin import float64_math
  ref, scale = fixture_arrays(fixture_dir)
  port32, port64 = PortRun(fixture_dir), None
  results, seen = [], set()
  for i, (_, fn32, noisy) in enumerate(port32.items()):
    got32, got64 = {}, {}
    fn32(lambda n, v, kind=FORWARD: got32.__setitem__(n, (kind, np.asarray(v))))
    if noisy:
      with float64_math():
        port64 = port64 or PortRun(fixture_dir)  # built when first needed
        port64.items()[i][1](lambda n, v, kind=FORWARD: got64.__setitem__(n, np.asarray(v)))
    for name, (kind, value) in got32.items():
      if name in ref:
        results.append(compare(name, kind, value, got64.get(name), ref[name], scale.get(name),
                               _allowance(name, got32, got64, port32.cfg)))
    seen.update(got32)
    if stop_at_first_failure and not all(r.ok for r in results):
      return results
  missing = sorted(set(ref) - seen)
  # A recorded quantity the port does not produce is a failure, not a skip.
  results += [Result(f"{n} (not computed by the port)", FORWARD, np.inf, np.inf, False)
              for n in missing]
  return results


def _allowance(name, got32, got64, cfg):
  """adam_sign_allowance for a trainable variable after the iterations, else None."""
  var = name[len("after_step/"):] if name.startswith("after_step/") else None
  steps = sorted(k for k in got32 if k.startswith("adam_step") and k.endswith(f"_grad/{var}"))
  if var is None or not steps:
    return None
  lr = cfg.lr_g if var.startswith("model/g_") else cfg.lr_d
  return adam_sign_allowance([got32[k][1] for k in steps], [got64[k] for k in steps], lr)


def verdict(fixture_dir: str, out: Callable[[str], None] = print,
            stop_at_first_failure: bool = False) -> int:
  """Prints the tolerances, one line per quantity and the summary; returns the exit status."""
  if not os.path.exists(os.path.join(fixture_dir, "meta.json")):
    out(f"error: {fixture_dir} has no meta.json; pass a parity fixture directory")
    return 2
  out(tolerance_text())
  results = run_parity(fixture_dir, stop_at_first_failure)
  for r in results:
    out(r.line())
  failed = [r for r in results if not r.ok]
  out(f"{len(results) - len(failed)} OK, {len(failed)} FAIL of {len(results)} quantities")
  return 1 if failed else 0


def live(original_repo: str, preset: str = "imagenet128", batch_size: int = 2,
         num_classes: Optional[int] = None, iterations: int = 1,
         widths: Tuple[Optional[int], Optional[int]] = (None, None),
         work_dir: Optional[str] = None, out: Callable[[str], None] = print) -> int:
  """Records a fixture from the user's original checkout, then checks the port against it.

  Each side runs in its own subprocess (TF1 graph mode for the original,
  eager for the port). Returns the exit status.
  """
  import subprocess
  from sagan_tf.compat.original_shim import check_original_repo
  problem = check_original_repo(original_repo)
  if problem:
    out(f"error: {problem}")
    return 2
  tmp = None
  if work_dir is None:
    tmp = tempfile.TemporaryDirectory(prefix="sagan_parity_")
    work_dir = tmp.name
  try:
    fixture_dir = os.path.join(work_dir, "fixture")
    cmd = [sys.executable, "-m", "sagan_tf.tools.make_fixture", f"--original_repo={original_repo}",
           f"--out={fixture_dir}", f"--preset={preset}", f"--batch_size={batch_size}",
           f"--iterations={iterations}"]
    for flag, value in (("num_classes", num_classes), ("gf_dim", widths[0]),
                        ("df_dim", widths[1])):
      if value:
        cmd.append(f"--{flag}={value}")
    out(f"recording the original: {' '.join(cmd[1:])}")
    rc = subprocess.call(cmd)
    if rc != 0:
      out(f"error: recording the original failed (exit {rc})")
      return 2
    proc = subprocess.run([sys.executable, "-m", "sagan_tf.tools.parity_check",
                           f"--fixture={fixture_dir}"], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout.splitlines():
      out(line)
    return proc.returncode
  finally:
    if tmp is not None:
      tmp.cleanup()


def main(argv=None) -> int:
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  src = parser.add_mutually_exclusive_group(required=True)
  src.add_argument("--fixture", help="fixture directory (meta.json, init.ckpt, ...)")
  src.add_argument("--original_repo", help="checkout of brain-research/self-attention-gan "
                   "(commit ad9612e): live mode")
  parser.add_argument("--preset", default="imagenet128", help="live mode: model size preset")
  parser.add_argument("--batch_size", type=int, default=2, help="live mode: batch size")
  parser.add_argument("--num_classes", type=int, default=None,
                      help="live mode: classes (default: the preset's)")
  parser.add_argument("--iterations", type=int, default=1, help="live mode: training "
                      "iterations (0: the forward quantities only, a quick full-size check)")
  parser.add_argument("--gf_dim", type=int, default=None, help="live mode: G width (default: "
                      "the preset's)")
  parser.add_argument("--df_dim", type=int, default=None, help="live mode: D width (default: "
                      "the preset's)")
  args = parser.parse_args(argv)
  if args.fixture:
    return verdict(args.fixture)
  return live(args.original_repo, args.preset, args.batch_size, args.num_classes,
              args.iterations, (args.gf_dim, args.df_dim))


if __name__ == "__main__":
  sys.exit(main())
