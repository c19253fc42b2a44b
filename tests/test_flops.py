"""train/flops: FLOP per iteration from the traced models, against a hand count."""

import dataclasses

import pytest

from sagan_tf import platform_info
from sagan_tf.config import Config
from sagan_tf.layers import upsample_conv
from sagan_tf.models.discriminator import build_discriminator
from sagan_tf.models.generator import build_generator
from sagan_tf.train import flops


def conv(b, r, k, cin, cout):
  """2 FLOP per multiply-add of a stride-1 SAME k x k conv on an r x r map."""
  return 2 * b * r * r * k * k * cin * cout


def snconv1(b, r_in, cin, cout, subpixel):
  """upsample + 3x3 conv: direct at 2r x 2r, or sub-pixel phases (four 2x2 convs at r x r)."""
  if subpixel:
    return 4 * 2 * b * r_in ** 2 * 2 * 2 * cin * cout
  return conv(b, 2 * r_in, 3, cin, cout)


@pytest.mark.parametrize("onednn", [False, True])
def test_forward_and_iteration_flops_equal_a_hand_count(onednn, monkeypatch):
  # oneDNN on: native gradients, so the 16x16-input block takes the sub-pixel phases form.
  monkeypatch.setattr(platform_info, "onednn_enabled", lambda: onednn)
  cfg = dataclasses.replace(
      Config.preset("demo"), image_size=32, num_classes=3, z_dim=8, gf_dim=4, df_dim=4,
      g_attention_res=(16,), d_attention_res=(), d_steps=2)
  b = 2
  # G: channels 16 (4x4), 16 (8x8), 8 (16x16), 4 (32x32); attention at 16x16, C = 8.
  want_g = 2 * b * 8 * (4 * 4 * 16)                                   # g_snh0
  for cin, cout, r_in in ((16, 16, 4), (16, 8, 8), (8, 4, 16)):     # g_block1..3
    r = 2 * r_in
    subpixel = onednn and r_in >= upsample_conv.SUBPIXEL_MIN_SIZE["native"]
    want_g += snconv1(b, r_in, cin, cout, subpixel) + conv(b, r, 3, cout, cout)
    want_g += conv(b, r_in, 1, cin, cout)                            # snconv3 before the upsampling
  n, nk = 16 * 16, 8 * 8                                             # queries, pooled keys
  want_g += conv(b, 16, 1, 8, 1) * 2 + conv(b, 16, 1, 8, 4)          # theta, phi, g
  want_g += 2 * b * n * nk * 1 + 2 * b * n * 4 * nk                  # q k^T, probs v
  want_g += conv(b, 16, 1, 4, 8)                                     # sn_conv_attn
  want_g += conv(b, 32, 3, 4, 3)                                     # g_snconv_last
  # D: channels 4 (16x16 out), 8, 16, 16 (last block, 4x4, no downsampling).
  want_d = conv(b, 32, 3, 3, 4) + conv(b, 32, 3, 4, 4) + conv(b, 16, 1, 3, 4)
  want_d += conv(b, 16, 3, 4, 8) + conv(b, 16, 3, 8, 8) + conv(b, 16, 1, 4, 8)
  want_d += conv(b, 8, 3, 8, 16) + conv(b, 8, 3, 16, 16) + conv(b, 8, 1, 8, 16)
  want_d += conv(b, 4, 3, 16, 16) + conv(b, 4, 3, 16, 16)
  want_d += 2 * b * 16 * 1                                           # d_sn_linear

  g, d = build_generator(cfg), build_discriminator(cfg)
  assert flops.generator_flops(g, cfg.z_dim, b) == want_g
  assert flops.discriminator_flops(d, cfg.image_size, b) == want_d
  # G step 3 F_G + 2 F_D; each of the 2 D steps F_G + 6 F_D; two replicas twice that.
  assert flops.train_iteration_flops(g, d, cfg, b) == 5 * want_g + 14 * want_d
  assert flops.train_iteration_flops(g, d, cfg, b, num_replicas=2) == 2 * (
      5 * want_g + 14 * want_d)
