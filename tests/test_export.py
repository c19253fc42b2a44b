"""SavedModel export for TF Serving (sagan_tf/export.py)."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf import export as export_lib
from sagan_tf import run_dir
from sagan_tf.config import Config
from tool_fixtures import perturbed_generator, tiny_config, write_run

# Writing, reloading and running SavedModels (~30 s on 2 cores for the shared
# `exported` fixture alone); the folded forward pass itself is checked in the
# fast loop by tests/test_generator_paths.py.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(generator, cfg, path, loaded SavedModel) of a perturbed tiny 'original' model."""
  cfg = tiny_config("original")
  g = perturbed_generator(cfg)
  root = str(tmp_path_factory.mktemp("export"))
  path = export_lib.export_generator(g, cfg, root, 7)
  return g, cfg, path, tf.saved_model.load(path)


def _inputs(cfg, n=5, seed=3):
  z = tf.random.stateless_normal([n, cfg.z_dim], seed=[seed, 0])
  labels = tf.constant([i % cfg.num_classes for i in range(n)], tf.int32)
  return z, labels


def test_writes_numbered_version_folder_with_saved_model(exported):
  _, _, path, _ = exported
  assert os.path.basename(path) == "7"
  assert os.path.exists(os.path.join(path, "saved_model.pb"))
  assert not [d for d in os.listdir(os.path.dirname(path)) if not d.isdigit()]
  with open(os.path.join(path, "assets.extra", export_lib.INFO_FILE)) as f:
    info = json.load(f)
  assert info["num_classes"] == 3 and info["z_dim"] == 128 and info["image_size"] == 32


def test_signatures_have_the_documented_inputs_outputs_and_dtypes(exported):
  _, cfg, _, loaded = exported
  assert set(loaded.signatures) == {"serving_default", "sample"}
  serve = loaded.signatures["serving_default"]
  _, kwargs = serve.structured_input_signature
  assert {k: (v.dtype, v.shape.as_list()) for k, v in kwargs.items()} == {
      "z": (tf.float32, [None, cfg.z_dim]), "labels": (tf.int32, [None])}
  _, kwargs = loaded.signatures["sample"].structured_input_signature
  assert {k: (v.dtype, v.shape.as_list()) for k, v in kwargs.items()} == {
      "labels": (tf.int32, [None]), "seed": (tf.int64, []), "truncation": (tf.float32, [])}
  for name in ("serving_default", "sample"):
    outputs = loaded.signatures[name].structured_outputs
    assert outputs["images"].dtype == tf.uint8
    assert outputs["images_float"].dtype == tf.float32
    assert outputs["images"].shape.as_list() == [None, 32, 32, 3]


def test_serving_default_equals_generator_in_inference_mode(exported):
  g, cfg, _, loaded = exported
  z, labels = _inputs(cfg)
  out = loaded.signatures["serving_default"](z=z, labels=labels)
  want = g(z, labels, training=False, update_u=False).numpy()
  np.testing.assert_allclose(out["images_float"].numpy(), want, atol=1e-5, rtol=0)
  expected_uint8 = np.clip(np.round((out["images_float"].numpy() + 1) * 127.5), 0, 255)
  np.testing.assert_array_equal(out["images"].numpy(), expected_uint8.astype(np.uint8))


def test_paper_variant_export_equals_generator():
  cfg = tiny_config("paper")
  g = perturbed_generator(cfg, seed=5)
  module = export_lib.ServingGenerator(g)
  z, labels = _inputs(cfg, n=3)
  got = module.serve(z, labels)["images_float"].numpy()
  want = g(z, labels, training=False, update_u=False).numpy()
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_folded_model_holds_no_u_and_leaves_generator_u_unchanged(exported):
  g, _, path, loaded = exported
  stored = tf.train.list_variables(os.path.join(path, "variables", "variables"))
  names = [name for name, _ in stored if name.endswith("VARIABLE_VALUE")]
  assert names and not [n for n in names if "/u/" in n or n.startswith("u/")]
  # Folded kernels, biases and BN tables only: no [1, out] power-iteration vectors.
  assert not [n for n, shape in stored if len(shape) == 2 and shape[0] == 1]
  assert len(loaded.signatures["serving_default"].variables) == len(names)
  u_before = {k: v.numpy().copy() for k, v in g.u_variables().items()}
  export_lib.ServingGenerator(g)
  for k, v in g.u_variables().items():
    np.testing.assert_array_equal(v.numpy(), u_before[k])


def test_sample_is_deterministic_for_a_seed_and_differs_across_seeds(exported):
  _, _, _, loaded = exported
  sample = loaded.signatures["sample"]
  labels = tf.constant([0, 1, 2, 0], tf.int32)
  run = lambda seed, t: sample(labels=labels, seed=tf.constant(seed, tf.int64),
                               truncation=tf.constant(t, tf.float32))["images_float"].numpy()
  a, b, c = run(11, 1.0), run(11, 1.0), run(12, 1.0)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-3
  np.testing.assert_array_equal(run(11, 0.5), run(11, 0.5))


def test_sample_signature_uses_sample_latents(exported):
  _, cfg, _, loaded = exported
  labels = tf.constant([2, 0, 1], tf.int32)
  got = loaded.signatures["sample"](labels=labels, seed=tf.constant(4, tf.int64),
                                    truncation=tf.constant(0.7))["images_float"]
  z = export_lib.sample_latents(3, cfg.z_dim, 4, 0.7)
  want = loaded.signatures["serving_default"](z=z, labels=labels)["images_float"]
  np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)


def test_truncation_below_one_bounds_z_and_one_is_plain_normal():
  plain = export_lib.sample_latents(200, 128, 5, 1.0).numpy()
  assert abs(plain.std() - 1.0) < 0.02 and np.abs(plain).max() > 3.0
  np.testing.assert_array_equal(
      plain, tf.random.stateless_normal([200, 128], seed=[5, export_lib._LATENT_STREAM]))
  for t in (0.9, 0.5, 0.1):
    z = export_lib.sample_latents(200, 128, 5, t).numpy()
    assert np.abs(z).max() <= 2 * t + 1e-6
    assert np.abs(z).max() > 1.9 * t  # a truncated normal, not a squashed one
  with pytest.raises(tf.errors.InvalidArgumentError, match="truncation must be in"):
    export_lib.sample_latents(2, 4, 0, 1.5)
  with pytest.raises(tf.errors.InvalidArgumentError, match="truncation must be in"):
    export_lib.sample_latents(2, 4, 0, 0.0)


@pytest.mark.parametrize("bad", [3, -1])
def test_out_of_range_label_is_an_error_naming_the_range(exported, bad):
  _, cfg, _, loaded = exported
  z, _ = _inputs(cfg, n=2)
  labels = tf.constant([0, bad], tf.int32)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be class ids in \[0, 2\]"):
    loaded.signatures["serving_default"](z=z, labels=labels)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be class ids in \[0, 2\]"):
    loaded.signatures["sample"](labels=labels, seed=tf.constant(0, tf.int64),
                                truncation=tf.constant(1.0))


def test_mismatched_batch_sizes_are_an_error(exported):
  _, cfg, _, loaded = exported
  z, _ = _inputs(cfg, n=3)
  with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
    loaded.signatures["serving_default"](z=z, labels=tf.constant([0, 1], tf.int32))


_FRESH_PROCESS = textwrap.dedent("""
    import importlib.abc, importlib.machinery, json, sys
    sys.path = [p for p in sys.path if p not in ("", {root!r})]
    BLOCKED = ("sagan_tf", "keras", "tf_keras")

    class Refuse(importlib.abc.Loader):
      def create_module(self, spec):
        raise ImportError("import of " + spec.name + " is blocked in this test")
      def exec_module(self, module):
        raise ImportError("blocked")

    class Block(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
          return importlib.machinery.ModuleSpec(name, Refuse())  # no origin: "not installed"
        return None

    sys.meta_path.insert(0, Block())
    for name in BLOCKED:
      try:
        __import__(name)
        raise SystemExit(name + " was importable")
      except ImportError:
        pass
    import numpy as np
    import tensorflow as tf
    m = tf.saved_model.load({path!r})
    z = np.load({z!r})
    out = m.signatures["serving_default"](z=tf.constant(z), labels=tf.constant([0, 1, 2]))
    s = m.signatures["sample"](labels=tf.constant([1, 2]), seed=tf.constant(3, tf.int64),
                               truncation=tf.constant(0.5))
    loaded = [k for k in sys.modules if k.split(".")[0] in BLOCKED and sys.modules[k]]
    np.save({out_path!r}, out["images_float"].numpy())
    print(json.dumps(dict(images=str(out["images"].dtype.name), sample=list(s["images"].shape),
                          loaded=loaded)))
""")


def test_loads_and_runs_in_a_fresh_process_without_sagan_tf_or_keras(exported, tmp_path):
  g, cfg, path, _ = exported
  z, labels = _inputs(cfg, n=3)
  np.save(tmp_path / "z.npy", z.numpy())
  code = _FRESH_PROCESS.format(root=ROOT, path=path, z=str(tmp_path / "z.npy"),
                               out_path=str(tmp_path / "out.npy"))
  env = dict(os.environ, PYTHONPATH="", TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env,
                        capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report == {"images": "uint8", "sample": [2, 32, 32, 3], "loaded": []}
  want = g(z, labels, training=False, update_u=False).numpy()
  np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, atol=1e-5, rtol=0)


def test_saved_model_cli_show_and_run_succeed(exported, tmp_path):
  g, cfg, path, _ = exported
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  show = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir", path], env=env,
                        capture_output=True, text=True, timeout=240)
  assert show.returncode == 0, show.stderr[-3000:]
  for text in ("signature_def['serving_default']", "signature_def['sample']",
               "inputs['z']", "inputs['truncation']", "outputs['images']", "DT_UINT8"):
    assert text in show.stdout
  z, labels = _inputs(cfg, n=2)
  np.save(tmp_path / "z.npy", z.numpy())
  np.save(tmp_path / "labels.npy", labels.numpy())
  run = subprocess.run(
      [SAVED_MODEL_CLI, "run", "--dir", path, "--tag_set", "serve",
       "--signature_def", "serving_default",
       "--inputs", f"z={tmp_path / 'z.npy'};labels={tmp_path / 'labels.npy'}",
       "--outdir", str(tmp_path / "out")], env=env, capture_output=True, text=True,
      timeout=240)
  assert run.returncode == 0, run.stderr[-3000:]
  got = np.load(tmp_path / "out" / "images_float.npy")
  want = g(z, labels, training=False, update_u=False).numpy()
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
  assert np.load(tmp_path / "out" / "images.npy").dtype == np.uint8


def test_export_mode_uses_ema_weights_and_writes_the_step_version(tmp_path):
  model_dir = str(tmp_path / "run")
  g, ema = write_run(model_dir, tiny_config("original"), step=3, ema=True)
  cfg = Config.preset("demo", model_dir=model_dir)  # architecture comes from config.json
  assert export_lib.export(cfg) == 0
  path = os.path.join(model_dir, "export", "3")
  loaded = tf.saved_model.load(path)
  z, labels = _inputs(tiny_config(), n=2)
  got = loaded.signatures["serving_default"](z=z, labels=labels)["images_float"].numpy()
  np.testing.assert_allclose(got, ema(z, labels, training=False, update_u=False).numpy(),
                             atol=1e-5, rtol=0)
  with open(os.path.join(path, "assets.extra", export_lib.INFO_FILE)) as f:
    assert json.load(f)["weights"] == "ema_generator"

  # --use_ema=false restores the raw generator (the same path export takes).
  _, raw, step, source = run_dir.restore_for_mode(dataclasses.replace(cfg, use_ema=False),
                                                  "export")
  assert (step, source["weights"]) == (3, "generator")
  np.testing.assert_allclose(raw(z, labels, training=False, update_u=False).numpy(),
                             g(z, labels, training=False, update_u=False).numpy(), atol=1e-6)
