"""Command line: `python -m sagan_tf.main MODE [--flags]` (what ./run.sh calls).

The only place flags are read: flags -> Config -> the mode's function.
Modes: train (default), eval, export, sample, attention, bench.
"""

from __future__ import annotations

import dataclasses
import logging as python_logging
import sys

from absl import app, flags, logging

from sagan_tf import config as config_lib
from sagan_tf import quiet_start
from sagan_tf.errors import UserError, describe_errno, storage_advice, storage_errno

# mode -> "module:function"; each is called as fn(config, typed=names typed)
# and merges them with config_lib.merge. Imported lazily (the one deliberate
# function-level import of the package's modes): `--help` and bad-flag errors
# come back without loading TensorFlow.
MODES = {
    "train": "sagan_tf.train.loop:train",
    "eval": "sagan_tf.eval.run:evaluate",
    "export": "sagan_tf.export:export",
    "sample": "sagan_tf.tools.sample:sample",
    "attention": "sagan_tf.tools.attention_maps:attention",
    "bench": "sagan_tf.bench:bench",
}

config_lib.define_flags()


def _run(argv):
  mode = argv[1] if len(argv) > 1 else "train"
  if len(argv) > 2:
    raise app.UsageError(f"Unexpected arguments {argv[2:]}; flags take the form --name=value.")
  if mode not in MODES:
    raise app.UsageError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)} "
                         "(or 'test' / 'convert' through run.sh).")
  # TensorFlow's own INFO lines (e.g. one per checkpoint shard written) would
  # drown the progress lines; its warnings and errors still show.
  python_logging.getLogger("tensorflow").setLevel(python_logging.WARNING)
  try:
    invocation = config_lib.from_flags(flags.FLAGS, mode)
  except config_lib.ConfigError as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    return 2
  module_name, fn_name = MODES[mode].split(":")
  if invocation.config.verbose:
    quiet_start.set_verbose()
    python_logging.getLogger("tensorflow").setLevel(python_logging.INFO)
  module = quiet_start.import_quietly(module_name)
  fn = getattr(module, fn_name)
  try:
    result = fn(invocation.config, typed=invocation.typed)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except Exception as e:  # pylint: disable=broad-except  (re-raised unless a disk error)
    # A full or unwritable disk the mode did not name itself (e.g. eval's
    # statistics cache): the OS error and what to do, no traceback.
    code = storage_errno(e)
    if code is None:
      raise
    detail = str(e).strip().splitlines()[0]
    print(f"error: a write failed: {describe_errno(code)} ({detail}); "
          f"{storage_advice(code)}, then re-run the same command.", file=sys.stderr)
    return 2
  return result if isinstance(result, int) else 0


HELP_FLAGS = ("--help", "--helpfull", "--helpshort", "-?")


def _preset_defaults(argv) -> None:
  """Sets every flag's default to the chosen preset's value (the mode's
  preset, or --preset=NAME), so --help/--helpfull show the defaults this run
  would use. Defaults only: the Config takes the flags the user typed."""
  mode = next((a for a in argv[1:] if not a.startswith("-")), "train")
  preset = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--preset=")),
                None) or config_lib.MODE_PRESETS.get(mode, config_lib.DEFAULT_PRESET)
  if preset not in config_lib.Config.preset_names():
    return  # the flag parser names the bad value
  cfg = config_lib.Config.preset(preset)
  for field in dataclasses.fields(cfg):
    if field.name != "preset":
      value = getattr(cfg, field.name)
      flags.FLAGS.set_default(field.name,
                              [str(v) for v in value] if isinstance(value, tuple) else value)


def main():
  _preset_defaults(sys.argv)
  try:
    app.run(_run)
  except SystemExit as e:
    # absl exits 1 after printing help; asking for help is not a failure.
    if e.code == 1 and any(a in HELP_FLAGS for a in sys.argv[1:]):
      raise SystemExit(0) from None
    raise


if __name__ == "__main__":
  main()
