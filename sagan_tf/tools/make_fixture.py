"""Record a parity fixture by running the user's checkout of the original code.

    python -m sagan_tf.tools.make_fixture --original_repo=PATH --out=DIR
        [--preset=imagenet128] [--batch_size=2] [--num_classes=N]
        [--gf_dim=N --df_dim=N] [--iterations=N]

Builds the original generator / discriminator (`generator_test`,
`discriminator_test`, or the variant matching the preset's attention
resolution) in tf.compat.v1 graph mode through `compat/original_shim.py`,
wires `model.py`'s hinge losses and its AdamOptimizers (learning rates and
beta1 from `model.py`'s flag defaults) the way the public fixture's README
("The graph") describes, and writes the files `parity_check --fixture`
reads, in that README's format: meta.json, variables.json, init.ckpt,
fixture.npz, grads.npz, after_step.ckpt (after --iterations iterations; the
step/* arrays are the last iteration's). Not recorded: the
`alt_read_after_update/` variant and the determinism reruns.

`--iterations=0` records the forward quantities only (README items 2-5:
init.ckpt, variables.json and fixture.npz, no gradients, no training
iteration): a quick check of a full-size model.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from sagan_tf.compat import original_shim
from sagan_tf.compat.original_shim import check_original_repo
from sagan_tf.config import Config
from sagan_tf.errors import UserError

SEED = 1234
ATTN_ON_SIGMA_RATIO = {"model/g_non_local/sigma_ratio": 0.75,
                       "model/d_non_local/sigma_ratio": -0.5}
_FUNCTIONS = {(): ("generator", "discriminator"), (32,): ("generator_test", "discriminator_test"),
              (64,): ("generator_test_64", "discriminator_test_64")}


def _config(preset, batch_size, num_classes, gf_dim, df_dim):
  over = {"batch_size": batch_size}
  for k, v in (("num_classes", num_classes), ("gf_dim", gf_dim), ("df_dim", df_dim)):
    if v:
      over[k] = v
  cfg = Config.preset(preset, **over)
  original_functions(cfg)
  return cfg


def original_functions(cfg):
  """(generator, discriminator) function names of the original that build cfg's
  architecture; UserError naming what the original cannot build."""
  if cfg.image_size != 128:
    raise UserError(f"--preset={cfg.preset} is {cfg.image_size}x{cfg.image_size}; the "
                    "original code builds 128x128 models only: use imagenet128 or "
                    "imagenet128_feat64")
  if tuple(cfg.g_attention_res) != tuple(cfg.d_attention_res) or \
      tuple(cfg.g_attention_res) not in _FUNCTIONS:
    raise UserError(f"--preset={cfg.preset}: attention at G {cfg.g_attention_res} / D "
                    f"{cfg.d_attention_res} has no original function")
  if 2 * cfg.df_dim < 8:
    raise UserError(f"--df_dim={cfg.df_dim}: the original D's attention needs 2*df_dim >= 8")
  base = Config()
  for name in ("g_mults", "d_mults", "attention_variant"):
    if getattr(cfg, name) != getattr(base, name):
      raise UserError(f"{name}={getattr(cfg, name)!r}: the original builds "
                      f"{getattr(base, name)!r} only")
  return _FUNCTIONS[tuple(cfg.g_attention_res)]


def original_training_graph(mods, cfg, z, y_fake, x_real, y_real,
                            step_counters: bool = False) -> dict:
  """The original's training graph, wired as `model.py` / `train_imagenet.py` do.

  In the current graph: G (training mode) in scope G_train, D on real images
  (updating D's `u`) in D_real, D on G's images (`NO_OPS`) in D_fake,
  `model.py`'s hinge losses, one TF1 AdamOptimizer per network with
  `model.py`'s flag defaults, D's and then G's `apply_gradients` under
  UPDATE_OPS. step_counters: each update counts into its own variable
  (`d_step`, `g_step`), as the public fixture's graph does. Returns the
  tensors and ops by name ("forward_variables": the global variables before
  the optimisers made their slots).
  """
  import tensorflow as tf
  v1 = tf.compat.v1
  model, flags, c = mods["model"], mods["model"].FLAGS, cfg.num_classes
  g_name, d_name = original_functions(cfg)
  g_fn, d_fn = getattr(mods["generator"], g_name), getattr(mods["discriminator"], d_name)
  t = {}
  with tf.name_scope("G_train"):
    t["g_train"] = g_fn(z, y_fake, cfg.gf_dim, c, is_training=True)
  with tf.name_scope("D_real"):
    t["d_real"] = d_fn(x_real, y_real, cfg.df_dim, c, update_collection=None)
  with tf.name_scope("D_fake"):
    t["d_fake"] = d_fn(t["g_train"], y_fake, cfg.df_dim, c, update_collection="NO_OPS")
  t["d_loss_real"] = model._get_d_real_loss(t["d_real"])
  t["d_loss_fake"] = model._get_d_fake_loss(t["d_fake"])
  t["d_loss"] = t["d_loss_real"] + t["d_loss_fake"]
  t["g_loss"] = model._get_g_loss(t["d_fake"])
  t["forward_variables"] = v1.global_variables()
  t["d_vars"] = [v for v in v1.trainable_variables() if v.op.name.startswith("model/d_")]
  t["g_vars"] = [v for v in v1.trainable_variables() if v.op.name.startswith("model/g_")]
  d_opt = v1.train.AdamOptimizer(flags.discriminator_learning_rate, beta1=flags.beta1)
  g_opt = v1.train.AdamOptimizer(flags.generator_learning_rate, beta1=flags.beta1)
  t["d_grads"] = d_opt.compute_gradients(t["d_loss"], var_list=t["d_vars"])
  t["g_grads"] = g_opt.compute_gradients(t["g_loss"], var_list=t["g_vars"])
  with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
    t["d_step"] = (v1.get_variable("d_step", initializer=0, trainable=False)
                   if step_counters else None)
    t["d_train"] = d_opt.apply_gradients(t["d_grads"], global_step=t["d_step"])
    t["g_step"] = (v1.get_variable("g_step", initializer=0, trainable=False)
                   if step_counters else None)
    t["g_train_op"] = g_opt.apply_gradients(t["g_grads"], global_step=t["g_step"])
  return t


def record(original_repo: str, out_dir: str, cfg, iterations: int = 1) -> None:
  """Runs the original and writes a fixture for cfg's size into out_dir."""
  original_shim.disable_eager()
  import tensorflow as tf
  v1 = tf.compat.v1
  mods = original_shim.import_original(original_repo)
  model = mods["model"]
  flags = model.FLAGS
  g_fn_name, d_fn_name = original_functions(cfg)
  g_fn, d_fn = getattr(mods["generator"], g_fn_name), getattr(mods["discriminator"], d_fn_name)
  b, c = cfg.batch_size, cfg.num_classes
  start = time.time()

  rs = np.random.RandomState(SEED)
  inputs = {"z": rs.standard_normal((b, cfg.z_dim)).astype(np.float32),
            "y_fake": rs.randint(0, c, size=b).astype(np.int64),
            "x_real": rs.uniform(-1, 1, (b, 128, 128, 3)).astype(np.float32),
            "y_real": rs.randint(0, c, size=b).astype(np.int64)}

  graph = tf.Graph()
  with graph.as_default():
    v1.set_random_seed(SEED)
    ph = {"z": v1.placeholder(tf.float32, [b, cfg.z_dim], "z"),
          "y_fake": v1.placeholder(tf.int64, [b], "y_fake"),
          "x_real": v1.placeholder(tf.float32, [b, 128, 128, 3], "x_real"),
          "y_real": v1.placeholder(tf.int64, [b], "y_real")}
    global_step = v1.train.get_or_create_global_step()
    t = original_training_graph(mods, cfg, ph["z"], ph["y_fake"], ph["x_real"], ph["y_real"],
                                step_counters=True)
    g_train, d_real, d_fake = t["g_train"], t["d_real"], t["d_fake"]
    d_loss_real, d_loss_fake = t["d_loss_real"], t["d_loss_fake"]
    d_loss, g_loss = t["d_loss"], t["g_loss"]
    all_vars, d_vars, g_vars = t["forward_variables"], t["d_vars"], t["g_vars"]
    d_grads, g_grads = t["d_grads"], t["g_grads"]
    d_train, g_train_op = t["d_train"], t["g_train_op"]
    d_step, g_step = t["d_step"], t["g_step"]
    global_inc = v1.assign_add(global_step, 1)
    with tf.name_scope("G_eval"):
      g_eval = g_fn(ph["z"], ph["y_fake"], cfg.gf_dim, c, is_training=False)
    model_vars = [v for v in v1.global_variables() if v.op.name.startswith("model/")]
    u_vars = {v.op.name: v for v in model_vars if v.op.name.endswith("/u")}
    _read_before_update(graph, [v for n, v in u_vars.items() if n.startswith("model/d_")])
    init_op = v1.global_variables_initializer()
    init_saver = v1.train.Saver(model_vars + [global_step, d_step, g_step])
    all_saver = v1.train.Saver(v1.global_variables())
    nl_vars = [v for v in model_vars if "_non_local/" in v.op.name and v in
               set(d_vars) | set(g_vars)]
    attn_d_grads = v1.gradients(d_loss, [v for v in nl_vars if v.op.name.startswith("model/d_")])
    attn_g_grads = v1.gradients(g_loss, [v for v in nl_vars if v.op.name.startswith("model/g_")])

  os.makedirs(out_dir, exist_ok=True)
  init_path = os.path.join(out_dir, "init.ckpt")
  feed = {ph[k]: v for k, v in inputs.items()}
  config = v1.ConfigProto()
  config.graph_options.rewrite_options.disable_meta_optimizer = True
  fx = dict(inputs)
  grads = {}
  with v1.Session(graph=graph, config=config) as sess:
    sess.run(init_op)
    init_saver.save(sess, init_path, write_meta_graph=False, write_state=False)

    def fresh():
      sess.run(init_op)
      init_saver.restore(sess, init_path)

    def read_u(prefix):
      return {n: sess.run(v) for n, v in u_vars.items() if n.startswith(prefix)}

    fresh()
    fx["g_train_out"] = sess.run(g_train, feed)
    fx.update({f"u_after_g_forward/{n}": u for n, u in read_u("model/g_").items()})
    fresh()
    fx["g_eval_out"] = sess.run(g_eval, feed)
    fresh()
    fx["d_real_logits"] = sess.run(d_real, feed)
    fx.update({f"u_after_d_real/{n}": u for n, u in read_u("model/d_").items()})
    fresh()
    fx["d_fake_logits"] = sess.run(d_fake, feed)
    attn = {}
    if iterations:  # 0: the forward quantities only
      fresh()
      for k, v in zip(("d_loss", "d_loss_real", "d_loss_fake", "g_loss"),
                      sess.run([d_loss, d_loss_real, d_loss_fake, g_loss], feed)):
        fx[f"loss_init/{k}"] = np.float32(v)
      for which, pairs in (("d", d_grads), ("g", g_grads)):
        fresh()
        values = sess.run([g for g, _ in pairs], feed)
        for (_, var), value in zip(pairs, values):
          grads[var.op.name] = _dense(value, var)
      fresh()
      for _ in range(iterations):
        g_out = sess.run([g_train_op, g_loss, d_fake], feed)
        d_out = sess.run([d_train, d_loss, d_loss_real, d_loss_fake, g_loss, d_real, d_fake],
                         feed)
        sess.run(global_inc)
      fx["step/g_run/g_loss"], fx["step/g_run/d_fake_logits"] = np.float32(g_out[1]), g_out[2]
      for k, v in zip(("d_loss", "d_loss_real", "d_loss_fake", "g_loss", "d_real_logits",
                       "d_fake_logits"), d_out[1:]):
        fx[f"step/d_run/{k}"] = np.asarray(v, np.float32)
      all_saver.save(sess, os.path.join(out_dir, "after_step.ckpt"), write_meta_graph=False,
                     write_state=False)
      # 10. Attention switched on (each gradient set in its own fresh state).
      if all(n.rsplit("/", 1)[0] + "/sigma_ratio" in {v.op.name for v in model_vars}
             for n in ATTN_ON_SIGMA_RATIO):
        by_name = {v.op.name: v for v in model_vars}

        def fresh_on():
          fresh()
          for n, value in ATTN_ON_SIGMA_RATIO.items():
            by_name[n].load(value, sess)

        fresh_on()
        fx["attn_on/g_train_out"] = sess.run(g_train, feed)
        fresh_on()
        out = sess.run([d_real, d_fake, d_loss, g_loss], feed)
        fx["attn_on/d_real_logits"], fx["attn_on/d_fake_logits"] = out[0], out[1]
        fx["attn_on/loss/d_loss"], fx["attn_on/loss/g_loss"] = np.float32(out[2]), np.float32(out[3])
        for glist, vs in ((attn_d_grads, [v for v in nl_vars if v.op.name.startswith("model/d_")]),
                          (attn_g_grads, [v for v in nl_vars if v.op.name.startswith("model/g_")])):
          fresh_on()
          for var, value in zip(vs, sess.run(glist, feed)):
            fx[f"attn_on/grads/{var.op.name}"] = _dense(value, var)
        attn = dict(ATTN_ON_SIGMA_RATIO)

  np.savez(os.path.join(out_dir, "fixture.npz"), **fx)
  if iterations:
    np.savez(os.path.join(out_dir, "grads.npz"), **grads)
  init_names = {v.op.name for v in model_vars} | {"global_step", "d_step", "g_step"}
  variables = [{"name": v.op.name, "shape": v.shape.as_list(), "dtype": v.dtype.base_dtype.name,
                "trainable": v in set(d_vars) | set(g_vars), "in_init_ckpt": v.op.name in init_names}
               for v in all_vars]
  meta = {
      "config": {"generator": f"generator.{g_fn_name}",
                 "discriminator": f"discriminator.{d_fn_name}",
                 "gf_dim": cfg.gf_dim, "df_dim": cfg.df_dim, "num_classes": c, "batch": b,
                 "z_dim": cfg.z_dim, "image_size": 128, "seed": SEED,
                 "lr_d": float(flags.discriminator_learning_rate),
                 "lr_g": float(flags.generator_learning_rate), "beta1": float(flags.beta1),
                 "adam": {"beta1": float(flags.beta1), "beta2": 0.999, "epsilon": 1e-8}},
      "iterations": iterations,
      "alt_read_after_update": False,
      "attn_on_sigma_ratio": attn,
      "recorded_by": "sagan_tf.tools.make_fixture (live mode)",
      "original_blobs": original_shim.MODEL_FILE_BLOBS,
      "tensorflow": tf.__version__, "numpy": np.__version__, "grappler": False,
      "seconds": round(time.time() - start, 1),
  }
  with open(os.path.join(out_dir, "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
  with open(os.path.join(out_dir, "variables.json"), "w") as f:
    json.dump(variables, f, indent=1)


def _dense(value, var):
  """A gradient as a dense array (IndexedSlices rows of one index summed)."""
  if hasattr(value, "indices"):
    dense = np.zeros(var.shape.as_list(), np.float32)
    np.add.at(dense, value.indices, value.values)
    return dense
  return np.asarray(value)


def _read_before_update(graph, d_u_vars) -> None:
  """D_fake reads each D `u` before D_real assigns it (the fixture's control edges).

  Without the edge nothing orders the two in one session.run (README, "The graph").
  """
  for var in d_u_vars:
    handle = var.handle
    reads = [op for op in graph.get_operations() if op.type == "ReadVariableOp"
             and op.name.startswith("D_fake/") and op.inputs[0].name == handle.name]
    assigns = [op for op in graph.get_operations() if op.type == "AssignVariableOp"
               and op.name.startswith("D_real/") and op.inputs[0].name == handle.name]
    if not reads or len(assigns) != 1:
      raise RuntimeError(f"{var.op.name}: found {len(reads)} D_fake reads and "
                         f"{len(assigns)} D_real assignments; the graph is not the expected one")
    for read in reads:
      assigns[0]._add_control_input(read)


def main(argv=None) -> int:
  import argparse
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--original_repo", required=True, help="checkout of the original (ad9612e)")
  p.add_argument("--out", required=True, help="directory to write the fixture into")
  p.add_argument("--preset", default="imagenet128")
  p.add_argument("--batch_size", type=int, default=2)
  p.add_argument("--num_classes", type=int, default=None, help="default: the preset's")
  p.add_argument("--gf_dim", type=int, default=None, help="default: the preset's")
  p.add_argument("--df_dim", type=int, default=None, help="default: the preset's")
  p.add_argument("--iterations", type=int, default=1,
                 help="training iterations to record; 0: the forward quantities only")
  args = p.parse_args(argv)
  try:
    problem = check_original_repo(args.original_repo)
    if problem:
      raise UserError(problem)
    if args.iterations < 0:
      raise UserError(f"--iterations={args.iterations} must be >= 0 (0: forward only)")
    cfg = _config(args.preset, args.batch_size, args.num_classes, args.gf_dim, args.df_dim)
    record(args.original_repo, args.out, cfg, args.iterations)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"fixture written to {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
