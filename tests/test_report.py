"""The report's caveats: which numbers it marks as meaningless, and which it leaves alone."""

import pytest

from cdul.report import caveats


@pytest.mark.parametrize(
    "clip, init, expect_clip, expect_classifier",
    [
        ("openai", "imagenet", None, None),
        ("none", "imagenet", "Random CLIP", "pseudo labels from a CLIP with random weights"),
        ("openai", "none", None, "started from random weights"),
        ("none", "none", "Random CLIP", "random weights and started from random weights"),
    ],
)
def test_caveats_follow_the_weights(clip, init, expect_clip, expect_classifier):
    for data in (
        {"model": {"pretrained": clip}, "eval": {"weights": init}},
        {"model": {"pretrained": clip}, "training": [{"epoch": 0, "weights": init}]},
    ):
        got_clip, got_classifier = caveats(data)
        assert (got_clip is None) == (expect_clip is None) and (expect_clip or "") in (got_clip or "")
        assert (got_classifier is None) == (expect_classifier is None)
        assert (expect_classifier or "") in (got_classifier or "")
