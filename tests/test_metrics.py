import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cdul.metrics import (
    average_precision,
    f1_scores,
    mean_ap,
    per_class_ap,
    pseudo_label_map,
    streamed_per_class_ap,
)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [None, 2, 5])  # None: continuous scores; else heavy ties
def test_average_precision_matches_sklearn(seed, levels):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    scores = rng.random(n)
    if levels:
        scores = np.round(scores * levels) / levels
    positive = rng.random(n) < rng.uniform(0.05, 0.6)
    positive[rng.integers(0, n)] = True
    assert average_precision(scores, positive) == pytest.approx(average_precision_score(positive, scores), abs=1e-12)


def test_map_and_per_class_against_sklearn():
    rng = np.random.default_rng(7)
    scores = rng.random((200, 6))
    targets = np.where(rng.random((200, 6)) < 0.3, 1, -1).astype(np.int8)
    ap = per_class_ap(scores, targets)
    want = [average_precision_score(targets[:, c] == 1, scores[:, c]) for c in range(6)]
    np.testing.assert_allclose(ap, want, atol=1e-12)
    assert mean_ap(scores, targets) == pytest.approx(np.mean(want))


def test_difficult_rule_by_hand():
    # one class, five images; image 2 is "difficult" and ranked first
    scores = np.array([[0.9], [0.8], [0.95], [0.3], [0.1]])
    targets = np.array([[1], [-1], [0], [1], [-1]], dtype=np.int8)
    # ignore: ranking without image 2 is +, -, +, -  -> AP = (1 * 1/2) + (2/3 * 1/2) = 0.8333...
    assert per_class_ap(scores, targets, "ignore")[0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # positive: ranking +, +, -, +, -  -> AP = 1/3 * (1 + 1 + 3/4)
    assert per_class_ap(scores, targets, "positive")[0] == pytest.approx((1 + 1 + 0.75) / 3)


def test_class_without_positive_is_left_out_of_the_mean():
    scores = np.array([[0.9, 0.2], [0.1, 0.4]])
    targets = np.array([[1, -1], [-1, -1]], dtype=np.int8)
    ap = per_class_ap(scores, targets)
    assert ap[0] == 1.0 and np.isnan(ap[1])
    assert mean_ap(scores, targets) == 1.0


def test_f1_by_hand():
    scores = np.array([[0.9, 0.6], [0.2, 0.7], [0.8, 0.1]])
    targets = np.array([[1, -1], [1, 1], [-1, -1]], dtype=np.int8)
    f = f1_scores(scores, targets, threshold=0.5)
    # class 0: tp 1 fp 1 fn 1; class 1: tp 1 fp 1 fn 0
    assert f["CP"] == pytest.approx(0.5) and f["CR"] == pytest.approx(0.75)
    assert f["OP"] == pytest.approx(0.5) and f["OR"] == pytest.approx(2 / 3)
    assert f["CF1"] == pytest.approx(2 * 0.5 * 0.75 / 1.25)


def test_streamed_ap_equals_in_memory_ap_in_class_blocks():
    rng = np.random.default_rng(11)
    scores = rng.random((300, 7))
    targets = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(300, 7), p=[0.6, 0.1, 0.3])
    rows = rng.random(300) > 0.1

    def chunks():
        for a in range(0, 300, 64):
            yield scores[a : a + 64], targets[a : a + 64], rows[a : a + 64]

    want = per_class_ap(scores, targets, rows=rows)
    for max_bytes in (1, 3000 * 3, 1 << 30):  # one class a block, a few, all at once
        np.testing.assert_allclose(streamed_per_class_ap(chunks, 300, 7, max_bytes=max_bytes), want, atol=1e-12)


def test_pseudo_label_map_is_mean_ap_in_percent_streamed_or_not():
    rng = np.random.default_rng(12)
    scores = rng.random((50, 4)).astype(np.float32)
    targets = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(50, 4))
    rows = rng.random(50) > 0.2
    want = 100 * mean_ap(scores, targets, rows=rows)
    assert pseudo_label_map(lambda: [(scores, targets, rows)], 50, 4) == want
    halves = lambda: [(scores[:25], targets[:25], rows[:25]), (scores[25:], targets[25:], rows[25:])]
    assert pseudo_label_map(halves, 50, 4, max_bytes=1) == want
    no_positive = np.full((50, 4), -1, np.int8)
    assert np.isnan(pseudo_label_map(lambda: [(scores, no_positive, rows)], 50, 4))
