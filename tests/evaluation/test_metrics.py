import pytest

from cnn_core.evaluation.metrics import classification_report, most_confused


def test_report_against_hand_computed_values():
    # class a: 3 true (2 right, 1 called b); class b: 2 true (1 right, 1 called a); class c: 1 true, right
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 0, 2]
    r = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    a, b, c = r["per_class"]
    assert (a["precision"], a["recall"], a["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    assert b["precision"] == pytest.approx(1 / 2) and b["recall"] == pytest.approx(1 / 2)
    assert b["f1"] == pytest.approx(0.5) and c["f1"] == 1.0
    assert r["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_class_never_predicted_has_zero_precision_not_an_error():
    r = classification_report([0, 1], [0, 0], ["x", "y"])
    assert r["per_class"][1]["precision"] == 0.0 and r["per_class"][1]["recall"] == 0.0


def test_most_confused_orders_off_diagonal_cells():
    cm = [[5, 3, 0], [1, 4, 7], [0, 0, 9]]
    top = most_confused(cm, ["a", "b", "c"], k=2)
    assert top == [{"true": "b", "predicted": "c", "count": 7}, {"true": "a", "predicted": "b", "count": 3}]
