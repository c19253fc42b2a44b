"""The embedded `shapes` dataset: deterministic, balanced, geometry-only classes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tensorflow as tf

try:
  from tests import data_fixtures as fx
except ImportError:
  import data_fixtures as fx

from sagan_tf.data import pipeline, shapes
from sagan_tf.errors import UserError
from sagan_tf import image_grid


@pytest.fixture(autouse=True)
def small_pools(monkeypatch):
  monkeypatch.setattr(shapes, "DEFAULT_POOL_SIZE", 400)
  monkeypatch.setattr(shapes, "train_pool_size", lambda size: 400)


def _digest(a: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_same_seed_same_images_other_seed_other_images():
  labels = np.arange(30) % 10
  a = shapes.render_shapes(labels, np.random.default_rng(5), 32)
  b = shapes.render_shapes(labels, np.random.default_rng(5), 32)
  c = shapes.render_shapes(labels, np.random.default_rng(6), 32)
  assert a.dtype == np.uint8 and a.shape == (30, 32, 32, 3)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_pool_labels_are_balanced_and_pools_are_cached_read_only():
  images, labels = shapes.shapes_pool(1000, 32, seed=3, split="heldout")
  assert np.bincount(labels).tolist() == [100] * 10
  again = shapes.shapes_pool(1000, 32, seed=3, split="heldout")
  assert again[0] is images  # generated once per process
  with pytest.raises(ValueError):
    images[0, 0, 0, 0] = 1


def test_splits_and_parts_never_share_an_image():
  digests = {}
  for split, part in (("train", 0), ("test", 0), ("test", 1), ("heldout", 0)):
    images, _ = shapes.shapes_pool(300, 32, seed=0, split=split, part=part)
    digests[(split, part)] = {_digest(im) for im in images}
  keys = list(digests)
  for i, a in enumerate(keys):
    assert len(digests[a]) == 300
    for b in keys[i + 1:]:
      assert not digests[a] & digests[b], (a, b)


def test_sizes_other_than_32_render_with_the_same_layout():
  for size in (64, 128):
    images = shapes.render_shapes(np.arange(10), np.random.default_rng(0), size)
    assert images.shape == (10, size, size, 3)


def _nearest_mean_accuracy(train_x, train_y, test_x, test_y) -> float:
  mu, sd = train_x.mean(0), train_x.std(0) + 1e-9
  train_x, test_x = (train_x - mu) / sd, (test_x - mu) / sd
  means = np.stack([train_x[train_y == c].mean(0) for c in range(10)])
  pred = np.argmin(((test_x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
  return float((pred == test_y).mean())


def _features(images, masks):
  """Per image: (mean colour of the shape, centroid) and a rotation/scale-free radial profile."""
  w = masks / masks.sum(axis=(1, 2), keepdims=True)
  colour = np.einsum("nyx,nyxc->nc", w, images.astype(np.float64) / 255)
  ys, xs = np.mgrid[:images.shape[1], :images.shape[2]] + 0.5
  cy, cx = (w * ys).sum((1, 2)), (w * xs).sum((1, 2))
  r = np.hypot(ys[None] - cy[:, None, None], xs[None] - cx[:, None, None])
  r = r / np.sqrt((w * r ** 2).sum((1, 2)))[:, None, None]
  profile = np.stack([(w * ((r >= lo) & (r < lo + 0.25))).sum((1, 2))
                      for lo in np.arange(0, 2.5, 0.25)], axis=1)
  return np.column_stack([colour, cx, cy]), profile


def test_class_is_told_by_geometry_not_by_colour_or_position():
  rng = np.random.default_rng(11)
  labels = rng.permutation(np.arange(3000) % 10)
  images, masks = shapes.render_shapes(labels, rng, 32, return_masks=True)
  colour_pos, profile = _features(images, masks)
  split = 2000
  acc_colour_pos = _nearest_mean_accuracy(colour_pos[:split], labels[:split],
                                          colour_pos[split:], labels[split:])
  acc_geometry = _nearest_mean_accuracy(profile[:split], labels[:split],
                                        profile[split:], labels[split:])
  assert acc_colour_pos < 0.3, acc_colour_pos  # chance is 0.1
  assert acc_geometry > 0.5, acc_geometry  # the same classifier does see shapes


def test_shapes_stand_out_from_their_background():
  rng = np.random.default_rng(1)
  images, masks = shapes.render_shapes(np.arange(200) % 10, rng, 32, return_masks=True)
  luma = images.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255
  inside = (luma * (masks > 0.99)).sum((1, 2)) / (masks > 0.99).sum((1, 2))
  outside = (luma * (masks < 0.01)).sum((1, 2)) / (masks < 0.01).sum((1, 2))
  assert np.median(np.abs(inside - outside)) > 0.25
  assert (np.abs(inside - outside) > 0.1).mean() > 0.95


def test_background_is_one_colour_and_the_fill_differs_from_it_by_the_contrast():
  rng = np.random.default_rng(3)
  images, masks = shapes.render_shapes(np.arange(100) % 10, rng, 32, return_masks=True)
  for image, mask in zip(images, masks):
    outside = image[mask == 0].astype(int)
    assert len(outside) > 300 and (outside == outside[0]).all()  # plain: one RGB value
    inside = image[mask == 1].astype(float) / 255
    luma = np.array([0.299, 0.587, 0.114])
    assert abs(inside[0] @ luma - outside[0] / 255 @ luma) >= 0.35 - 2 / 255


def test_backgrounds_and_colours_vary():
  images = shapes.render_shapes(np.zeros(100, int), np.random.default_rng(2), 32)
  corners = images[:, :3, :3].reshape(100, -1).mean(1)
  assert corners.std() > 30  # backgrounds span dark to bright


def test_pipeline_serves_static_batches_in_range_for_training():
  cfg = fx.tiny_config()
  ds = pipeline.make_dataset(cfg)
  assert ds.element_spec[0].shape.as_list() == [8, 32, 32, 3]
  x, y = next(iter(ds))
  assert x.dtype == tf.float32 and y.dtype == tf.int32
  assert -1.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
  assert pipeline.dataset_num_classes(cfg) == 10


def test_pipeline_shards_the_pool_disjointly_over_input_pipelines():
  cfg = fx.tiny_config(batch_size=16)
  seen = []
  for i in range(2):
    ctx = tf.distribute.InputContext(2, i, 2)
    ds = pipeline.make_dataset(cfg, ctx)
    assert ds.element_spec[0].shape.as_list()[0] == 8
    seen.append({_digest(np.round((im + 1) * 127.5).astype(np.uint8))
                 for x, _ in ds.take(30) for im in x.numpy()})
  assert len(seen[0]) == len(seen[1]) == 200  # each covers its half of 400
  assert not seen[0] & seen[1]


def test_fewer_classes_use_the_first_ones():
  cfg = fx.tiny_config(num_classes=3)
  labels = np.concatenate([y.numpy() for _, y in pipeline.make_dataset(cfg).take(10)])
  assert set(labels.tolist()) == {0, 1, 2}


def test_eval_real_images_come_from_the_test_split_not_the_training_pool():
  cfg = fx.tiny_config(eval_batch_size=32)
  train = {_digest(im) for im in shapes.shapes_pool(400, 32, 0, split="train")[0]}
  real = [x.numpy() for x, _ in pipeline.real_images_for_eval(cfg, 70)]
  assert [len(x) for x in real] == [32, 32, 6]
  real_u8 = np.round((np.concatenate(real) + 1) * 127.5).astype(np.uint8)
  assert not {_digest(im) for im in real_u8} & train


def test_unknown_split_is_a_user_error():
  with pytest.raises(UserError, match="no split 'validation'"):
    shapes.shapes_pool(10, 32, 0, split="validation")


def test_grid_has_one_row_per_class_and_is_written_as_png(tmp_path):
  path = shapes.write_shapes_grid(str(tmp_path / "sub" / "grid.png"), per_class=4,
                                  scale=2)
  png = tf.io.decode_png(tf.io.read_file(path)).numpy()
  # 10 rows of 32 px + 11 one-pixel pads, times 2; 4 columns.
  assert png.shape == ((10 * 33 + 1) * 2, (4 * 33 + 1) * 2, 3)


def test_image_grid_places_images_row_by_row_and_accepts_floats():
  imgs = np.zeros((3, 2, 2, 3), np.uint8)
  imgs[1] = 200
  grid = image_grid.image_grid(imgs, ncols=2, pad=1, pad_value=9)
  assert grid.shape == (7, 7, 3)
  assert (grid[1:3, 4:6] == 200).all() and (grid[4:6, 4:6] == 9).all()
  floats = image_grid.image_grid(np.full((1, 2, 2, 1), 1.0, np.float32), pad=0)
  assert (floats == 255).all() and floats.shape == (2, 2, 3)


def test_eval_from_the_train_split_reads_a_slice_of_the_training_pool():
  cfg = fx.tiny_config(eval_batch_size=50)
  pool = shapes.shapes_pool(400, 32, 0, split="train")[0]
  real = np.concatenate([x.numpy() for x, _ in
                         pipeline.real_images_for_eval(cfg, 100, split="train", part=1)])
  np.testing.assert_array_equal(np.round((real + 1) * 127.5).astype(np.uint8), pool[100:200])
