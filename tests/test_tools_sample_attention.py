"""`./run.sh sample` and `./run.sh attention` (sagan_tf/tools/sample.py, attention_maps.py)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf.config import Config
from sagan_tf.errors import UserError
from sagan_tf.tools import attention_maps as am
from sagan_tf.tools import sample as sample_lib
from sagan_tf.tools import run_generator
from tool_fixtures import perturbed_generator, tiny_config, write_run


# ------------------------------------------------------------ key -> pixel mapping
def test_pooled_keys_map_to_their_2x2_blocks_and_keep_the_sum():
  probs = np.array([0.1, 0.2, 0.3, 0.4], np.float32)  # keys on the pooled 2x2 grid
  grid = am.attention_map(probs, 4)  # the layer is 4x4
  expected = np.array([[0.1, 0.1, 0.2, 0.2],
                       [0.1, 0.1, 0.2, 0.2],
                       [0.3, 0.3, 0.4, 0.4],
                       [0.3, 0.3, 0.4, 0.4]], np.float32) / 4
  np.testing.assert_allclose(grid, expected, rtol=1e-6)
  assert grid.sum() == pytest.approx(1.0)
  pixels = am.upscale(grid, 2)  # an 8x8 image: key (1, 0) covers rows 4..7, cols 0..3
  np.testing.assert_allclose(pixels[4:, :4], 0.3 / 4)
  np.testing.assert_allclose(pixels[:4, 4:], 0.2 / 4)


def test_paper_keys_map_one_to_one_to_positions():
  probs = np.arange(16, dtype=np.float32) / 120
  np.testing.assert_array_equal(am.attention_map(probs, 4), probs.reshape(4, 4))


def test_attention_map_rejects_a_key_count_that_fits_no_grid():
  with pytest.raises(ValueError, match="fit neither"):
    am.attention_map(np.ones(5) / 5, 4)


def test_query_pixel_maps_to_its_layer_position():
  assert am.query_index(0, 0, 32, 16) == 0
  assert am.query_index(31, 31, 32, 16) == 255
  assert am.query_index(5, 9, 32, 16) == 2 * 16 + 4
  assert am.query_index(5, 9, 32, 32) == 5 * 32 + 9


@pytest.mark.parametrize("variant,keys", [("original", 64), ("paper", 256)])
def test_generator_attention_rows_sum_to_one_with_the_variant_shape(variant, keys):
  g = perturbed_generator(tiny_config(variant))
  z = tf.random.stateless_normal([2, 128], seed=[1, 1])
  _, attn = g(z, tf.constant([0, 2]), training=False, update_u=False, return_attention=True)
  (probs,) = attn.values()
  assert probs.shape == (2, 256, keys)  # layer at 16x16: N = 256
  np.testing.assert_allclose(tf.reduce_sum(probs, -1).numpy(), 1.0, rtol=1e-5)
  assert am.attention_map(probs[0, 17].numpy(), 16).sum() == pytest.approx(1.0, rel=1e-5)


def test_queries_parse_pixels_and_reject_points_outside_the_image():
  assert am.parse_queries("1,2; 30,31", 32) == [(1, 2), (30, 31)]
  default = am.parse_queries("", 32)
  assert len(default) == 5 and (16, 16) in default
  assert all(0 <= y < 32 and 0 <= x < 32 for y, x in default)
  with pytest.raises(UserError, match="outside the 32x32"):
    am.parse_queries("0,32", 32)
  with pytest.raises(UserError, match="is not 'y,x'"):
    am.parse_queries("3", 32)


def test_overlay_uses_the_colour_ramp_and_marks_the_query():
  assert am.colormap(np.array(0.0)).tolist() == [0, 0, 4]
  assert am.colormap(np.array(1.0)).tolist() == [252, 255, 164]
  image = np.full((8, 8, 3), 128, np.uint8)
  heat = np.zeros((8, 8), np.float32)
  heat[2, 3] = 1.0
  out = am.overlay(image, heat)
  assert out.shape == (8, 8, 3) and out.dtype == np.uint8
  assert out[2, 3].sum() > out[0, 0].sum()
  marked = am.mark(out.copy(), 4, 4, (0, 255, 255), arm=2)
  assert marked[4, 4].tolist() == [0, 255, 255] and marked[4, 6].tolist() == [0, 255, 255]


# ------------------------------------------------------------ class mixing
def test_one_hot_class_weights_reproduce_the_generator():
  g = perturbed_generator(tiny_config("original"))
  z = tf.random.stateless_normal([3, 128], seed=[2, 2])
  labels = tf.constant([2, 0, 1])
  got = sample_lib.generate_mixed(g, z, tf.one_hot(labels, 3)).numpy()
  want = g(z, labels, training=False, update_u=False).numpy()
  np.testing.assert_allclose(got, want, atol=1e-6)


def test_class_mix_weights_go_from_one_class_to_the_other():
  w = sample_lib.class_mix_weights(0, 2, 5, 3)
  np.testing.assert_allclose(w[0], [1, 0, 0])
  np.testing.assert_allclose(w[-1], [0, 0, 1])
  np.testing.assert_allclose(w[2], [0.5, 0, 0.5])
  np.testing.assert_allclose(w.sum(1), 1.0)
  z = sample_lib.interpolate_latents(np.zeros(4), np.ones(4), 3)
  np.testing.assert_allclose(z[:, 0], [0.0, 0.5, 1.0])


def test_labels_default_to_a_spread_and_out_of_range_labels_are_user_errors():
  assert run_generator.choose_labels((), 3, 10) == (0, 1, 2)
  assert run_generator.choose_labels((), 1000, 4) == (0, 333, 666, 999)
  with pytest.raises(UserError, match=r"outside this model's classes 0\.\.2"):
    run_generator.choose_labels((1, 3), 3, 10)
  with pytest.raises(UserError, match="truncation"):
    run_generator.check_truncation(1.5)


# ------------------------------------------------------------ the two modes
@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
  """{variant: model_dir} of tiny runs (with an EMA generator)."""
  out = {}
  for variant in ("original", "paper"):
    model_dir = str(tmp_path_factory.mktemp(f"run_{variant}"))
    write_run(model_dir, tiny_config(variant), step=4)
    out[variant] = model_dir
  return out


def _png_shape(path):
  return tuple(tf.io.decode_png(tf.io.read_file(path)).shape)


@pytest.mark.slow
def test_sample_mode_writes_class_grids_and_interpolations(run_dirs):
  cfg = Config.preset("demo", model_dir=run_dirs["original"], num_images=3, labels=(0, 2),
                      truncation=0.8)
  assert sample_lib.sample(cfg) == 0
  out = os.path.join(run_dirs["original"], sample_lib.OUTPUT_SUBDIR)
  assert sorted(os.listdir(out)) == ["class_0000.png", "class_0002.png",
                                     "class_interpolation.png", "classes.png",
                                     "latent_interpolation.png"]
  cell = 32 * 2  # 32x32 images shown at 2x, 1 px padding at 2x
  assert _png_shape(os.path.join(out, "classes.png")) == (2 * cell + 6, 3 * cell + 8, 3)
  assert _png_shape(os.path.join(out, "class_interpolation.png"))[0] == cell + 4  # one pair


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["original", "paper"])
def test_attention_mode_writes_one_png_per_image_and_a_grid(run_dirs, variant, tmp_path):
  cfg = Config.preset("demo", model_dir=run_dirs[variant], labels=(1, 2), num_images=2,
                      queries="4,4;20,12", output_dir=str(tmp_path))
  assert am.attention(cfg) == 0
  folder = tmp_path / "g_non_local"
  names = sorted(os.listdir(folder))
  assert names == ["class0001_00.png", "class0001_01.png", "class0002_00.png",
                   "class0002_01.png", "grid.png"]
  panel = 32 * 4  # 32x32 upscaled to 128, 2 px padding
  assert _png_shape(str(folder / "class0001_00.png")) == (panel + 4, 3 * (panel + 2) + 2, 3)
  assert _png_shape(str(folder / "grid.png")) == (4 * (panel + 2) + 2, 3 * (panel + 2) + 2, 3)


@pytest.mark.slow
def test_every_attention_layer_gets_its_own_folder_and_export_folds_them_all(tmp_path):
  from sagan_tf import export as export_lib
  cfg = tiny_config("original", g_attention_res=(8, 16), labels=(1,), num_images=1,
                    queries="3,3")
  g = perturbed_generator(cfg)
  written = am.write_attention_maps(g, cfg, str(tmp_path))
  assert sorted(written) == ["g_non_local_16", "g_non_local_8"]
  for name in written:
    assert sorted(os.listdir(tmp_path / name)) == ["class0001_00.png", "grid.png"]
  z = tf.random.stateless_normal([2, 128], seed=[3, 3])
  labels = tf.constant([1, 2])
  got = export_lib.ServingGenerator(g).serve(z, labels)["images_float"].numpy()
  np.testing.assert_allclose(got, g(z, labels, training=False, update_u=False).numpy(),
                             atol=1e-5, rtol=0)
