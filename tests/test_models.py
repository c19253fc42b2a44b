"""Generator and discriminator: architecture, TF1 names, replicas."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import PUBLIC_FIXTURE
from sagan_tf.compat.tf1 import CheckpointMismatch, load_tf1_checkpoint, read_tf1_checkpoint
from sagan_tf.config import Config
from sagan_tf.models.discriminator import build_discriminator
from sagan_tf.models.generator import build_generator
from sagan_tf.tools.parity_check import config_from_meta


def _params(model):
  return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.mark.slow
def test_imagenet128_parameter_counts_equal_the_original():
  cfg = Config.preset("imagenet128")
  assert _params(build_generator(cfg)) == 42_078_852
  assert _params(build_discriminator(cfg)) == 39_463_618


@pytest.mark.slow
def test_imagenet128_layer_sequence_and_shapes():
  cfg = Config.preset("imagenet128")
  g_map = build_generator(cfg).tf1_variable_map()
  assert tuple(g_map["model/g_snh0/Matrix"].shape) == (128, 4 * 4 * 1024)
  assert tuple(g_map["model/g_block3/snconv1/w"].shape) == (3, 3, 512, 256)
  assert tuple(g_map["model/g_non_local/sn_conv_theta/w"].shape) == (1, 1, 256, 32)
  assert tuple(g_map["model/g_non_local/sn_conv_g/w"].shape) == (1, 1, 256, 128)
  assert tuple(g_map["model/g_snconv_last/w"].shape) == (3, 3, 64, 3)
  assert tuple(g_map["model/g_block1/cbn_0/gamma"].shape) == (1000, 1024)
  d_map = build_discriminator(cfg).tf1_variable_map()
  assert tuple(d_map["model/d_non_local/sn_conv_attn/w"].shape) == (1, 1, 64, 128)
  assert tuple(d_map["model/d_embedding/embedding_map"].shape) == (1000, 1024)
  assert "model/d_block6/sn_conv3/w" not in d_map  # no shortcut conv: same width, no pooling


@pytest.mark.parametrize("size,g_attn,d_attn,variant", [
    (32, (16,), (16,), "original"), (64, (), (), "original"), (64, (16, 32), (16, 8), "paper"),
    pytest.param(256, (64,), (32,), "original", marks=pytest.mark.slow)])
def test_any_power_of_two_resolution_and_attention_placement(size, g_attn, d_attn, variant):
  cfg = dataclasses.replace(Config.preset("imagenet128"), image_size=size, gf_dim=8, df_dim=8,
                            num_classes=3, z_dim=8, g_attention_res=g_attn,
                            d_attention_res=d_attn, attention_variant=variant).validate()
  g, d = build_generator(cfg), build_discriminator(cfg)
  z = tf.random.normal([2, 8], seed=0)
  y = tf.constant([0, 2])
  images, attn = g(z, y, training=True, return_attention=True)
  assert images.shape == (2, size, size, 3)
  assert np.abs(images.numpy()).max() <= 1.0
  assert len(attn) == len(g_attn)
  for probs in attn.values():
    assert probs.shape[0] == 2
  assert d(images, y, training=True).shape == (2,)
  assert len(d.attention_layers()) == len(d_attn)


def test_bfloat16_models_compute_in_bf16_with_float32_outputs():
  cfg = dataclasses.replace(Config.preset("demo"), gf_dim=8, df_dim=8, num_classes=3,
                            precision="bfloat16")
  g, d = build_generator(cfg), build_discriminator(cfg)
  assert g.compute_dtype == "bfloat16"
  assert all(v.dtype == "float32" for v in g.variables + d.variables)
  images = g(tf.random.normal([2, cfg.z_dim]), tf.constant([0, 1]), training=True)
  logits = d(images, tf.constant([0, 1]))
  assert images.dtype == tf.float32 and logits.dtype == tf.float32
  assert np.all(np.isfinite(logits.numpy()))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(os.path.join(PUBLIC_FIXTURE, "meta.json")),
                    reason="parity fixture not found in ../shared")
def test_every_fixture_checkpoint_variable_maps_one_to_one():
  import json
  with open(os.path.join(PUBLIC_FIXTURE, "meta.json")) as f:
    cfg = config_from_meta(json.load(f))
  g, d = build_generator(cfg), build_discriminator(cfg)
  ckpt = os.path.join(PUBLIC_FIXTURE, "init.ckpt")
  mapping = load_tf1_checkpoint(ckpt, g, d)
  tensors = read_tf1_checkpoint(ckpt)
  model_names = {n for n in tensors if n.startswith("model/")}
  assert set(mapping) == model_names and len(mapping) == 169
  assert len({id(v) for v in mapping.values()}) == len(mapping)
  for name, var in mapping.items():
    np.testing.assert_array_equal(var.numpy(), tensors[name])
  # A different architecture is an error naming the variables.
  other = dataclasses.replace(cfg, num_classes=6)
  with pytest.raises(CheckpointMismatch, match="model/g_block1/cbn_0/gamma"):
    load_tf1_checkpoint(ckpt, build_generator(other), build_discriminator(other))
  no_attn = dataclasses.replace(cfg, g_attention_res=())
  with pytest.raises(CheckpointMismatch, match="not in the model: model/g_non_local"):
    load_tf1_checkpoint(ckpt, build_generator(no_attn), build_discriminator(no_attn))


@pytest.mark.slow
def test_u_stays_identical_on_every_replica_under_mirrored_strategy(two_cpu_strategy):
  cfg = dataclasses.replace(Config.preset("demo"), gf_dim=8, df_dim=8, num_classes=3,
                            precision="float32")
  strategy = two_cpu_strategy
  with strategy.scope():
    g, d = build_generator(cfg), build_discriminator(cfg)
  u_before = {n: v.numpy().copy() for n, v in d.u_variables().items()}

  @tf.function
  def step():
    def replica_fn():
      rid = tf.distribute.get_replica_context().replica_id_in_sync_group
      z = tf.random.stateless_normal([2, cfg.z_dim], seed=[1, rid])  # different data per replica
      y = tf.constant([0, 2])
      images = g(z, y, training=True, update_u=True)
      return d(images, y, training=True, update_u=True)
    return strategy.run(replica_fn)

  step()
  for model in (g, d):
    for name, u in model.u_variables().items():
      per_replica = [t.numpy() for t in strategy.experimental_local_results(u.value)]
      assert len(per_replica) == 2
      np.testing.assert_array_equal(per_replica[0], per_replica[1], err_msg=name)
  changed = [n for n, v in d.u_variables().items() if not np.array_equal(v.numpy(), u_before[n])]
  assert len(changed) == len(u_before)
