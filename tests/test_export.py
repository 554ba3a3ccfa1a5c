"""Export: model.json round-trips through the loader, model.onnx passes the checker and agrees."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from model_export.__main__ import main
from model_export.export import build_model, model_from_fit, to_onnx, write_artifacts
from model_export.features import default_spec, dense, feature_names, features
from model_export.policy import load_model, scores
from model_export.simulate import Simulator, decisions
from model_export.site import load_site
from model_export.train import DecisionLog, Fitted, fit

SITE = load_site()
SLOTS = {name: slot.config() for name, slot in SITE.slots.items()}


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    records = list(decisions(3000, seed=31))
    return fit(DecisionLog(records=records), default_spec(SITE.vocab()), SLOTS)


@pytest.fixture(scope="module")
def contexts() -> list[dict]:
    sim = Simulator(seed=32)
    return [sim.visitor(1_790_000_000_000 + i * 60_000)[1] for i in range(200)]


def test_model_json_round_trips_through_the_loader(fitted: Fitted, tmp_path: Path) -> None:
    created = datetime(2026, 11, 25, 21, 0, 5, 123, tzinfo=UTC)
    model = model_from_fit(fitted, created)
    assert re.fullmatch(r"20261125T210005Z-[0-9a-f]{8}", model["model_version"])
    assert model["created_at"] == "2026-11-25T21:00:05Z"
    assert model_from_fit(fitted, created) == model  # the version is derived from the content
    json_path, onnx_path = write_artifacts(model, tmp_path)
    assert load_model(json_path.read_text()) == model
    assert set(model["slots"]) == {"hero", "promo"}
    site = load_site()
    for name, slot in model["slots"].items():  # exploration and holdout as site.toml says
        assert {k: slot[k] for k in ("variants", "default", "exploration", "holdout")} == (
            site.slots[name].config()
        )


def test_onnx_passes_the_checker_and_has_the_contract_signature(
    fitted: Fitted, tmp_path: Path
) -> None:
    model = model_from_fit(fitted)
    _, onnx_path = write_artifacts(model, tmp_path)
    proto = onnx.load(onnx_path)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 15
    [given] = proto.graph.input
    assert given.name == "features"
    assert given.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    f = len(feature_names(model["features"]))
    assert [d.dim_value for d in given.type.tensor_type.shape.dim][1] == f
    shapes = {
        o.name: (o.type.tensor_type.elem_type, o.type.tensor_type.shape.dim[1].dim_value)
        for o in proto.graph.output
    }
    assert shapes == {
        "engagement_hero": (onnx.TensorProto.FLOAT, 8),
        "engagement_promo": (onnx.TensorProto.FLOAT, 4),
    }


def test_onnx_sklearn_and_policy_agree_on_the_trained_model(
    fitted: Fitted, contexts: list[dict]
) -> None:
    model = model_from_fit(fitted)
    names = feature_names(model["features"])
    x = np.array([dense(features(c, model["features"]), names) for c in contexts])
    session = onnxruntime.InferenceSession(to_onnx(model).SerializeToString())
    for slot, config in model["slots"].items():
        [onnx_p] = session.run([f"engagement_{slot}"], {"features": x.astype(np.float32)})
        policy_p = np.array(
            [list(scores(config, features(c, model["features"])).values()) for c in contexts]
        )
        sklearn_p = np.stack(
            [fitted.estimators[slot][v].predict_proba(x)[:, 1] for v in config["variants"]], axis=1
        )
        assert np.abs(onnx_p - policy_p).max() <= 1e-6
        assert np.abs(sklearn_p - policy_p).max() <= 1e-9


def test_build_model_seals_any_slot_configuration() -> None:
    slots = {"hero": {**SLOTS["hero"], "bias": {"default": -1.0}, "weights": {}}}
    model = build_model(default_spec(), slots, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert load_model(model)["model_version"].startswith("20260102T030405Z-")


def test_cli_train_simulate_writes_model_onnx_and_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    args = ["train", "--simulate", "2000", "--out", str(out), "--value-visitors", "500"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "true value (simulator ground truth, 500 visitors)" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["decisions"] == 2000 and report["true_value"]["ratio"] > 0
    model = load_model((out / "model.json").read_text())
    assert report["model_version"] == model["model_version"]
    onnx.checker.check_model(onnx.load(out / "model.onnx"))


def test_cli_site_json_and_a_bad_site(tmp_path: Path, capsys) -> None:
    assert main(["site-json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(SITE.to_json()))
    assert printed["slots"]["hero"]["html"]["camping"].startswith("<h1>")
    bad = tmp_path / "site.toml"
    bad.write_text('[slots.hero]\ndefault = "nope"\n[slots.hero.variants]\na = "<p>a</p>"\n')
    assert main(["site-json", str(bad)]) == 2
    assert "slots.hero.default 'nope' is not among its variants" in capsys.readouterr().err
    bad.write_text("[slots.hero\n")
    assert main(["site-json", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
