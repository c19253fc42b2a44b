"""The training job: `train(cfg) -> exit status` (mode `train` of sagan_tf.main).

One custom tf.distribute loop for every strategy (strategy.py). The host loop
only calls the compiled train function (`step.make_train_function`, which
runs cfg.steps_per_loop iterations on device) and, between calls, does what
a run needs around it:

* checkpoints every --checkpoint_every_steps and --checkpoint_every_secs,
  keeping --keep_checkpoints (run_dir.py has the layout); re-running the
  same command resumes from the latest one;
* TensorBoard scalars every --summary_every_steps, spectral-norm sigmas and
  gradient norms every summaries.EXTRA_EVERY-th of those, a fixed-z sample
  grid and the generator's attention maps every --sample_every_steps
  (TensorBoard and model_dir/samples/), per launch its config (text) and
  first real batch (summaries.py), and a progress line at least every
  --log_every_secs;
* SIGTERM / SIGINT: a checkpoint, then exit 128 + signal number. One host
  process (default, mirrored, TPU strategies): a flag set by the signal
  handler and read between calls. MultiWorkerMirroredStrategy: TF's
  PreemptionCheckpointHandler, which agrees on the step to save at across
  the workers (a worker saving alone would deadlock the collectives);
* a non-finite loss or variable (step.py's `finite` flag covers every
  variable of the state) stops the run without saving that state, so every
  checkpoint is finite and a re-run resumes from the newest (NonFiniteLossError).

Everything a run reads is validated before the first iteration: the config
(config.py), the replica count (strategy.py), the run in model_dir (its
current config: an architecture change is refused, other training/data
settings need --allow_config_change; the checkpoint's architecture), and the
data (the first batch is built eagerly and discarded).

config.json is written once, by a run's first launch; every launch appends
its settings and starting step to model_dir/launches.jsonl (run_dir.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from typing import Callable, Dict, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from sagan_tf import attention_image
from sagan_tf import config as config_lib
from sagan_tf import platform_info
from sagan_tf import run_dir
from sagan_tf.data import make_dataset, parse_dataset_spec, tfrecords_source
from sagan_tf.data import translate_data_error
from sagan_tf.errors import UserError, storage_error, storage_errors
from sagan_tf.eval import report
from sagan_tf.eval import run as eval_run
from sagan_tf.image_grid import image_grid, save_image_grid, to_rgb_uint8
from sagan_tf.train import setup
from sagan_tf.train import step as step_lib
from sagan_tf.train import summaries
from sagan_tf.strategy import cpu_backend, make_strategy, worker_info

SAMPLE_COLUMNS = 8
SAMPLE_MAX_ROWS = 10
_SAMPLE_SEED = 0x5A6A  # fixed z of the sample grid (with cfg.seed)
PREEMPTED_EXIT = 42  # MultiWorkerMirroredStrategy: the cluster's "restart me" code
# What a launch-log entry lists as changed from the launch before.
_LOGGED_KINDS = tuple(k for k in config_lib.KINDS
                      if k not in (config_lib.LOCATION, config_lib.LAUNCH))


class NonFiniteLossError(UserError):
  """Training diverged; the message names the step, the losses and the newest finite checkpoint."""


class _Preempted(Exception):
  """Raised by the PreemptionCheckpointHandler's exit_fn after it saved."""


# ------------------------------------------------------------------ helpers
def sample_labels(num_classes: int, rows: int = SAMPLE_MAX_ROWS) -> np.ndarray:
  """The classes of the sample grid's rows: all when <= rows, else an even spread."""
  if num_classes <= rows:
    return np.arange(num_classes, dtype=np.int32)
  return np.round(np.linspace(0, num_classes - 1, rows)).astype(np.int32)


def sample_inputs(cfg):
  """Fixed (z [R*C, z_dim], labels [R*C]) of the sample grid: row r is class
  sample_labels()[r]; column c uses the same z in every row."""
  classes = sample_labels(cfg.num_classes)
  z = tf.random.stateless_normal([SAMPLE_COLUMNS, cfg.z_dim], seed=[cfg.seed, _SAMPLE_SEED])
  z = tf.tile(z, [len(classes), 1])
  labels = tf.constant(np.repeat(classes, SAMPLE_COLUMNS), tf.int32)
  return z, labels


def _format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class _SignalFlag:
  """SIGTERM / SIGINT set a flag the loop reads between calls (single host)."""

  def __init__(self):
    self.signum: Optional[int] = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      logging.warning("Not in the main thread: SIGTERM/SIGINT will not checkpoint.")
      return self
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: stop now
    self.signum = signum

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    return False


def _value(variable) -> float:
  """A scalar variable's value (Keras, mirrored or plain) as a Python float."""
  return float(tf.convert_to_tensor(getattr(variable, "value", variable)).numpy())


def _read_metrics(out) -> Tuple[Dict[str, float], bool]:
  """A train call's outputs on the host in one transfer: ({name: float}, finite)."""
  names = sorted(k for k in out if k != "finite")
  packed = tf.stack([tf.cast(out[k], tf.float32) for k in names] +
                    [tf.cast(out["finite"], tf.float32)]).numpy()
  return dict(zip(names, packed[:-1].tolist())), bool(packed[-1])


def _every(step_before: int, step_after: int, every: int) -> bool:
  """True when (step_before, step_after] contains a multiple of `every`."""
  return every > 0 and step_after // every > step_before // every


# -------------------------------------------------------------------- train
def train(cfg, dataset_fn: Optional[Callable] = None, typed=None) -> int:
  """Trains cfg from scratch or from the latest checkpoint in cfg.model_dir.

  Args:
    cfg: the validated Config.
    dataset_fn: optional `fn(input_context) -> tf.data.Dataset` of per-replica
      batches (tests); default `data.make_dataset(cfg, input_context)`.
    typed: the fields the user typed (config.merge; None = cfg's
      differences from its preset). Without model_dir typed, the run
      directory is config.default_model_dir's.
  Returns:
    0 when training reached cfg.train_steps; 128 + signum after a checkpoint
    on SIGTERM / SIGINT; 42 after a preemption checkpoint under
    MultiWorkerMirroredStrategy.
  Raises:
    UserError: bad input (see the module docstring), NonFiniteLossError.
  """
  typed = config_lib.typed_fields(cfg) if typed is None else frozenset(typed)
  facts = data_facts(cfg)
  for name, value in facts.items():
    field = name[len("data_"):]
    if field in typed and value != getattr(cfg, field):
      raise UserError(f"--{field}={getattr(cfg, field)} but {_FACT_SOURCES[name]} of "
                      f"--dataset={cfg.dataset} say {value}; leave --{field} out (it "
                      "then comes from the data) or convert the data again.")
  plain = config_lib.merge("train", cfg, typed, **facts)
  cfg = config_lib.merge("train", cfg, typed, cpu_backend=cpu_backend(cfg),
                         bf16_hardware=platform_info.cpu_info().bf16_hardware, **facts)
  by_cpu = config_lib.differences(plain, cfg, config_lib.KINDS)
  if by_cpu:
    logging.info("Chosen for this machine (%s): %s. A typed flag overrides each.",
                 platform_info.describe(), "; ".join(by_cpu))
  for name, value in facts.items():
    field = name[len("data_"):]
    if field not in typed:
      logging.info("--%s=%s from %s.", field, value, _FACT_SOURCES[name])
  reason = self_eval_skipped(cfg)
  if reason:
    logging.info("Not evaluating at step 0 and the end (--self_eval): %s.", reason)
    cfg = dataclasses.replace(cfg, self_eval=False)
  if not cfg.model_dir:
    raise UserError("Training needs --model_dir (a local path or gs://...) for its "
                    "checkpoints, summaries and samples.")
  run_dir.check_model_dir(cfg.model_dir)
  if "model_dir" not in typed:
    logging.info("No --model_dir: the run directory is %s (the default for preset %s "
                 "and --dataset=%s).", cfg.model_dir, cfg.preset, cfg.dataset)
  strategy = make_strategy(cfg)
  return Trainer(cfg, strategy, dataset_fn).run()


_FACT_SOURCES = {"data_image_size": "the records", "data_num_classes": "labels.txt"}


def data_facts(cfg) -> Dict[str, int]:
  """What --dataset itself says about the model it needs: for tfrecords, the
  records' image size ("data_image_size") and the classes of the converters'
  labels.txt beside them ("data_num_classes"), when readable; {} otherwise
  (shapes, tfds, no records yet: the pipeline reports those)."""
  spec = parse_dataset_spec(cfg.dataset)
  if spec.kind != "tfrecords":
    return {}
  facts = {}
  files, _ = tfrecords_source.find_record_files(spec.arg)
  if files:
    facts["data_image_size"] = tfrecords_source.image_size_of(files)
  num_classes, _ = tfrecords_source.labels_file_num_classes(spec.arg)
  if num_classes:
    facts["data_num_classes"] = num_classes
  return facts


def self_eval_skipped(cfg) -> Optional[str]:
  """Why --self_eval cannot run for cfg (None when it can): it needs the
  shapes classifier (the shapes data) or --inception_path."""
  if not cfg.self_eval or cfg.inception_path:
    return None
  if parse_dataset_spec(cfg.dataset).kind == "shapes" and cfg.classifier != "inception":
    return None
  return (f"--dataset={cfg.dataset} is scored with Inception and no --inception_path "
          "was given")


class Trainer:
  """One training process (one worker): `Trainer(cfg, strategy).run()` is `train(cfg)`.

  After run(), `models` and `step_var` hold the trained state (tests read it).
  """

  def __init__(self, cfg, strategy, dataset_fn: Optional[Callable] = None):
    self.cfg = cfg
    self.strategy = strategy
    self.task_id, self.num_workers, self.chief = worker_info(strategy)
    self.model_dir = cfg.model_dir
    self.dataset_fn = dataset_fn
    self.scratch_dir: Optional[str] = None  # non-chief: local temporary checkpoints
    self._weight_fns = None  # summaries' sigma and gradient-norm functions

  # ---------------------------------------------------------------- set-up
  def _check_stored_config(self) -> Optional[config_lib.Config]:
    """The run's current config in model_dir (None for a new run), after
    checking this launch against it: an architecture change is refused; other
    training/data settings are refused unless --allow_config_change."""
    if not run_dir.has_run_config(self.model_dir):
      return None
    stored = run_dir.load_run_config(self.model_dir)
    changes = config_lib.differences(stored, self.cfg, config_lib.kinds_on_resume("refused"))
    if changes:
      raise UserError(
          f"--model_dir={self.model_dir} holds a run of a different architecture "
          f"({'; '.join(changes)}); use a new --model_dir, or the flags of that run "
          f"(its config.json).")
    changes = config_lib.differences(stored, self.cfg, config_lib.kinds_on_resume("setting"))
    if changes and not self.cfg.allow_config_change:
      raise UserError(
          f"--model_dir={self.model_dir} holds a run launched with other settings "
          f"({'; '.join(changes)}). To train on with the new ones from the resumed step "
          f"(recorded in {run_dir.launch_log_path(self.model_dir)}), add "
          "--allow_config_change; otherwise use the run's settings or a new --model_dir.")
    return stored

  def _apply_settings(self, models):
    """After a restore: the optimisers take this launch's learning rates (a
    checkpoint stores the rate each optimiser had; without this a new
    --lr_g/--lr_d on resume would not apply)."""
    for name, optimizer in (("lr_g", models.g_optimizer), ("lr_d", models.d_optimizer)):
      old, new = _value(optimizer.learning_rate), getattr(self.cfg, name)
      if np.float32(old) != np.float32(new):  # the optimiser keeps float32
        logging.info("%s: %g in the checkpoint, %g from now on.", name, old, new)
      optimizer.learning_rate = new

  def _resume_point(self) -> Optional[str]:
    """The checkpoint to resume from (--checkpoint, else the newest intact and
    finite one in model_dir), None for a new run. Skipped checkpoints are
    named in a warning; after a fallback the state file names only the
    resumed checkpoint, so rotation never deletes an older one."""
    point = run_dir.resume_point(self.model_dir, self.cfg.checkpoint or None)
    for path, why in point.skipped:
      logging.warning("Skipping the checkpoint %s: %s.", path, why)
    if point.path and point.fallback:
      logging.warning("Resuming from %s, not the newest checkpoint; the older ones are "
                      "kept (rotation deletes only what this run writes).", point.path)
      if self.chief:
        run_dir.forget_older_checkpoints(self.model_dir, point.path)
    return point.path

  def _make_dataset(self, start_step: int):
    cfg = self.cfg
    # A resumed run reshuffles with a seed of its start step, so it does not
    # replay the data order of the run's beginning (the input pipeline's
    # position is not checkpointed; z and fake labels are, via the step).
    seed = None if start_step == 0 else (cfg.seed * 1_000_003 + start_step) % (2 ** 31)
    if self.dataset_fn is not None:
      fn = self.dataset_fn
    else:
      fn = lambda ctx: make_dataset(cfg, ctx, seed=seed)  # noqa: E731
    dataset = self.strategy.distribute_datasets_from_function(fn)
    iterator = iter(dataset)
    # Missing / unreadable data stops here, before training; the batch is
    # kept for the "real_images" summary.
    self.first_batch = self._pull(iterator)
    return iterator

  def _pull(self, iterator):
    try:
      return next(iterator)
    except tf.errors.OpError as e:
      raise self._data_error(e) from None

  @staticmethod
  def _data_error(error: tf.errors.OpError):
    translated = translate_data_error(error)
    if translated is None:
      return error
    return translated

  def _build(self):
    cfg, strategy = self.cfg, self.strategy
    models = setup.build_gan(cfg, strategy)
    with strategy.scope():
      step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                             aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    return models, step_var

  def _make_manager(self, checkpoint, resumed_from: Optional[str]):
    """The CheckpointManager this worker saves through.

    Chief: model_dir/checkpoints, keeping --keep_checkpoints. Other
    MultiWorkerMirroredStrategy workers must take part in every save
    (ON_READ variables are reduced across workers), but only the chief's copy
    is kept: they write to a local temporary directory (TF's recipe for
    non-chief workers), emptied after each save, and never under model_dir.

    The PreemptionCheckpointHandler keeps its run counter (the number of
    save_checkpoint_if_preempted calls, which the workers compare to agree
    on the step to save at) in the checkpoint and restores it through this
    manager. A non-chief's directory is empty, so the manager's init_fn
    restores the chief's checkpoint this run resumed from instead: every
    worker then counts from the same number after any number of restarts.
    """
    if self.chief:
      return run_dir.make_manager(checkpoint, self.model_dir, self.cfg.keep_checkpoints)
    self.scratch_dir = tempfile.mkdtemp(prefix=f"sagan_tf_worker{self.task_id}_")

    def init_fn():
      if resumed_from:
        checkpoint.restore(resumed_from).expect_partial()

    return run_dir.make_manager(checkpoint, self.model_dir, 1, directory=self.scratch_dir,
                                    init_fn=init_fn)

  def _clear_scratch(self, remove: bool = False):
    """Non-chief: drops the local copy of the last save (the chief's is the one kept)."""
    if self.scratch_dir and os.path.isdir(self.scratch_dir):
      shutil.rmtree(self.scratch_dir, ignore_errors=True)
      if not remove:
        os.makedirs(self.scratch_dir, exist_ok=True)

  # ------------------------------------------------------------------ run
  def run(self) -> int:
    try:
      return self._run()
    except Exception as e:  # pylint: disable=broad-except  (re-raised unless a disk error)
      # Any other write into model_dir (summaries, samples, the state file)
      # on a full or unwritable disk; the checkpoint save names its own.
      if self.model_dir not in f"{e} {getattr(e, 'filename', '')}":
        raise  # (e.g. unreadable data: not a write into model_dir)
      latest = run_dir.latest_checkpoint_or_none(self.model_dir)
      translated = storage_error(
          e, f"into --model_dir={self.model_dir}",
          f"the newest checkpoint there is {latest}, which a re-run resumes from"
          if latest else "no checkpoint was written yet")
      if translated is None:
        raise
      raise translated from None

  def _run(self) -> int:
    cfg = self.cfg
    stored = self._check_stored_config()
    had_config = stored is not None
    latest = self._resume_point()
    start_hint = run_dir.checkpoint_step(latest) if latest else 0
    iterator = self._make_dataset(start_hint or 0)

    models, step_var = self._build()
    self.models, self.step_var = models, step_var
    checkpoint = run_dir.make_checkpoint(models, step_var)
    if latest:
      start = run_dir.restore_for_training(checkpoint, latest, models)
      self._apply_settings(models)
      logging.info("Resuming from %s at step %d of %d.", latest, start, cfg.train_steps)
    else:
      start = 0
      if had_config:
        logging.info("%s has a config.json but no checkpoint: starting at step 0.",
                     self.model_dir)
      logging.info("Starting a new run in %s (%d steps).", self.model_dir, cfg.train_steps)
    self.manager = self._make_manager(checkpoint, latest)
    try:
      return self._run_from(start, bool(latest), stored, iterator, checkpoint)
    finally:
      self._clear_scratch(remove=True)

  def _run_from(self, start: int, resumed: bool, stored: Optional[config_lib.Config],
                iterator, checkpoint) -> int:
    cfg = self.cfg
    changes = ()
    if self.chief:
      # config.json is the first launch's, never rewritten; every launch
      # (the first included) appends its settings to the launch log.
      if stored is None:
        run_dir.write_run_config(cfg, self.model_dir)
      else:
        changes = config_lib.differences(stored, cfg, _LOGGED_KINDS)
      run_dir.append_launch(self.model_dir, cfg, start, changes)
    self._log_model_sizes()

    if start >= cfg.train_steps:
      logging.info("Step %d >= --train_steps=%d: nothing to train.", start, cfg.train_steps)
      return 0

    self.writer = (tf.summary.create_file_writer(self.model_dir) if self.chief
                   else tf.summary.create_noop_writer())
    self.sample_fn = self._make_sample_fn()
    self.attention_fn = self._make_attention_fn()
    self._write_launch_summaries(start, changes)
    self.last_saved = start if resumed else -1
    evaluator = None
    try:
      if cfg.self_eval and start == 0:
        # The untrained generator is the yardstick the end result is read
        # against (FCD at the end / FCD at step 0); evaluating first also
        # builds the classifier and real statistics before any training time
        # is spent, so a misconfigured evaluation stops the run early.
        self._save(0)
        evaluator = self._self_evaluate(None, first=True)[0]
      status = self._loop(iterator, start, checkpoint)
    finally:
      self.writer.flush()
      self.writer.close()
    if status != 0:
      return status
    step = int(self.step_var.numpy())
    attention = self._write_final_attention(step)
    eval_path = self._self_evaluate(evaluator, first=False)[1] if cfg.self_eval else None
    if self.chief:
      print(report.format_outputs(self.model_dir, run_dir.sample_path(self.model_dir, step),
                                  attention, eval_path), flush=True)
    return status

  def _loop(self, iterator, start: int, checkpoint) -> int:
    cfg, strategy = self.cfg, self.strategy
    train_fn = step_lib.make_train_function(strategy, self.models, cfg, self.step_var)
    tail_fn = None  # for a last call shorter than steps_per_loop
    preemption = self._preemption_handler(checkpoint)
    step = start
    t_start = t_log = t_save = time.time()
    step_log = start
    first_call = True
    metrics: Dict[str, float] = {}
    with _SignalFlag() if preemption is None else _NoSignals() as signals:
      while step < cfg.train_steps:
        remaining = cfg.train_steps - step
        fn = train_fn
        if remaining < cfg.steps_per_loop:
          if tail_fn is None:
            tail_fn = step_lib.make_train_function(
                strategy, self.models, dataclasses.replace(cfg, steps_per_loop=remaining),
                self.step_var)
          fn = tail_fn
        try:
          metrics, finite = _read_metrics(fn(iterator))
        except tf.errors.OpError as e:
          raise self._data_error(e) from None
        before, step = step, int(self.step_var.numpy())
        if not finite:
          self._stop_non_finite(before, step, metrics)

        now = time.time()
        if _every(before, step, cfg.summary_every_steps) or step == cfg.train_steps:
          self._write_scalars(step, metrics, (step - step_log) / max(now - t_log, 1e-9))
        if (_every(before, step, cfg.summary_every_steps * summaries.EXTRA_EVERY) or
            step == cfg.train_steps):
          self._write_weight_summaries(step)
        if _every(before, step, cfg.sample_every_steps) or step == cfg.train_steps:
          self._write_samples(step)
        time_to_save = (cfg.checkpoint_every_secs > 0 and
                        now - t_save >= cfg.checkpoint_every_secs)
        if _every(before, step, cfg.checkpoint_every_steps) or self._agree(time_to_save):
          self._save(step)
          t_save = time.time()
        if first_call:
          # The first call includes tracing and compiling: report it, time from here.
          logging.info("step %d/%d: first call (tracing + compiling) took %s.", step,
                       cfg.train_steps, _format_duration(now - t_start))
          t_log, step_log, first_call = now, step, False
        elif now - t_log >= cfg.log_every_secs or step == cfg.train_steps:
          self._log_progress(step, metrics, step - step_log, now - t_log, now - t_start)
          t_log, step_log = now, step

        if preemption is not None:
          try:
            preemption.save_checkpoint_if_preempted(checkpoint_number=step)
          except _Preempted:
            logging.warning("Preempted at step %d: checkpoint written; re-run the same "
                            "command to resume.", step)
            return PREEMPTED_EXIT
        elif signals.signum is not None:
          name = signal.Signals(signals.signum).name
          path = self.manager.latest_checkpoint if self.last_saved == step else self._save(step)
          logging.warning("%s at step %d: checkpoint %s written; re-run the same command "
                          "to resume.", name, step, path)
          return 128 + signals.signum
    if self.last_saved != step:
      self._save(step)
    # This launch's steps (a resumed run started at `start`).
    logging.info("Training finished at step %d: %d steps in %s.", step, step - start,
                 _format_duration(time.time() - t_start))
    return 0

  # ------------------------------------------------------- around the step
  def _agree(self, flag: bool) -> bool:
    """Multi-worker: True if any worker says so (time-based decisions must agree)."""
    if self.num_workers == 1:
      return flag
    if not hasattr(self, "_any_fn"):
      strategy = self.strategy

      @tf.function
      def any_fn(value):
        per_replica = strategy.run(lambda: tf.identity(value))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

      self._any_fn = any_fn
    return bool(self._any_fn(tf.constant(1 if flag else 0, tf.int32)) > 0)

  def _preemption_handler(self, checkpoint):
    if self.num_workers == 1:
      return None

    def exit_fn():
      raise _Preempted()

    config = tf.distribute.experimental.TerminationConfig(exit_fn=exit_fn)
    return tf.distribute.experimental.PreemptionCheckpointHandler(
        self.strategy.cluster_resolver, self.manager, termination_config=config)

  def _save(self, step: int) -> Optional[str]:
    directory = self.manager.directory
    prefix = os.path.join(directory, f"{run_dir.CHECKPOINT_PREFIX}-{step}")
    latest = self.manager.latest_checkpoint
    kept = (f"the checkpoints written before are intact (the newest is {latest}, which a "
            "re-run resumes from)" if latest else "no checkpoint had been written yet")
    # The manager deletes old checkpoints only after a save succeeded, so a
    # failed one keeps them all; what is left of it is its temporary folder.
    with storage_errors(prefix if self.chief else directory, kept,
                        cleanup=lambda: tf.io.gfile.rmtree(prefix + "_temp")
                        if tf.io.gfile.exists(prefix + "_temp") else None):
      path = self.manager.save(checkpoint_number=step)
    self.last_saved = step
    if not self.chief:
      self._clear_scratch()
      return None
    self.writer.flush()
    logging.info("Saved checkpoint %s.", path)
    return path

  def _stop_non_finite(self, before: int, step: int, metrics: Dict[str, float]):
    where = f"step {step}" if step - before == 1 else f"steps {before + 1}..{step}"
    losses = ", ".join(f"{k}={metrics[k]:.4g}" for k in ("d_loss", "g_loss") if k in metrics)
    # The newest checkpoint whose stored tensors are all finite (a directory
    # written before the state check could hold non-finite ones).
    good = run_dir.newest_intact(run_dir.checkpoint_dir(self.model_dir)) if self.chief else None
    kept = (f"the newest finite checkpoint is {good}, which a re-run resumes from"
            if good else "no finite checkpoint was written (a re-run starts over)")
    raise NonFiniteLossError(
        f"Non-finite loss or weights at {where} ({losses}): training stopped without "
        f"saving that state; {kept}; re-run with lower --lr_g/--lr_d, a larger "
        "--adam_epsilon, or --precision=float32.")

  def _write_scalars(self, step: int, metrics: Dict[str, float], iters_per_sec: float):
    if not self.chief:
      return
    m = self.models
    with self.writer.as_default(step=step):
      for name, value in metrics.items():
        tf.summary.scalar(name, value)
      tf.summary.scalar("lr_g", _value(m.g_optimizer.learning_rate))
      tf.summary.scalar("lr_d", _value(m.d_optimizer.learning_rate))
      for model in (m.generator, m.discriminator):
        for layer in model.attention_layers():
          tf.summary.scalar(f"gamma/{layer.tf1_scope}", _value(layer.gamma))
      tf.summary.scalar("images_per_sec",
                        iters_per_sec * self.cfg.batch_size * self.cfg.d_steps)
      tf.summary.scalar("iterations_per_sec", iters_per_sec)

  def _write_launch_summaries(self, start: int, changes):
    """Once per launch, at its start step: the config as text and the first real batch."""
    if not self.chief:
      return
    images = self.strategy.experimental_local_results(self.first_batch[0])
    images = np.concatenate([np.asarray(tf.cast(x, tf.float32)) for x in images])
    with self.writer.as_default(step=start):
      tf.summary.text("config", summaries.config_markdown(self.cfg, start, changes))
      tf.summary.image("real_images", summaries.real_images_grid(images))

  def _write_weight_summaries(self, step: int):
    """Spectral-norm sigmas and gradient norms (every worker reads, the chief writes)."""
    if self._weight_fns is None:  # traced once per launch
      self._weight_fns = (summaries.sigma_function(self.models),
                          summaries.gradient_norm_function(self.models, self.cfg.beta1))
    values = {}
    for fn in self._weight_fns:
      values.update(fn())
    if not self.chief:
      return
    with self.writer.as_default(step=step):
      for tag, value in values.items():
        tf.summary.scalar(tag, value)

  def _sample_generator(self):
    """The generator the samples show: the EMA one when present."""
    if self.models.ema_generator is not None:
      return self.models.ema_generator
    return self.models.generator

  def _make_sample_fn(self):
    """tf.function -> images of the fixed grid, from replica 0 (EMA G when present)."""
    strategy = self.strategy
    generator = self._sample_generator()
    z, labels = sample_inputs(self.cfg)

    def sample_replica():  # z and labels closed over: strategy.run gets no argument
      return generator(z, labels, training=False, update_u=False)

    @tf.function
    def sample_fn():
      images = strategy.run(sample_replica)
      return strategy.experimental_local_results(images)[0]

    return sample_fn

  def _make_attention_fn(self, rows: Optional[int] = summaries.ATTENTION_IMAGES):
    """tf.function -> (images [A, S, S, 3], {layer: (grid, query probs)}) of
    the sample generator for the first column of the sample grid's first
    `rows` rows (None: all; replica 0); None without attention. The
    function's `queries` and `labels` attributes say what it draws."""
    cfg, strategy = self.cfg, self.strategy
    generator = self._sample_generator()
    if not generator.attention_layers():
      return None
    z, labels = sample_inputs(cfg)
    z = z[::SAMPLE_COLUMNS][:rows]
    labels = labels[::SAMPLE_COLUMNS][:rows]
    queries = summaries.attention_queries(cfg.image_size)

    def attention_replica():
      images, attention = generator(z, labels, training=False, update_u=False,
                                    return_attention=True)
      return (tf.cast(images, tf.float32),
              summaries.gather_queries(attention, queries, cfg.image_size))

    @tf.function
    def attention_fn():
      out = strategy.run(attention_replica)
      return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], out)

    attention_fn.queries = queries
    attention_fn.labels = labels.numpy()
    return attention_fn

  def _write_final_attention(self, step: int) -> Dict[str, str]:
    """The attention maps of the final sample generator, one image per row
    of the sample grid (its first column), as PNGs under
    run_dir.final_attention_dir; {layer: its grid.png} ({} without
    attention). Every worker computes, the chief writes."""
    attention_fn = self._make_attention_fn(rows=None)
    if attention_fn is None:
      return {}
    images, layers = attention_fn()
    if not self.chief:
      return {}
    written = attention_image.write_pngs(
        to_rgb_uint8(images.numpy()), {k: (int(g), p.numpy()) for k, (g, p) in layers.items()},
        attention_fn.labels, attention_fn.queries, run_dir.final_attention_dir(self.model_dir, step))
    return {name: paths[-1] for name, paths in written.items()}

  def _write_samples(self, step: int):
    images = self.sample_fn().numpy()  # every worker (same steps), chief writes
    attention = None if self.attention_fn is None else self.attention_fn()
    if not self.chief:
      return
    if attention is not None:
      grids = summaries.attention_grids(
          attention[0].numpy(), {k: (int(g), p.numpy()) for k, (g, p) in attention[1].items()},
          self.attention_fn.queries)
      with self.writer.as_default(step=step):
        for tag, grid in grids.items():
          tf.summary.image(tag, grid)
    path = save_image_grid(images, run_dir.sample_path(self.model_dir, step),
                           ncols=SAMPLE_COLUMNS, scale=2)
    with self.writer.as_default(step=step):
      tf.summary.image("samples", image_grid(images, SAMPLE_COLUMNS)[None], step=step)
    logging.info("Wrote samples %s.", path)

  def _log_progress(self, step, metrics, iterations, seconds, elapsed):
    cfg = self.cfg
    rate = iterations / max(seconds, 1e-9)
    eta = (cfg.train_steps - step) / rate if rate > 0 else float("inf")
    logging.info(
        "step %d/%d  d_loss %.4f (real %.4f, fake %.4f)  g_loss %.4f  "
        "%.1f images/s  %.2f it/s  elapsed %s  ETA %s",
        step, cfg.train_steps, metrics.get("d_loss", float("nan")),
        metrics.get("d_loss_real", float("nan")), metrics.get("d_loss_fake", float("nan")),
        metrics.get("g_loss", float("nan")), rate * cfg.batch_size * cfg.d_steps, rate,
        _format_duration(elapsed), _format_duration(eta))

  def _log_model_sizes(self):
    m = self.models

    def count(model):
      return sum(int(np.prod(v.shape)) for v in model.trainable_variables)

    logging.info("Generator %.2fM, discriminator %.2fM trainable parameters%s; "
                 "precision %s; %s.", count(m.generator) / 1e6, count(m.discriminator) / 1e6,
                 f"; EMA decay {self.cfg.ema_decay}" if m.ema_generator is not None else "",
                 self.cfg.precision, "XLA" if self.cfg.jit_compile else "no XLA")

  # ------------------------------------------------------------ evaluation
  def _self_evaluate(self, evaluator, first: bool):
    """--self_eval: scores the latest checkpoint; after the last step prints it
    beside the step-0 result. Returns (the Evaluator (classifier and real
    statistics) for reuse, the result's JSON path). Generation and scoring
    run over the strategy's replicas; every worker takes part, the chief
    writes and prints."""
    cfg = self.cfg
    try:
      evaluator = evaluator or eval_run.Evaluator(cfg, self.strategy)
    except UserError as e:
      raise UserError(f"{e} (Or train without evaluating: --noself_eval.)") from None
    # A collective after the save: once every worker is here, the chief's
    # save has returned and its checkpoint is complete; all read that one.
    self._agree(True)
    path = run_dir.latest_checkpoint(self.model_dir)
    generator, step = run_dir.restore_generator(cfg, path, use_ema=cfg.use_ema,
                                                    strategy=self.strategy)
    result = eval_run.evaluate_generator(cfg, generator, step, evaluator)
    if not first and self.chief:
      start = eval_run.read_result(cfg, 0, kind=result["kind"])
      print(report.format_report(result, start), flush=True)
    return evaluator, run_dir.eval_result_path(cfg.model_dir, step, eval_run.result_kind(result))


class _NoSignals:
  """Stand-in for _SignalFlag when the PreemptionCheckpointHandler owns SIGTERM."""
  signum = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False
