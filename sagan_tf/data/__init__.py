"""Data: images to batches. See pipeline.py for the interface.

  make_dataset(cfg, input_context=None, *, split="train", training=True, seed=None)
  real_images_for_eval(cfg, num_images, *, split=None, part=0)
  dataset_num_classes(cfg)
"""

from sagan_tf.data.pipeline import (  # noqa: F401
    SCHEMES,
    dataset_num_classes,
    make_dataset,
    parse_dataset_spec,
    real_images_for_eval,
    translate_data_error,
)
