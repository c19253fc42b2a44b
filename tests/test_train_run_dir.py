"""End to end in-process: a ram:// run directory (the stand-in for gs://), in
bfloat16, and a diverging run that stops and keeps its last good checkpoint."""

import json
import uuid

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf import run_dir
from sagan_tf.train import loop

import train_helpers as th


@pytest.mark.slow
def test_ram_model_dir_works_end_to_end_in_bfloat16():
  model_dir = f"ram://sagan-test-{uuid.uuid4().hex}/run"
  cfg = th.tiny_config(model_dir=model_dir, train_steps=2, checkpoint_every_steps=1,
                       sample_every_steps=2, summary_every_steps=1, ema_decay=0.9,
                       precision="bfloat16")
  assert loop.train(cfg) == 0  # a non-finite bfloat16 loss would raise
  files = set(tf.io.gfile.listdir(model_dir))
  assert tf.io.gfile.exists(run_dir.config_path(model_dir))
  assert any(f.startswith("events.out.tfevents") for f in files)
  assert tf.io.gfile.exists(run_dir.sample_path(model_dir, 2))
  with tf.io.gfile.GFile(run_dir.config_path(model_dir)) as f:
    assert json.load(f)["gf_dim"] == 8
  assert run_dir.load_run_config(model_dir) == cfg
  latest = run_dir.latest_checkpoint(model_dir)
  assert latest.endswith("ckpt-2") and run_dir.checkpoint_step(latest) == 2
  generator, step = run_dir.restore_generator(cfg)
  assert step == 2
  images = generator(tf.zeros([3, cfg.z_dim]), tf.range(3), training=False, update_u=False)
  assert images.shape == (3, 32, 32, 3) and np.all(np.isfinite(images.numpy()))
  # TensorBoard got the scalars the issue lists.
  events = [f for f in files if f.startswith("events.out.tfevents")]
  tags = set()
  for event_file in events:
    for raw in tf.data.TFRecordDataset(f"{model_dir}/{event_file}"):
      event = tf.compat.v1.Event.FromString(raw.numpy())
      tags.update(v.tag for v in event.summary.value)
  assert {"d_loss", "d_loss_real", "d_loss_fake", "g_loss", "real_logits_mean",
          "fake_logits_mean", "lr_g", "lr_d", "gamma/g_non_local", "gamma/d_non_local",
          "images_per_sec", "samples"} <= tags


def _nan_after(batch_index, cfg):
  """fn(input_context) -> batches of 0.1 images, NaN from batch `batch_index` on."""
  def dataset_fn(ctx):
    b = cfg.per_replica_batch(ctx.num_replicas_in_sync)
    def batch(i):
      value = tf.where(i >= batch_index, tf.constant(np.nan, tf.float32), 0.1)
      return tf.fill([b, cfg.image_size, cfg.image_size, 3], value), tf.zeros([b], tf.int32)
    return tf.data.Dataset.range(1_000_000).map(batch)
  return dataset_fn


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  cfg = th.tiny_config(model_dir=str(tmp_path), train_steps=10, checkpoint_every_steps=2,
                       g_attention_res=(), d_attention_res=())
  # Batch 0 is the eager data check; iteration k uses batch k: NaN at step 4.
  # The losses of that step may print finite: with oneDNN (on by default on
  # AVX512_BF16/AMX CPUs) the NaN images gave d_loss=1.009 while the gradients,
  # and so the weights, were NaN; the state check stops the same step.
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"Non-finite loss or weights at step 4 \(d_loss=\S+, g_loss=\S+\): "
                           r"training stopped without saving that state; the newest finite "
                           r"checkpoint is .*ckpt-2"):
    loop.Trainer(cfg, tf.distribute.get_strategy(), _nan_after(4, cfg)).run()
  latest = run_dir.latest_checkpoint(cfg.model_dir)
  assert latest.endswith("ckpt-2")
  tables = th.read_checkpoint_tables(latest)
  assert all(np.all(np.isfinite(v)) for v in tables.values())


@pytest.mark.slow
def test_self_eval_scores_step_0_and_the_end_and_prints_them_side_by_side(tmp_path, capsys):
  from sagan_tf.eval import classifiers, run  # pylint: disable=g-import-not-at-top
  stats = str(tmp_path / "stats")
  # An (untrained) classifier already in the cache: the run loads it, not trains.
  classifiers.shapes_classifier(stats, image_size=32, seed=0, train_images=10,
                                test_images=100, max_epochs=0)
  cfg = th.tiny_config(model_dir=str(tmp_path / "run"), train_steps=2, self_eval=True,
                       stats_dir=stats, num_samples=60, eval_batch_size=30)
  assert loop.train(cfg) == 0
  start, end = run.read_result(cfg, 0), run.read_result(cfg, 2)
  assert start["step"] == 0 and end["step"] == 2
  assert start["fcd"] != end["fcd"]  # two different generators were scored
  out = capsys.readouterr().out
  assert "step 0" in out and "step 2" in out
  assert f"{start['fcd']:.5g}" in out and f"{end['fcd']:.5g}" in out
  assert "target class consistency" in out
  # The box after the table names every picture and the JSON, and they exist.
  box = out[out.index("The final generator's pictures and scores"):]
  rows = dict(line.strip("| ").split("  ", 1) for line in box.splitlines()[2:-1])
  rows = {k.strip(): v.strip() for k, v in rows.items()}
  assert rows["Samples (one row per class)"] == run_dir.sample_path(cfg.model_dir, 2)
  assert rows["Evaluation"] == run_dir.eval_result_path(cfg.model_dir, 2, end["kind"])
  assert rows["TensorBoard"] == f"tensorboard --logdir {cfg.model_dir}"
  maps = {k: v for k, v in rows.items() if k.startswith("Attention maps")}
  assert len(maps) == 1  # the tiny model's one generator attention layer
  (grid_png,) = maps.values()
  assert grid_png.startswith(run_dir.final_attention_dir(cfg.model_dir, 2))
  for path in [*rows.values()][:-1]:
    assert tf.io.gfile.exists(path), path
  # One image per sample-grid row (every class) beside the grid: the
  # classes' first columns, each [image | 5 query panels] wide.
  folder = grid_png.rsplit("/", 1)[0]
  names = sorted(tf.io.gfile.listdir(folder))
  assert names == sorted(["grid.png"] + [f"class{c:04d}_00.png" for c in range(cfg.num_classes)])
  grid = tf.io.decode_png(tf.io.read_file(grid_png)).numpy()
  panel = tf.io.decode_png(tf.io.read_file(f"{folder}/class0000_00.png")).numpy()
  assert grid.shape[1] == panel.shape[1]
  assert grid.shape[0] > panel.shape[0] * (cfg.num_classes - 0.5)
