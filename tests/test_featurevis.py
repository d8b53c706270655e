"""Feature visualisation: the pictures really maximise their channels, deterministically,
cached, packed into sprites, and the model is left exactly as it was."""
from __future__ import annotations

import pytest

from reportgen.errors import ReportError
from reportgen.explain.channels import parse_channel_specs


# --- channel specs ------------------------------------------------------------------------

COUNTS = {"features.0.0": 32, "features.1.conv.0.0": 32, "features.2.conv.0.0": 96}


def test_specs_ranges_lists_all_and_top() -> None:
    means = {"features.2.conv.0.0": [0.0] * 90 + [5.0, 1.0, 9.0, 1.0, 3.0, 0.5]}
    chosen = parse_channel_specs(
        "features.2.*:top3,0-2, features.0.0:3,7,9,features.1*:all", COUNTS, means)
    assert chosen == {"features.0.0": [3, 7, 9], "features.1.conv.0.0": list(range(32)),
                      "features.2.conv.0.0": [92, 90, 94, 0, 1, 2]}
    # a layer named twice gets the union, in the order first asked for, without repeats
    assert parse_channel_specs("features.0.0:5,1-2,features.*.0:2-6", COUNTS)["features.0.0"] \
        == [5, 1, 2, 3, 4, 6]
    assert parse_channel_specs("features.0.0:top100", COUNTS,
                               {"features.0.0": list(range(32))})["features.0.0"] \
        == list(range(31, -1, -1))


@pytest.mark.parametrize("spec, message", [
    ("3,7", "must start with LAYER:CHANNELS"),
    ("features.0.0:", "lists no channels"),
    ("features.0.0:1,,2", "empty item"),
    (":1", "no layer before"),
    ("nothing*:1", "'nothing\\*' matches no conv layer"),
    ("features.0.0:5-2", "runs backwards"),
    ("features.0.0:30-32", "out of range; the layer has channels 0-31"),
    ("features.0.0:x", "'x' is not a channel"),
    ("features.0.0:top4", "needs the channel means"),
    ("features.0.0:top0", "top1 or more"),
    ("", "empty item"),
])
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ReportError, match=message) as raised:
        parse_channel_specs(spec, COUNTS)
    assert "\n" not in str(raised.value.message)
