"""The run directory every mode uses: its layout, config.json, checkpoints.

Layout of `--model_dir` (a local path, gs:// or ram://; every access goes
through tf.io.gfile):

    config.json        the Config of the run's first launch (written once by
                       training, never overwritten)
    launches.jsonl     one JSON line per training launch: its time, starting
                       step, settings changed from the launch before, full
                       Config (read_launches; the last one is the run's
                       current config, load_run_config)
    checkpoints/       tf.train.CheckpointManager: ckpt-<step>.index/.data-*
    samples/           step_XXXXXXX.png sample grids
    eval/              step_XXXXXXX.KIND.json results (one per step and kind of
                       evaluation), TensorBoard scalars, real-
                       image statistics (the eval mode)
    export/<step>/     SavedModel versions (the export mode; --export_dir)
    attention/step_XXXXXXX/<layer>/   attention maps of the final generator
                       (written when training ends)
    samples_tool/, attention/<layer>/   PNGs of the sample and attention
                       tools (their OUTPUT_SUBDIR; --output_dir)
    events.out.tfevents.*   TensorBoard scalars and images

A mode that reads a trained run gets its Config from `run_config` (the run's
current config merged with what the user typed, config.merge) and its
generator from `restore_for_mode`.

A checkpoint holds `tf.train.Checkpoint(generator=, discriminator=,
g_optimizer=, d_optimizer=, step=[, ema_generator=])`. The three models are
stored as tables {original TF1 name: variable} (`model.tf1_variable_map()`,
e.g. `model/g_block1/snconv1/w`), not as the Keras objects themselves:
Keras 3 does not give `tf.train.Checkpoint` the layers it keeps in Python
lists (the blocks of G and D), so a checkpoint of the Keras model would miss
every block's `u` and moving statistics and the whole EMA generator. The
table also makes a checkpoint independent of the models' Python attribute
layout and lets an architecture mismatch be reported by TF1 name. The
optimisers are Keras objects (their slot variables are tracked). `step` is
the iteration counter, which is also the whole random state of z and fake-
label sampling (`step.generator_inputs` is stateless).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import glob
import json
import os
import re
import shutil
import tempfile
from typing import Dict, List, Mapping, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from sagan_tf import atomic_write
from sagan_tf import config as config_lib
from sagan_tf.errors import UserError, storage_errors
from sagan_tf.models.generator import build_generator

CONFIG_FILE = "config.json"
LAUNCH_LOG = "launches.jsonl"
CHECKPOINT_SUBDIR = "checkpoints"
SAMPLES_SUBDIR = "samples"
EVAL_SUBDIR = "eval"
EXPORT_SUBDIR = "export"
ATTENTION_SUBDIR = "attention"
CHECKPOINT_PREFIX = "ckpt"

# Children of the tf.train.Checkpoint that hold models (as TF1-name tables).
MODEL_PARTS = ("generator", "discriminator", "ema_generator")


# ------------------------------------------------------------------ layout
def _join(*parts: str) -> str:
  # os.path.join keeps "gs://b/x" and "ram://x" intact on POSIX.
  return os.path.join(*parts)


def config_path(model_dir: str) -> str:
  return _join(model_dir, CONFIG_FILE)


def launch_log_path(model_dir: str) -> str:
  return _join(model_dir, LAUNCH_LOG)


def checkpoint_dir(model_dir: str) -> str:
  return _join(model_dir, CHECKPOINT_SUBDIR)


def samples_dir(model_dir: str) -> str:
  return _join(model_dir, SAMPLES_SUBDIR)


def sample_path(model_dir: str, step: int) -> str:
  return _join(samples_dir(model_dir), f"step_{int(step):07d}.png")


def final_attention_dir(model_dir: str, step: int) -> str:
  """MODEL_DIR/attention/step_XXXXXXX: the attention maps training writes of
  its final generator (the attention tool writes MODEL_DIR/attention/<layer>)."""
  return _join(model_dir, ATTENTION_SUBDIR, f"step_{int(step):07d}")


def eval_dir(model_dir: str) -> str:
  return _join(model_dir, EVAL_SUBDIR)


def eval_result_path(model_dir: str, step: int, kind: Optional[str] = None) -> str:
  """MODEL_DIR/eval/step_XXXXXXX.KIND.json: one file per step and kind of
  evaluation (eval.run.result_kind: metric set, classifier, sample count), so
  a new evaluation never replaces another kind's. kind None: the name
  earlier versions wrote (step_XXXXXXX.json)."""
  suffix = f".{kind}" if kind else ""
  return _join(eval_dir(model_dir), f"step_{int(step):07d}{suffix}.json")


def eval_result_paths(model_dir: str, step: int) -> List[str]:
  """Every result file of `step` (all kinds, and the older unsuffixed name)."""
  pattern = _join(eval_dir(model_dir), f"step_{int(step):07d}*.json")
  return sorted(tf.io.gfile.glob(pattern))


def export_root(cfg) -> str:
  """Where export writes its version folders: --export_dir, else MODEL_DIR/export."""
  return cfg.export_dir or _join(cfg.model_dir, EXPORT_SUBDIR)


# ------------------------------------------------------------------ config
def write_run_config(cfg, model_dir: str) -> str:
  """Writes model_dir/config.json (config.to_dict); returns its path."""
  check_model_dir(model_dir)
  path = config_path(model_dir)
  kept = ("the config.json there is unchanged" if tf.io.gfile.exists(path)
          else "no file of the run was written yet")
  with storage_errors(path, kept, "re-run the same command (or pass another --model_dir)"):
    if not tf.io.gfile.exists(model_dir):
      tf.io.gfile.makedirs(model_dir)
    # Atomic (temporary name + rename): a kill during the write leaves the old file.
    return atomic_write.write_json(path, config_lib.to_dict(cfg))


def check_model_dir(model_dir: str) -> None:
  """UserError when model_dir exists but is not a directory."""
  if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
    raise UserError(f"--model_dir={model_dir} is a file, not a directory; pass a new or "
                    "existing run directory.")


def has_run_config(model_dir: str) -> bool:
  return bool(model_dir) and tf.io.gfile.exists(config_path(model_dir))


def load_run_config(model_dir: str) -> config_lib.Config:
  """The run's current Config: its last launch's (launches.jsonl), else config.json.

  A run resumed with --allow_config_change trains on with the settings of
  its last launch; config.json keeps those of the first.

  Raises:
    UserError: no config.json there (not a training run directory), or it is
      not readable JSON.
  """
  if not model_dir:
    raise UserError("No --model_dir given; pass the run directory that training wrote.")
  launches = read_launches(model_dir)
  if launches:
    return config_lib.from_dict(launches[-1]["config"])
  path = config_path(model_dir)
  if not tf.io.gfile.exists(path):
    raise UserError(f"{path} does not exist: --model_dir={model_dir} is not a training "
                    "run directory; pass the --model_dir of a run, or train one first "
                    "with ./run.sh train --model_dir=" + model_dir + ".")
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      stored = json.loads(f.read())
  except (ValueError, tf.errors.OpError) as e:
    raise UserError(f"{path} is not a readable config ({e}); restore it or "
                    "start a new --model_dir.") from e
  if not isinstance(stored, dict):
    raise UserError(f"{path} holds a JSON {type(stored).__name__}, not a config object; "
                    "restore the run's config.json or start a new --model_dir.")
  cfg = config_lib.from_dict(stored)
  unknown = sorted(set(stored) - {f.name for f in dataclasses.fields(config_lib.Config)})
  if unknown:
    logging.warning("%s has fields this version does not know (ignored): %s", path,
                    ", ".join(unknown))
  return cfg


def read_launches(model_dir: str) -> List[Dict]:
  """The entries of model_dir/launches.jsonl, oldest first ([] when there is none).

  A line that is not whole JSON (a launch killed while appending) is skipped
  with a warning.
  """
  path = launch_log_path(model_dir)
  if not model_dir or not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path, "r") as f:
    lines = f.read().splitlines()
  out = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      entry = json.loads(line)
    except ValueError:
      logging.warning("%s line %d is not a whole entry (ignored).", path, number)
      continue
    if isinstance(entry, dict) and isinstance(entry.get("config"), dict):
      out.append(entry)
  return out


def append_launch(model_dir: str, cfg, start_step: int, changes=()) -> str:
  """Appends one line {time, start_step, changes, config} to launches.jsonl.

  Local files: one write of the whole line in append mode, then fsync (a
  kill leaves the earlier lines intact; read_launches skips a torn last
  line). Other file systems cannot append: the file is rewritten atomically.
  Returns the path.
  """
  entry = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "start_step": int(start_step), "changes": list(changes),
           "config": config_lib.to_dict(cfg)}
  line = json.dumps(entry, sort_keys=True) + "\n"
  path = launch_log_path(model_dir)
  with storage_errors(path, "the earlier launches' lines and the checkpoints are intact"):
    _append_line(model_dir, path, line)
  return path


def _append_line(model_dir: str, path: str, line: str) -> None:
  if "://" not in path:
    os.makedirs(model_dir, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    size = os.fstat(fd).st_size
    try:
      data = line.encode("utf-8")
      if os.write(fd, data) != len(data):  # a short write: the disk filled up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
      os.fsync(fd)
    except OSError:
      os.ftruncate(fd, size)  # a full disk: no torn line for the next launch to append to
      raise
    finally:
      os.close(fd)
  else:
    old = ""
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path, "r") as f:
        old = f.read()
    elif not tf.io.gfile.exists(model_dir):
      tf.io.gfile.makedirs(model_dir)
    if old and not old.endswith("\n"):
      old += "\n"
    atomic_write.write_text(path, old + line)


def run_config(mode: str, cfg, typed=None):
  """The Config of `mode` on the run in cfg.model_dir: its config.json with
  what the user typed on top (config.merge; typed None = cfg's differences
  from its preset). Raises UserError when model_dir holds no run."""
  return config_lib.merge(mode, cfg, typed, stored=load_run_config(cfg.model_dir))


# ------------------------------------------------------------ checkpoints
def model_table(model) -> Dict[str, object]:
  """{original TF1 name: variable} of a model: what a checkpoint stores for it."""
  return dict(model.tf1_variable_map())


def make_checkpoint(models, step_var) -> tf.train.Checkpoint:
  """tf.train.Checkpoint of a run's state (see the module docstring).

  Args:
    models: step.GANModels (generator, discriminator, g_optimizer,
      d_optimizer, optional ema_generator).
    step_var: the int64 iteration counter.
  """
  parts = dict(generator=model_table(models.generator),
               discriminator=model_table(models.discriminator),
               g_optimizer=models.g_optimizer, d_optimizer=models.d_optimizer,
               step=step_var)
  if models.ema_generator is not None:
    parts["ema_generator"] = model_table(models.ema_generator)
  return tf.train.Checkpoint(**parts)


def make_manager(checkpoint: tf.train.Checkpoint, model_dir: str, max_to_keep: int,
                 directory: Optional[str] = None,
                 init_fn=None) -> tf.train.CheckpointManager:
  """CheckpointManager over model_dir/checkpoints (or `directory`), names ckpt-<step>.

  init_fn: what the manager's restore_or_initialize() calls when `directory`
  holds no checkpoint (a non-chief worker's scratch directory: loop.py).
  """
  return tf.train.CheckpointManager(
      checkpoint, directory or checkpoint_dir(model_dir), max_to_keep=max(1, max_to_keep),
      checkpoint_name=CHECKPOINT_PREFIX, init_fn=init_fn)


def _state_latest(directory: str) -> Optional[str]:
  """The newest checkpoint the `checkpoint` state file of `directory` names.

  Raises UserError naming the state file when it is not readable (garbage,
  truncated); None when there is none or it names nothing.
  """
  state = _join(directory, "checkpoint")
  if not tf.io.gfile.exists(state):
    return None
  try:
    return tf.train.latest_checkpoint(directory)
  except (UnicodeDecodeError, ValueError, tf.errors.OpError) as e:
    intact = newest_intact(directory)
    raise UserError(
        f"The checkpoint state file {state} is corrupt ({type(e).__name__}); delete it "
        "(it only names the checkpoints) or pass --checkpoint="
        f"{intact or 'PREFIX'}{' (the newest intact one)' if intact else ''}; "
        "training resumes from the newest intact checkpoint by itself.") from None


def latest_checkpoint(model_dir: str) -> Optional[str]:
  """Path prefix of the newest checkpoint in model_dir/checkpoints, or None."""
  if not model_dir:
    return None
  return _state_latest(checkpoint_dir(model_dir))


def list_checkpoints(directory: str) -> List[Tuple[int, str]]:
  """[(number, prefix)] of every ckpt-<number> with any file in `directory`
  (an .index or a .data-* shard), oldest first; the state file is not read."""
  if not tf.io.gfile.isdir(directory):
    return []
  numbers = set()
  for name in tf.io.gfile.listdir(directory):
    match = _CKPT_FILE.match(name.rstrip("/"))
    if match:
      numbers.add(int(match.group(1)))
  return [(n, _join(directory, f"{CHECKPOINT_PREFIX}-{n}")) for n in sorted(numbers)]


_CKPT_FILE = re.compile(re.escape(CHECKPOINT_PREFIX) + r"-(\d+)\.(?:index|data-\d+-of-\d+)$")


def checkpoint_problem(path: str) -> Optional[str]:
  """Why the checkpoint `path` cannot be trusted, or None when it is intact.

  Reads every stored tensor (so a missing, truncated or checksum-failing
  .data file is found) and checks that every floating-point one is finite.
  The answer names the file or the tensors.
  """
  index = path + ".index"
  if not tf.io.gfile.exists(index):
    return f"{index} is missing"
  try:
    reader = tf.compat.v1.train.NewCheckpointReader(path)
  except (tf.errors.OpError, ValueError, RuntimeError) as e:
    return f"{index} is unreadable ({_first_line(e)})"
  non_finite = []
  for key, dtype in sorted(reader.get_variable_to_dtype_map().items()):
    try:
      value = reader.get_tensor(key)
    except Exception as e:  # pylint: disable=broad-except
      # A missing .data gives OpError, a checksum mismatch DataLossError, a
      # truncated one IndexError / ValueError: any of them means "this file".
      data = ", ".join(tf.io.gfile.glob(path + ".data-*")) or path + ".data-*"
      return f"{data} is missing, truncated or corrupt ({type(e).__name__}: {_first_line(e)})"
    if tf.as_dtype(dtype).is_floating and not np.all(np.isfinite(value)):
      non_finite.append(key)
  if non_finite:
    return (f"it holds {len(non_finite)} non-finite tensors (the run had diverged; e.g. "
            f"{non_finite[0]})")
  return None


def newest_intact(directory: str) -> Optional[str]:
  """The newest checkpoint in `directory` with no checkpoint_problem, or None."""
  for _, path in reversed(list_checkpoints(directory)):
    if checkpoint_problem(path) is None:
      return path
  return None


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


@dataclasses.dataclass(frozen=True)
class ResumePoint:
  """What training resumes from: `path` (None = a new run) and the newer
  checkpoints it skipped, as (prefix, reason)."""
  path: Optional[str]
  skipped: Tuple[Tuple[str, str], ...] = ()
  fallback: bool = False  # path is not what the state file names as latest


def resume_point(model_dir: str, explicit: Optional[str] = None) -> ResumePoint:
  """The newest intact, finite checkpoint of model_dir (or `explicit`).

  Never None while model_dir/checkpoints holds checkpoint files: when none
  of them is usable, raises UserError listing each with its problem.
  `explicit` (--checkpoint) must itself be intact.
  """
  if explicit:
    path = resolve_checkpoint(model_dir, explicit)
    problem = checkpoint_problem(path)
    if problem:
      raise UserError(f"--checkpoint={explicit}: {problem}; pass another checkpoint.")
    return ResumePoint(path, fallback=path != latest_checkpoint_or_none(model_dir))
  directory = checkpoint_dir(model_dir)
  found = list_checkpoints(directory)
  skipped = []
  try:
    latest = _state_latest(directory) if found else None
  except UserError:
    latest = None
    skipped.append((_join(directory, "checkpoint"), "the state file is corrupt"))
  candidates = [p for _, p in reversed(found)]
  if latest:  # the state file's choice first, then the files newest first
    candidates = [latest] + [p for p in candidates if p != latest]
  for path in candidates:
    problem = checkpoint_problem(path)
    if problem is None:
      return ResumePoint(path, tuple(skipped), fallback=path != latest)
    skipped.append((path, problem))
  if found:
    listing = "; ".join(f"{p}: {why}" for p, why in skipped)
    raise UserError(f"No usable checkpoint in {directory}: {listing}. Restore one of them, "
                    "pass --checkpoint=PREFIX of a good copy, or use a new --model_dir; "
                    "training does not start over in a directory holding checkpoints.")
  return ResumePoint(None)


def latest_checkpoint_or_none(model_dir: str) -> Optional[str]:
  """latest_checkpoint, or None when the state file is corrupt too."""
  try:
    return latest_checkpoint(model_dir)
  except UserError:
    return None


def forget_older_checkpoints(model_dir: str, path: str) -> None:
  """Makes the state file name only `path`, so that the CheckpointManager's
  rotation (--keep_checkpoints) deletes only what this run writes after it
  (and eventually `path`), never the checkpoints on disk older than it."""
  directory = checkpoint_dir(model_dir)
  if os.path.dirname(path) == directory.rstrip("/"):
    tf.compat.v1.train.update_checkpoint_state(directory, path,
                                               all_model_checkpoint_paths=[path])
  elif tf.io.gfile.exists(_join(directory, "checkpoint")):
    # Resumed from elsewhere (--checkpoint): no checkpoint on disk is the
    # manager's to delete; its first save writes a new state file.
    tf.io.gfile.remove(_join(directory, "checkpoint"))


def _reader(path: str):
  # NewCheckpointReader takes the prefix directly; tf.train.load_checkpoint
  # first asks gfile.isdir(prefix), which is True for any prefix on ram://.
  try:
    return tf.compat.v1.train.NewCheckpointReader(path)
  except (tf.errors.OpError, ValueError, RuntimeError) as e:
    raise UserError(f"Cannot read the checkpoint {path!r} ({str(e).splitlines()[0]}); "
                    "pass a checkpoint prefix such as MODEL_DIR/checkpoints/ckpt-1000 "
                    "(without .index).") from e


def resolve_checkpoint(model_dir: str, checkpoint_path: Optional[str] = None) -> str:
  """An explicit checkpoint prefix (or a directory holding checkpoints), else the
  latest in model_dir. Raises UserError when there is none."""
  if checkpoint_path:
    if tf.io.gfile.exists(checkpoint_path + ".index"):
      return checkpoint_path
    for directory in (checkpoint_path, checkpoint_dir(checkpoint_path)):
      if tf.io.gfile.exists(_join(directory, "checkpoint")):
        found = tf.train.latest_checkpoint(directory)
        if found:
          return found
    raise UserError(f"--checkpoint={checkpoint_path} is not a checkpoint (no "
                    f"{checkpoint_path}.index); pass a prefix such as "
                    "MODEL_DIR/checkpoints/ckpt-1000, or leave it empty for the latest.")
  path = latest_checkpoint(model_dir)
  if not path:
    raise UserError(f"No checkpoint in {checkpoint_dir(model_dir or '.')}: train first "
                    f"(./run.sh train --model_dir={model_dir}) or pass --checkpoint=PATH.")
  return path


@dataclasses.dataclass(frozen=True)
class StoredCheckpoint:
  """What a checkpoint holds, read without building anything."""
  path: str
  step: Optional[int]
  # part ("generator", ...) -> {TF1 name: shape}
  shapes: Mapping[str, Mapping[str, Tuple[int, ...]]]

  def has(self, part: str) -> bool:
    return part in self.shapes


def read_checkpoint(path: str) -> StoredCheckpoint:
  """Step and per-model variable shapes of a checkpoint written by make_checkpoint."""
  reader = _reader(path)
  key_shapes = reader.get_variable_to_shape_map()
  if "_CHECKPOINTABLE_OBJECT_GRAPH" not in key_shapes:
    raise UserError(f"{path} is not an object-based (TF2) checkpoint; a checkpoint of "
                    "the original TF1 code loads with sagan_tf.compat.tf1.")
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  try:
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  except Exception as e:  # pylint: disable=broad-except  (truncated / corrupt .data)
    raise _corrupt(path, e) from None

  def value_key(node_id: int) -> Optional[str]:
    for attr in graph.nodes[node_id].attributes:
      if attr.name == "VARIABLE_VALUE":
        return attr.checkpoint_key
    return None

  shapes: Dict[str, Dict[str, Tuple[int, ...]]] = {}
  step = None
  for child in graph.nodes[0].children:
    if child.local_name in MODEL_PARTS:
      table = {}
      for leaf in graph.nodes[child.node_id].children:
        key = value_key(leaf.node_id)
        if key is not None:
          table[leaf.local_name] = tuple(key_shapes[key])
      shapes[child.local_name] = table
    elif child.local_name == "step":
      key = value_key(child.node_id)
      if key is not None:
        step = int(reader.get_tensor(key))
  return StoredCheckpoint(path=path, step=step, shapes=shapes)


def checkpoint_step(path: str) -> Optional[int]:
  return read_checkpoint(path).step


def shape_differences(stored: Mapping[str, Tuple[int, ...]], model) -> List[str]:
  """Human-readable differences between a stored table and a model's variables."""
  expected = {name: tuple(v.shape) for name, v in model_table(model).items()}
  out = []
  for name in sorted(set(stored) | set(expected)):
    if name not in stored:
      out.append(f"{name} {list(expected[name])} is not in the checkpoint")
    elif name not in expected:
      out.append(f"{name} {list(stored[name])} is in the checkpoint but not in this model")
    elif tuple(stored[name]) != expected[name]:
      out.append(f"{name} is {list(stored[name])} in the checkpoint but "
                 f"{list(expected[name])} in this model")
  return out


def check_architecture(stored: StoredCheckpoint, parts: Mapping[str, object],
                       what_to_do: str) -> None:
  """UserError naming the variables when a model does not fit the checkpoint.

  Args:
    stored: read_checkpoint(path).
    parts: {"generator": model, ...}; each must be in the checkpoint.
    what_to_do: the end of the message (e.g. "use a new --model_dir").
  """
  problems = []
  for part, model in parts.items():
    if model is None:
      continue
    if not stored.has(part):
      problems.append(f"the checkpoint has no {part}")
      continue
    problems += [f"{part} {d}" for d in shape_differences(stored.shapes[part], model)]
  if problems:
    shown = problems[:3]
    more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    raise UserError(f"The checkpoint {stored.path} is of a different architecture: "
                    f"{'; '.join(shown)}{more}; {what_to_do}.")


# -------------------------------------------------------------- restoring
def restore_generator(cfg, checkpoint_path: Optional[str] = None,
                      use_ema: bool = True, strategy=None):
  """A float32 generator for cfg with a run's weights: (generator, step).

  Args:
    cfg: the run's Config (architecture fields; see load_run_config).
      cfg.model_dir locates the latest checkpoint; cfg.checkpoint, when set,
      is used if checkpoint_path is not given.
    checkpoint_path: an explicit checkpoint prefix (or checkpoint directory).
    use_ema: take the EMA generator's weights when the checkpoint has them.
    strategy: build the generator under strategy.scope() (distributed eval).
  Raises:
    UserError: no checkpoint, unreadable checkpoint, or one of a different
      architecture (naming the variables that differ).
  """
  path = resolve_checkpoint(cfg.model_dir, checkpoint_path or cfg.checkpoint or None)
  stored = read_checkpoint(path)
  part = "ema_generator" if use_ema and stored.has("ema_generator") else "generator"
  with strategy.scope() if strategy else contextlib.nullcontext():
    generator = build_generator(dataclasses.replace(cfg, precision="float32"))
  check_architecture(stored, {part: generator},
                     "pass the config of the run that wrote it (its config.json)")
  try:
    status = tf.train.Checkpoint(**{part: model_table(generator)}).restore(path)
    status.expect_partial()
  except Exception as e:  # pylint: disable=broad-except
    raise _corrupt(path, e) from None
  non_finite = [name for name, v in model_table(generator).items()
                if not np.all(np.isfinite(v.numpy()))]
  if non_finite:
    raise UserError(
        f"The {part} weights of {path} are not finite ({len(non_finite)} tensors, e.g. "
        f"{non_finite[0]}): the run had diverged when it was written; pass an older "
        "checkpoint with --checkpoint=MODEL_DIR/checkpoints/ckpt-<step>.")
  logging.info("Restored the %s weights of %s (step %s).",
               "EMA generator" if part == "ema_generator" else "generator", path, stored.step)
  return generator, int(stored.step or 0)


def _corrupt(path: str, error: BaseException) -> UserError:
  """UserError naming the bad file of `path` and the newest intact checkpoint."""
  problem = checkpoint_problem(path) or f"{type(error).__name__}: {_first_line(error)}"
  intact = newest_intact(os.path.dirname(path))
  other = (f"the newest intact checkpoint is {intact} (--checkpoint={intact})"
           if intact and intact != path else "no other intact checkpoint is there")
  return UserError(f"Cannot restore the checkpoint {path}: {problem}; delete its files; "
                   f"{other}.")


_PIN_ATTEMPTS = 5
_PIN_DIR_PREFIX = ".pinned-"


@contextlib.contextmanager
def pinned_checkpoint(path: str):
  """Yields a prefix of `path`'s files that no rotation can delete while in use.

  A training run beside a reader deletes its older checkpoints
  (--keep_checkpoints) as it saves: a local checkpoint is therefore
  hard-linked first (in microseconds, no copy) into a hidden folder beside
  it, `.pinned-PID-RANDOM/` (not a checkpoint name, so neither the
  CheckpointManager nor list_checkpoints sees it); a deleted original then
  lives on in the links until they are removed on exit. A checkpoint
  rotated away before its files are all linked raises FileNotFoundError (the
  caller takes the newer one). Where links cannot be made (another file
  system, a read-only folder) the files are read in place, as they are on
  gs:// (where a reader retries instead).
  """
  directory, name = os.path.split(path)
  pin_dir = None
  if "://" not in path and os.path.isdir(directory):
    try:
      pin_dir = tempfile.mkdtemp(prefix=f"{_PIN_DIR_PREFIX}{os.getpid()}-", dir=directory)
    except OSError:
      pass  # e.g. a read-only run directory: nothing rotates there
  if pin_dir is None:
    yield path
    return
  try:
    try:
      for f in [path + ".index"] + sorted(glob.glob(glob.escape(path) + ".data-*")):
        os.link(f, os.path.join(pin_dir, os.path.basename(f)))
      pinned = os.path.join(pin_dir, name)
    except OSError as e:
      if isinstance(e, FileNotFoundError):
        raise  # rotated away
      pinned = path  # links not possible here: read in place
    yield pinned
  finally:
    shutil.rmtree(pin_dir, ignore_errors=True)


def restore_for_mode(cfg, mode: str, typed=None
                     ) -> Tuple[config_lib.Config, object, int, Dict[str, str]]:
  """(run config, float32 generator, step, {"checkpoint": path, "weights": part})
  for export, sample and attention.

  The config is run_config(mode, cfg, typed) in float32; the weights are the
  EMA generator's when it says use_ema and the checkpoint has one. Raises
  UserError when model_dir is not a run, has no checkpoint, or the checkpoint
  does not fit the stored config.
  """
  run_cfg = dataclasses.replace(run_config(mode, cfg, typed), precision="float32")
  for attempt in range(_PIN_ATTEMPTS):
    path = None
    try:
      path = resolve_checkpoint(run_cfg.model_dir, run_cfg.checkpoint or None)
      with pinned_checkpoint(path) as pinned:
        # Restored into memory here: nothing below reads the checkpoint again.
        has_ema = read_checkpoint(pinned).has("ema_generator")
        generator, step = restore_generator(run_cfg, pinned, use_ema=run_cfg.use_ema)
      break
    except (UserError, tf.errors.NotFoundError, FileNotFoundError):
      # A training run beside us rotated it away (--keep_checkpoints) between
      # resolving and pinning it: take the newer one it wrote.
      if path is None and not list_checkpoints(checkpoint_dir(run_cfg.model_dir)):
        raise  # no checkpoint at all
      if path and tf.io.gfile.exists(path + ".index"):
        # Not rotated away: a bad checkpoint. Read the original, whose
        # errors name its own files (not the pinned links).
        has_ema = read_checkpoint(path).has("ema_generator")
        generator, step = restore_generator(run_cfg, path, use_ema=run_cfg.use_ema)
        break
      if run_cfg.checkpoint or attempt == _PIN_ATTEMPTS - 1:
        raise
      logging.warning("%s was deleted while reading it (a training run rotates its "
                      "checkpoints); using the newest one, %s.", path or "The latest checkpoint",
                      latest_checkpoint_or_none(run_cfg.model_dir))
  weights = "ema_generator" if run_cfg.use_ema and has_ema else "generator"
  logging.info("Using the %s weights of %s (step %d).", weights, path, step)
  return run_cfg, generator, step, {"checkpoint": path, "weights": weights}


def restore_for_training(checkpoint: tf.train.Checkpoint, path: str, models) -> int:
  """Restores a full training state after checking the architecture; returns the step."""
  stored = read_checkpoint(path)
  parts = {"generator": models.generator, "discriminator": models.discriminator}
  if models.ema_generator is not None and stored.has("ema_generator"):
    parts["ema_generator"] = models.ema_generator
  check_architecture(stored, parts,
                     "use a new --model_dir, or the flags of the run that wrote it")
  try:
    status = checkpoint.restore(path)
    status.expect_partial()  # e.g. an EMA generator the run did not have yet
  except Exception as e:  # pylint: disable=broad-except
    raise _corrupt(path, e) from None
  if models.ema_generator is not None and not stored.has("ema_generator"):
    logging.warning("%s has no EMA generator; it starts as a copy of the generator.", path)
    for e, v in zip(models.ema_generator.variables, models.generator.variables):
      e.assign(v)
  return int(stored.step or 0)
