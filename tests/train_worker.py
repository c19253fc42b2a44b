"""Test helper: one training process whose final weights are written to an .npz.

  python tests/train_worker.py OUT.npz '{"model_dir": "...", "train_steps": 5, ...}'

The JSON holds Config overrides of tests/train_helpers.tiny_config. The
strategy comes from the environment as in `./run.sh train` (TF_CONFIG for
MultiWorkerMirroredStrategy). Every worker writes its own OUT.npz:
{TF1 name: value} of the generator and discriminator, read after training
in the same order on every worker (reads of ON_READ/MEAN variables are
collective under multi-worker strategies).
"""

import json
import sys

from absl import logging
import numpy as np

from sagan_tf.train import loop
from sagan_tf.strategy import make_strategy
from train_helpers import tiny_config


def main(out_path: str, overrides_json: str) -> int:
  logging.set_verbosity(logging.INFO)
  cfg = tiny_config(**json.loads(overrides_json))
  trainer = loop.Trainer(cfg, make_strategy(cfg))
  status = trainer.run()
  arrays = {}
  for part, model in (("generator", trainer.models.generator),
                      ("discriminator", trainer.models.discriminator)):
    for name, var in model.tf1_variable_map().items():
      arrays[f"{part}:{name}"] = np.asarray(var.numpy())
  arrays["step"] = np.asarray(int(trainer.step_var.numpy()))
  np.savez(out_path, **arrays)
  return status


if __name__ == "__main__":
  sys.exit(main(sys.argv[1], sys.argv[2]))
