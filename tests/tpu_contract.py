"""TPUStrategy's argument rule for `strategy.run`, applied to every strategy (tests).

TPUStrategy hands `strategy.run(fn, args, kwargs)` to `tpu.replicate`, which
converts every leaf of args / kwargs (tf.nest, composites expanded) to a
tensor: a Keras model, a Config, a `functools.partial` or None there fails on
a TPU, while MirroredStrategy and the default strategy pass it through. Inside
`tpu_argument_rule()` every strategy's `run` checks its arguments as
TPUStrategy would and raises `TPUArgumentError` naming the first leaf that is
not convertible; what is convertible runs unchanged.

    from tpu_contract import tpu_argument_rule

    with tpu_argument_rule() as record:
      trainer.run()            # or an evaluation, a sampler, ...
    assert record.calls        # strategy.run was reached (and every call passed)

Distributed values (the batches of a distributed iterator, PerReplica
results) are checked per replica, as TPUStrategy selects each replica's
component before converting.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator, List, Mapping

import numpy as np
import tensorflow as tf


class TPUArgumentError(TypeError):
  """A `strategy.run` argument that TPUStrategy cannot convert to a tensor."""


@dataclasses.dataclass
class RunRecord:
  """What the patched `strategy.run` saw: one entry per call (the fn's name)."""
  calls: List[str] = dataclasses.field(default_factory=list)


def _leaves(value: Any, path: str) -> Iterator[tuple]:
  """(path, leaf) pairs of a nest as tf.nest sees it (dicts by sorted key)."""
  if isinstance(value, tf.distribute.DistributedValues):
    for i, component in enumerate(value.values):
      yield from _leaves(component, f"{path}<replica {i}>")
  elif isinstance(value, Mapping):
    for key in sorted(value):
      yield from _leaves(value[key], f"{path}[{key!r}]")
  elif isinstance(value, (list, tuple)):
    for i, item in enumerate(value):
      yield from _leaves(item, f"{path}[{i}]")
  else:
    yield path, value


def _convertible(leaf: Any) -> bool:
  if isinstance(leaf, (tf.Tensor, tf.Variable, tf.__internal__.CompositeTensor, np.ndarray)):
    return True
  try:
    tf.convert_to_tensor(leaf)
  except (TypeError, ValueError):
    return False
  return True


def check_run_arguments(args=(), kwargs=None, fn_name: str = "fn") -> None:
  """Raises TPUArgumentError unless every leaf of args / kwargs is tensor-convertible."""
  for path, leaf in _leaves((tuple(args or ()), dict(kwargs or {})), ""):
    if not _convertible(leaf):
      where = path.replace("[0]", "args", 1) if path.startswith("[0]") else \
          path.replace("[1]", "kwargs", 1)
      raise TPUArgumentError(
          f"strategy.run({fn_name}): {where} is a {type(leaf).__module__}."
          f"{type(leaf).__qualname__} ({str(leaf)[:80]!r}), not convertible to a tensor; "
          "TPUStrategy rejects it. Close over it in the replica function instead.")


def _run_owners() -> List[type]:
  """The classes whose `run` a strategy call reaches (each defines its own)."""
  strategies = [tf.distribute.Strategy, tf.distribute.MirroredStrategy,
                tf.distribute.MultiWorkerMirroredStrategy, tf.distribute.OneDeviceStrategy,
                type(tf.distribute.get_strategy())]
  owners = []
  for cls in strategies:
    owner = next(c for c in cls.__mro__ if "run" in vars(c))
    if owner not in owners:
      owners.append(owner)
  return owners


@contextlib.contextmanager
def tpu_argument_rule() -> Iterator[RunRecord]:
  """Within the block, every `strategy.run` applies TPUStrategy's argument rule."""
  record = RunRecord()
  originals = {}

  def patched(original):
    def run(self, fn, args=(), kwargs=None, options=None):
      name = getattr(fn, "__name__", type(fn).__name__)
      check_run_arguments(args, kwargs, name)
      record.calls.append(name)
      return original(self, fn, args=args, kwargs=kwargs, options=options)
    return run

  for owner in _run_owners():
    originals[owner] = vars(owner)["run"]
    owner.run = patched(originals[owner])
  try:
    yield record
  finally:
    for owner, original in originals.items():
      owner.run = original
