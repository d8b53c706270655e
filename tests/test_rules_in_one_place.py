"""Each rule has one home: a record name ``layer@N``, "not a conv layer", the ``--explain``
class and the dataset pass's run plan are decided in one place, so every caller accepts and
refuses the same input with the same line."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import TinyNet
from reportgen.dataset.files import DatasetFiles
from reportgen.dataset.mine import MineOptions, RunPlan, mine
from reportgen.errors import ReportError
from reportgen.explain.attribution import attribute
from reportgen.explain.featurevis import visualise
from reportgen.explain.report import check_explain_target
from reportgen.explain.target import ClassTarget
from reportgen.forward.hooks import parse_record_name, record_name
from reportgen.inputs.preprocess import Preprocessing

TINY = Preprocessing(resize=32, crop=32)
FILES = DatasetFiles(Path("photos"), Path("photos"), ("a.png", "b.png"), "folder", 2)


def _message(call) -> str:
    with pytest.raises(ReportError) as caught:
        call()
    return str(caught.value)


def test_a_record_name_is_read_back_as_it_was_made() -> None:
    for name, call in [("stem", 1), ("shared", 2), ("features.18.0", 12)]:
        assert parse_record_name(record_name(name, call)) == (name, call)
    for made_by_no_one in ("shared@1", "shared@0", "shared@x", "shared@", "shared@-2"):
        assert "the part after '@' must be a call number of 2 or more" in _message(
            lambda text=made_by_no_one: parse_record_name(text))


def test_not_a_conv_layer_is_one_line_wherever_it_is_asked() -> None:
    torch.manual_seed(0)
    model = TinyNet().eval()
    expected = "'head' is not a conv layer of TinyNet. Did you mean shared?"
    # attribution, feature visualisation and both dataset engines' plan say it alike
    assert _message(lambda: attribute(model, torch.randn(1, 3, 16, 16),
                                      layers=["head"])) == expected
    assert _message(lambda: visualise(model, "head", [0], preprocessing=TINY,
                                      steps=1, size=8)) == expected
    assert _message(lambda: RunPlan.of(model, FILES, MineOptions(("head",)))) == expected
    assert _message(lambda: mine(model, FILES, TINY, MineOptions(("head",)),
                                 progress=False)) == expected


def test_the_run_plan_is_what_both_engines_run() -> None:
    model = TinyNet()
    plan = RunPlan.of(model, FILES, MineOptions())
    assert plan.layers == ["stem", "body.1", "body.3", "body.5", "shared"]
    assert plan.order == [0, 1]
    assert RunPlan.of(model, FILES, MineOptions(("shared", "stem")), [1]) == RunPlan(
        ["shared", "stem"], [1])
    assert "--top-k must be at least 1" in _message(
        lambda: RunPlan.of(model, FILES, MineOptions(k=0)))
    assert "selection is empty" in _message(lambda: RunPlan.of(model, FILES, MineOptions(), []))


@pytest.mark.parametrize("given, target", [
    (None, ClassTarget()), ("top", ClassTarget()), (967, ClassTarget(index=967)),
    ("967", ClassTarget(index=967)), (" 5", ClassTarget(index=5)),
    ("-1", ClassTarget(index=-1)), ("espresso", ClassTarget(label="espresso")),
])
def test_the_explain_target_is_parsed_once(given, target) -> None:
    assert ClassTarget.parse(given) == target
    assert ClassTarget.parse(target) is target


def test_the_build_and_attribution_refuse_a_class_alike() -> None:
    torch.manual_seed(0)
    model = TinyNet(classes=4).eval()
    x = torch.randn(1, 3, 16, 16)
    labels = ["ant", "bee", "cat", "dog"]
    early = _message(lambda: check_explain_target("cow", labels))
    late = _message(lambda: attribute(model, x, target="cow", categories=labels))
    assert early == late == ("Unknown class 'cow'; give a class index or one of the model's "
                             "category labels.")
    check_explain_target("cat", labels)  # known: no error
    check_explain_target("7", labels)  # range: after the pass
    assert ClassTarget.parse("cat").pick(model(x), labels) == (2, "cat")
    assert "Class index -1 is out of range" in _message(
        lambda: ClassTarget.parse("-1").pick(model(x), labels))
