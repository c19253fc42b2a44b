"""FLOP per training iteration, counted from the models' traced layer shapes.

Counted: the convolutions and matrix products whose inputs depend on the
batch (2 FLOP per multiply-add), i.e. the layers' arithmetic; not counted:
elementwise work (batch norm, activations, Adam) and the spectral-norm power
iterations, which do not grow with the batch (a few % of the iteration at
batch 8). A backward pass costs its forward twice (input gradient + weight
gradient, each a product of the forward's size).

One iteration as train/step.py runs it, for per-replica batch b:
  G step:  G forward, D forward on b fakes, D input gradients, G backward
           = 3 F_G(b) + 2 F_D(b)
  D step:  G forward, D forward + backward on 2b (fakes and reals)
           = F_G(b) + 6 F_D(b), once per cfg.d_steps.
"""

from __future__ import annotations

import math
import tensorflow as tf


def _static(shape) -> list:
  dims = list(shape)
  if any(d is None for d in dims):
    raise ValueError(f"FLOP count needs static shapes, got {shape}")
  return dims


def op_flops(op) -> int:
  """FLOP of one Conv2D / MatMul / BatchMatMul graph op (0 for any other op)."""
  if op.type == "Conv2D":
    if op.get_attr("data_format") not in (b"NHWC", "NHWC"):
      raise ValueError(f"{op.name}: only NHWC convolutions are counted")
    out = _static(op.outputs[0].shape)
    kh, kw, cin, _ = _static(op.inputs[1].shape)
    return 2 * math.prod(out) * kh * kw * cin
  if op.type == "MatMul":
    a = _static(op.inputs[0].shape)
    k = a[0] if op.get_attr("transpose_a") else a[1]
    return 2 * math.prod(_static(op.outputs[0].shape)) * k
  if op.type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
    a = _static(op.inputs[0].shape)
    k = a[-2] if op.get_attr("adj_x") else a[-1]
    return 2 * math.prod(_static(op.outputs[0].shape)) * k
  return 0


def downstream_flops(start_ops, keep=lambda op: True) -> int:
  """Sum of op_flops over the ops reachable from `start_ops` through consumers,
  walking only through ops for which keep(op) is True (a function's or a TF1
  graph's ops alike)."""
  frontier = list(start_ops)
  seen = set()
  total = 0
  while frontier:
    op = frontier.pop()
    if op.name in seen or not keep(op):
      continue
    seen.add(op.name)
    if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
      raise ValueError(f"{op.name}: nested functions are not counted; trace the model inline")
    total += op_flops(op)
    frontier.extend(c for out in op.outputs for c in out.consumers())
  return total


def batch_dependent_flops(concrete_function, num_inputs: int) -> int:
  """Sum of op_flops over the ops downstream of the first num_inputs inputs
  of a traced function (its data; later inputs are captured variables)."""
  return downstream_flops([t.op for t in concrete_function.graph.inputs[:num_inputs]])


def generator_flops(generator, z_dim: int, batch: int) -> int:
  """F_G(batch): the generator's forward pass (inference mode: the same products)."""
  fn = tf.function(lambda z, y: generator(z, y, training=False, update_u=False))
  concrete = fn.get_concrete_function(tf.TensorSpec([batch, z_dim], tf.float32),
                                      tf.TensorSpec([batch], tf.int32))
  return batch_dependent_flops(concrete, 2)


def discriminator_flops(discriminator, image_size: int, batch: int) -> int:
  """F_D(batch): the discriminator's forward pass."""
  fn = tf.function(lambda x, y: discriminator(x, y, training=False, update_u=False))
  concrete = fn.get_concrete_function(
      tf.TensorSpec([batch, image_size, image_size, 3], tf.float32),
      tf.TensorSpec([batch], tf.int32))
  return batch_dependent_flops(concrete, 2)


def iteration_flops(f_g: int, f_d: int, d_steps: int = 1) -> int:
  """FLOP of one iteration from the forward counts at the per-replica batch."""
  return 3 * f_g + 2 * f_d + d_steps * (f_g + 6 * f_d)


def train_iteration_flops(generator, discriminator, cfg, per_replica_batch: int,
                          num_replicas: int = 1) -> int:
  """FLOP of one training iteration over all replicas (the module docstring's count)."""
  f_g = generator_flops(generator, cfg.z_dim, per_replica_batch)
  f_d = discriminator_flops(discriminator, cfg.image_size, per_replica_batch)
  return num_replicas * iteration_flops(f_g, f_d, cfg.d_steps)
