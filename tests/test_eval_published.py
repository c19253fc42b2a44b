"""--compare_published says when the run's data is not the paper's ImageNet 128x128."""

from sagan_tf.eval import published

_IMAGENET_LIKE = {"inception_score": 30.0, "fid": 25.5, "num_samples": 50000, "step": 9,
                  "classifier": "inception_v1_2018", "dataset": "tfrecords:/data/imagenet"}


def _notes(table):
  return [line for line in table.splitlines() if line.startswith("note:")]


def test_a_small_three_class_run_gets_a_caveat_naming_its_data():
  table = published.format_comparison(dict(_IMAGENET_LIKE, dataset="tfrecords:/tmp/mine"),
                                      image_size=32, num_classes=3)
  caveat, = [n for n in _notes(table) if "ImageNet" in n]
  assert "--dataset=tfrecords:/tmp/mine at 32x32 with 3 classes" in caveat
  assert "128x128" in caveat and "not comparable" in caveat
  assert "52.52" in table  # the paper's rows are still shown


def test_imagenet_128_records_get_no_data_caveat():
  table = published.format_comparison(_IMAGENET_LIKE, image_size=128, num_classes=1000)
  assert _notes(table) == []
  shapes = published.format_comparison(dict(_IMAGENET_LIKE, dataset="shapes"),
                                       image_size=128, num_classes=1000)
  assert any("--dataset=shapes" in n for n in _notes(shapes))
  other_tfds = published.format_comparison(dict(_IMAGENET_LIKE, dataset="tfds:cifar10"),
                                           image_size=128, num_classes=1000)
  assert any("tfds:cifar10" in n for n in _notes(other_tfds))
