"""The VOC 2007 11-point AP against the devkit's VOCevalcls.m, transcribed line by line."""

import numpy as np
import pytest

from cdul.metrics import average_precision, default_protocol, mean_ap, per_class_ap, pseudo_label_map


def matlab_colon(a: float, d: float, b: float) -> list[float]:
    """MATLAB's ``a:d:b`` for an exact number of steps: from both ends, the middle as (a+b)/2."""
    n = round((b - a) / d)
    out = [0.0] * (n + 1)
    for k in range(n // 2 + 1):
        out[k] = a + k * d
        out[n - k] = b - k * d
    if n % 2 == 0:
        out[n // 2] = (a + b) / 2
    return out


def vocevalcls_ap(out: np.ndarray, gt: np.ndarray) -> float:
    """VOCevalcls.m (VOC 2007 devkit), one statement at a time; gt is 1, 0 (difficult), -1."""
    si = sorted(range(len(out)), key=lambda i: -out[i])  # [so,si]=sort(-out): a stable sort
    tp = [1 if gt[i] > 0 else 0 for i in si]  # tp=gt(si)>0
    fp = [1 if gt[i] < 0 else 0 for i in si]  # fp=gt(si)<0
    fp = list(np.cumsum(fp))  # fp=cumsum(fp)
    tp = list(np.cumsum(tp))  # tp=cumsum(tp)
    npos = sum(1 for g in gt if g > 0)
    rec = [t / npos for t in tp]  # rec=tp/sum(gt>0)
    prec = [t / (f + t) if f + t else float("nan") for t, f in zip(tp, fp)]  # prec=tp./(fp+tp)
    ap = 0.0
    for t in matlab_colon(0, 0.1, 1):  # for t=0:0.1:1
        candidates = [p for p, r in zip(prec, rec) if r >= t and not np.isnan(p)]  # max ignores NaN
        p = max(candidates) if candidates else 0.0  # p=max(prec(rec>=t)); if isempty(p), p=0
        ap = ap + p / 11
    return ap


def test_matlab_colon_differs_from_tenths_only_at_three():
    steps = matlab_colon(0, 0.1, 1)
    assert [k for k, t in enumerate(steps) if t != k / 10] == [3]
    assert steps[3] == 0.30000000000000004


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [None, 2, 4])  # None: continuous scores; else many ties
def test_eleven_point_ap_matches_the_devkit(seed, levels):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    scores = rng.random(n)
    if levels:
        scores = np.round(scores * levels) / levels
    gt = rng.choice(np.array([-1, 0, 1]), size=n, p=[0.6, 0.1, 0.3])
    gt[rng.integers(0, n)] = 1
    targets = gt.astype(np.int8)[:, None]
    got = per_class_ap(scores[:, None], targets, "ignore", protocol="voc07-11pt")[0]
    assert got == pytest.approx(vocevalcls_ap(scores, gt), abs=1e-12)


def test_eleven_point_ap_by_hand():
    # ranking +, -, +: recall 1/2 at precision 1, recall 1 at precision 2/3
    scores, positive = np.array([0.9, 0.8, 0.7]), np.array([True, False, True])
    assert average_precision(scores, positive, "voc07-11pt") == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # everything right: 1; the one positive last of four: precision 1/4 at every t
    assert average_precision(scores, np.array([True, True, False]), "voc07-11pt") == pytest.approx(1.0)
    assert average_precision(np.array([4.0, 3, 2, 1]), np.arange(4) == 3, "voc07-11pt") == pytest.approx(0.25)
    # ten positives, the first three on top and the rest after 7 negatives: recall 3/10 sits
    # just under MATLAB's 0.30000000000000004, so that point takes the later precision 10/17
    positive = np.array([True] * 3 + [False] * 7 + [True] * 7)
    scores = -np.arange(17.0)
    want = (3 * 1.0 + 8 * 10 / 17) / 11
    assert average_precision(scores, positive, "voc07-11pt") == pytest.approx(want)


def test_ties_keep_the_image_list_order_as_matlabs_sort_does():
    # all scores tied: the devkit walks the images in list order
    positive = np.array([False, True])
    assert average_precision(np.zeros(2), positive, "voc07-11pt") == pytest.approx(0.5)  # precision 1/2 throughout
    assert average_precision(np.zeros(2), positive[::-1], "voc07-11pt") == pytest.approx(1.0)
    # all points: tied images enter together, whatever their order
    assert average_precision(np.zeros(2), positive) == average_precision(np.zeros(2), positive[::-1]) == 0.5


def test_difficult_images_are_neither_hits_nor_misses():
    scores = np.array([[0.95], [0.9], [0.8], [0.3]])
    targets = np.array([[0], [1], [-1], [1]], dtype=np.int8)  # the top image is difficult
    # without it: +, -, + -> recall 1/2 at precision 1, recall 1 at 2/3
    assert per_class_ap(scores, targets, protocol="voc07-11pt")[0] == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert per_class_ap(scores, targets, protocol="voc07-11pt")[0] == pytest.approx(
        vocevalcls_ap(scores[:, 0], targets[:, 0])
    )


def test_protocols_reach_the_means_and_defaults_follow_the_dataset():
    rng = np.random.default_rng(3)
    scores, targets = rng.random((40, 3)), np.where(rng.random((40, 3)) < 0.3, 1, -1).astype(np.int8)
    eleven = mean_ap(scores, targets, protocol="voc07-11pt")
    want = np.mean([vocevalcls_ap(scores[:, c], targets[:, c]) for c in range(3)])
    assert eleven == pytest.approx(want) and eleven != pytest.approx(mean_ap(scores, targets))
    assert pseudo_label_map(lambda: [(scores, targets, np.ones(40, bool))], 40, 3, protocol="voc07-11pt") == (
        pytest.approx(100 * want)
    )
    assert np.isnan(average_precision(scores[:, 0], np.zeros(40, bool), "voc07-11pt"))
    assert default_protocol("voc2007") == "voc07-11pt"
    assert {default_protocol(k) for k in ("voc2012", "coco2014", "nuswide", "folder", None)} == {"all-points"}
    with pytest.raises(ValueError, match="AP protocol"):
        average_precision(scores[:, 0], targets[:, 0] == 1, "voc12")
