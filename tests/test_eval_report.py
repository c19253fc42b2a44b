"""The end-of-demo table: step 0 beside the end, the FCD ratio and the targets."""

from sagan_tf.eval import report


def _result(step, fcd, consistency, per_class=None):
  return {"step": step, "num_samples": 10000, "classifier": "shapes32_s0_x",
          "dataset": "shapes", "seed": 0, "fcd": fcd, "class_consistency": consistency,
          "classifier_score": 2.5, "intra_fcd": 2 * fcd, "real_vs_real_fcd": 0.18,
          "classifier_test_accuracy": 0.97,
          "intra_fcd_per_class": per_class or {"0": 1.5, "3": 40.0}}


def test_report_shows_both_steps_the_ratio_and_class_names():
  text = report.format_report(_result(4000, 12.5, 0.81), _result(0, 5000.0, 0.1))
  assert "step 0" in text and "step 4000" in text
  assert "5000" in text and "12.5" in text and "0.810" in text and "0.100" in text
  assert "circle 1.5" in text and "ring 40" in text  # class 3 is the ring
  assert "(1/400)" in text  # 5000 / 12.5
  assert "consistency >= 0.75: met" in text and "of step 0: met" in text
  assert "0.18" in text and "0.970" in text  # the floor and the classifier's accuracy


def test_report_says_when_a_target_is_missed():
  text = report.format_report(_result(4000, 100.0, 0.6), _result(0, 5000.0, 0.1))
  assert "consistency >= 0.75: NOT met (0.600)" in text
  assert "of step 0: NOT met (1/50)" in text


def test_report_without_a_step0_result_says_so():
  text = report.format_report(_result(10, 100.0, 0.9))
  assert "no step-0 result" in text and "consistency >= 0.75: met" in text


def test_inception_results_show_is_and_fid_without_shapes_targets():
  end = {"step": 5, "num_samples": 100, "classifier": "inception_x", "dataset": "tfds:x",
         "seed": 0, "inception_score": 12.0, "fid": 80.25,
         "intra_fid_per_class": {"7": 90.0}}
  text = report.format_report(end, dict(end, step=0, inception_score=1.0, fid=400.0))
  assert "Inception Score" in text and "12.000" in text and "80.25" in text
  assert "400" in text and "7 90" in text and "target" not in text
