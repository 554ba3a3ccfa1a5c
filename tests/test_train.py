"""Training: the learned policy beats uniform random; malformed logs are named line by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_export.__main__ import main
from model_export.export import model_from_fit
from model_export.features import default_spec
from model_export.simulate import Simulator, decisions, simulate_log, true_value, uniform_model
from model_export.site import load_site
from model_export.train import DecisionLog, LogError, fit, read_log

SITE = load_site()
SLOTS = {name: slot.config() for name, slot in SITE.slots.items()}
SPEC = default_spec(SITE.vocab())


@pytest.fixture(scope="module")
def good_lines() -> list[str]:
    return [json.dumps(r) for r in decisions(400, seed=12)]


def test_policy_trained_on_100k_decisions_beats_uniform_random_by_1_3x() -> None:
    log = DecisionLog(records=list(decisions(100_000, seed=21)))
    fitted = fit(log, SPEC, SLOTS)
    model = model_from_fit(fitted)
    trained = true_value(model, n=10_000, simulator=Simulator(seed=22))
    uniform = true_value(uniform_model(SITE), n=10_000, simulator=Simulator(seed=22))
    assert trained / uniform >= 1.3
    for slot, variants in fitted.report["slots"].items():
        assert set(variants) == set(SLOTS[slot]["variants"])
        for row in variants.values():
            assert row["fit"] == "logistic" and 0 < row["log_loss"] < 1 and row["auc"] > 0.5


def _with(lines: list[str], number: int, record: object) -> list[str]:
    changed = list(lines)
    changed[number - 1] = record if isinstance(record, str) else json.dumps(record)
    return changed


def _edit(lines: list[str], number: int, **changes: object) -> list[str]:
    record = json.loads(lines[number - 1])
    for key, value in changes.items():
        if value is None:
            del record[key]
        else:
            record[key] = value
    return _with(lines, number, record)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ls: _with(ls, 3, '{"decision_id": "x", '), r"line 3: not JSON"),
        (lambda ls: _edit(ls, 2, engaged=None), r"line 2: engaged missing"),
        (lambda ls: _edit(ls, 17, propensity=0), r"line 17: propensity must be in \(0, 1\], got 0"),
        (
            lambda ls: _edit(ls, 5, propensity=1.5),
            r"line 5: propensity must be in \(0, 1\], got 1.5",
        ),
        (
            lambda ls: _edit(ls, 6, propensity="0.5"),
            r'line 6: propensity must be a number, got "0.5"',
        ),
        (
            lambda ls: _edit(ls, 7, propensity=True),
            r"line 7: propensity must be a number, got true",
        ),
        (lambda ls: _edit(ls, 8, context="x"), r'line 8: context must be an object, got "x"'),
        (lambda ls: _edit(ls, 9, engaged=2), r"line 9: engaged must be 0 or 1, got 2"),
        (lambda ls: _edit(ls, 10, slot="footer"), r"line 10: slot 'footer' is not one of"),
        (lambda ls: _edit(ls, 11, slot="hero", variant="x"), r"line 11: variant 'x' is not in"),
        (lambda ls: _edit(ls, 12, visitor_id=7), r"line 12: visitor_id must be a string, got 7"),
        (lambda ls: _with(ls, 13, "[1, 2]"), r"line 13: a decision is a JSON object, got list"),
    ],
)
def test_a_malformed_line_stops_training_with_its_line_and_field(
    good_lines: list[str], change, message: str
) -> None:
    with pytest.raises(LogError, match=message):
        read_log(change(good_lines), SLOTS)


def test_skip_invalid_skips_and_counts_bad_lines(good_lines: list[str]) -> None:
    lines = _edit(_with(good_lines, 3, "not json"), 17, propensity=0)
    log = read_log(lines + ["", "   "], SLOTS, skip_invalid=True)
    assert (len(log.records), log.skipped) == (398, 2)
    assert log.first_skipped[0].startswith("line 3: not JSON")


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_exits_2_naming_the_line_and_field(tmp_path: Path, good_lines, capsys) -> None:
    log = _write(tmp_path / "bad.jsonl", _edit(good_lines, 17, propensity=0))
    assert main(["train", "--log", str(log), "--out", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert "error: line 17: propensity must be in (0, 1], got 0" in err
    assert not (tmp_path / "model" / "model.json").exists()


def test_cli_skip_invalid_trains_and_reports_the_count(tmp_path: Path, capsys) -> None:
    lines = [json.dumps(r) for r in decisions(3000, seed=13)]
    log = _write(tmp_path / "log.jsonl", _edit(_with(lines, 3, "{"), 4, engaged=None))
    out = tmp_path / "model"
    assert main(["train", "--log", str(log), "--out", str(out), "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert "2998 decisions (2 skipped)" in captured.out
    assert "skipped line 4: engaged missing" in captured.err
    assert "features [####################] 100%" in captured.err  # the progress display
    report = json.loads((out / "report.json").read_text())
    assert report["skipped"] == 2 and "auc" in report["slots"]["hero"]["running"]


def test_cli_rejects_an_empty_log_and_a_missing_file(tmp_path: Path, capsys) -> None:
    empty = _write(tmp_path / "empty.jsonl", [])
    assert main(["train", "--log", str(empty), "--out", str(tmp_path / "m")]) == 2
    assert "holds no valid decisions" in capsys.readouterr().err
    assert main(["train", "--log", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path)]) == 2
    assert "No such file" in capsys.readouterr().err


def test_a_variant_never_engaged_gets_a_constant_model(tmp_path: Path) -> None:
    records = list(decisions(600, seed=14))
    for record in records:
        if record["variant"] == "camping":
            record["engaged"] = 0
    fitted = fit(DecisionLog(records=records), SPEC, SLOTS)
    assert fitted.report["slots"]["hero"]["camping"]["fit"] == "constant"
    assert "camping" not in fitted.slots["hero"]["weights"]
    assert fitted.slots["hero"]["bias"]["camping"] < -3


def test_simulated_log_file_round_trips_through_read_log(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    simulate_log(300, path, seed=15)
    log = read_log(path, SLOTS)
    assert (len(log.records), log.skipped) == (300, 0)
