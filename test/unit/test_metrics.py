"""mIoU against a hand-computed confusion matrix, including DELIVER's empty-union rule."""
import numpy as np
import pytest

from charm_core.metrics import ConfusionMatrix


def test_iou_matches_hand_computed_matrix():
    # 4 classes; class 3 never appears (empty union); 255 is ignored
    target = np.array([0, 0, 0, 1, 1, 2, 2, 2, 255, 255])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 0, 3, 0])
    cm = ConfusionMatrix(num_classes=4)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    r = cm.compute()
    # class 0: tp 2, fn 1, fp 1 -> 2/4; class 1: tp 1, fn 1, fp 1 -> 1/3; class 2: tp 2, fn 1, fp 1 -> 2/4
    np.testing.assert_allclose(r.iou, [50.0, 100 / 3, 50.0, 0.0])
    assert r.present.tolist() == [True, True, True, False]
    assert r.miou_all == pytest.approx((50 + 100 / 3 + 50 + 0) / 4)      # DELIVER: empty union counts 0
    assert r.miou_present == pytest.approx((50 + 100 / 3 + 50) / 3)
    assert r.pixel_accuracy == pytest.approx(5 / 8 * 100)


def test_false_positives_of_an_absent_class_lower_other_classes_only():
    cm = ConfusionMatrix(num_classes=3)
    cm.update(np.array([[0, 2], [1, 1]]), np.array([[0, 0], [1, 1]]))
    r = cm.compute()
    # class 2 is predicted but absent from the labels: IoU 0, not in the present mean
    assert r.present.tolist() == [True, True, False]
    assert r.iou[2] == 0.0
    assert r.miou_present == pytest.approx((50.0 + 100.0) / 2)


def test_accumulates_and_merges_and_rejects_bad_ids():
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(np.array([0, 1]), np.array([0, 1]))
    b.update(np.array([2]), np.array([1]))
    a.merge(b)
    assert a.matrix.sum() == 3 and a.matrix[1, 2] == 1
    with pytest.raises(ValueError, match="label ids"):
        a.update(np.array([0]), np.array([7]))
    with pytest.raises(ValueError, match="shape"):
        a.update(np.array([0, 1]), np.array([0]))


def test_no_data_predictions_are_misses():
    cm = ConfusionMatrix(num_classes=2)
    cm.update(np.array([0, 255, 1, 255]), np.array([0, 0, 1, 1]))
    r = cm.compute()
    assert cm.matrix.sum() == 2 and cm.missed.tolist() == [1, 1]
    np.testing.assert_allclose(r.iou, [50.0, 50.0])
    assert r.pixel_accuracy == 50.0
