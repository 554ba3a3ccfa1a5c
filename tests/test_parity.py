"""Parity over the golden cases: policy.py, scikit-learn, ONNX (reference and onnxruntime).

Each runtime computes the engagement scores from the case's features; the choice is then made
from those scores by the one choice function (`policy.decide`), and must match the golden case.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import onnxruntime
import pytest
from onnx.reference import ReferenceEvaluator
from sklearn.linear_model import LogisticRegression

from model_export import policy
from model_export.export import to_onnx
from model_export.features import dense, feature_names, features

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def rows(golden_model: dict, golden_cases: list[dict]) -> np.ndarray:
    names = feature_names(golden_model["features"])
    return np.array([dense([tuple(f) for f in c["features"]], names) for c in golden_cases])


def sklearn_scores(model: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per slot [N, K] scores from LogisticRegression objects holding the model's coefficients."""
    names = feature_names(model["features"])
    out = {}
    for slot, config in model["slots"].items():
        columns = []
        for variant in config["variants"]:
            estimator = LogisticRegression()
            estimator.classes_ = np.array([0, 1])
            weights = config["weights"].get(variant, {})
            estimator.coef_ = np.array([[weights.get(n, 0.0) for n in names]])
            estimator.intercept_ = np.array([config["bias"].get(variant, 0.0)])
            columns.append(estimator.predict_proba(x)[:, 1])
        out[slot] = np.stack(columns, axis=1)
    return out


def onnx_scores(model: dict, x: np.ndarray, runtime: str) -> dict[str, np.ndarray]:
    """Per slot [N, K] scores from model.onnx, run by onnx's reference evaluator or onnxruntime."""
    proto = to_onnx(model)
    outputs = [f"engagement_{slot}" for slot in model["slots"]]
    feed = {"features": x.astype(np.float32)}
    if runtime == "reference":
        results = ReferenceEvaluator(proto).run(outputs, feed)
    else:
        session = onnxruntime.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        results = session.run(outputs, feed)
    return {
        slot: np.asarray(r, dtype=np.float64)
        for slot, r in zip(model["slots"], results, strict=True)
    }


def choose(model: dict, case: dict, scores: dict[str, float]) -> policy.Decision:
    """The decision `policy.decide` makes for `case` when a runtime supplies the scores."""
    with mock.patch.object(policy, "scores", lambda config, active: dict(scores)):
        return policy.decide(
            model, case["context"], case["slot"], case["visitor_id"], case["decision_id"]
        )


def test_golden_vectors_cover_the_contract(golden_cases: list[dict]) -> None:
    ids = [c["id"] for c in golden_cases]
    assert len(ids) >= 200 and len(set(ids)) == len(ids)
    assert {c["slot"] for c in golden_cases} == {"hero", "promo"}
    assert any(c["holdout"] for c in golden_cases) and any(c["explored"] for c in golden_cases)
    groups = {i.split("/")[0] for i in ids}
    assert groups >= {
        "referrer",
        "utm",
        "device",
        "time",
        "visitor",
        "session",
        "context",
        "whitespace",
    }


def test_policy_reproduces_every_golden_case(golden_model: dict, golden_cases: list[dict]) -> None:
    model = policy.load_model(golden_model)
    for case in golden_cases:
        got = policy.decide(
            model, case["context"], case["slot"], case["visitor_id"], case["decision_id"]
        )
        active = [list(f) for f in features(case["context"], model["features"])]
        assert active == case["features"], case["id"]
        expected = (case["variant"], case["holdout"], case["explored"])
        assert (got.variant, got.holdout, got.explored) == expected, case["id"]
        assert got.propensity == pytest.approx(case["propensity"], abs=TOLERANCE)
        for key in ("scores", "probabilities"):
            want = case[key]
            assert getattr(got, key) == pytest.approx(want, abs=TOLERANCE), case["id"]
        assert [n for n, _ in got.top_features] == [n for n, _ in case["top_features"]]


@pytest.mark.parametrize("runtime", ["sklearn", "onnx-reference", "onnxruntime"])
def test_runtime_scores_and_choices_match_the_golden_cases(
    runtime: str, golden_model: dict, golden_cases: list[dict], rows: np.ndarray
) -> None:
    if runtime == "sklearn":
        per_slot = sklearn_scores(golden_model, rows)
    else:
        per_slot = onnx_scores(golden_model, rows, runtime.removeprefix("onnx-"))
    worst = 0.0
    for i, case in enumerate(golden_cases):
        variants = golden_model["slots"][case["slot"]]["variants"]
        scores = {v: float(p) for v, p in zip(variants, per_slot[case["slot"]][i], strict=True)}
        worst = max(worst, *(abs(scores[v] - case["scores"][v]) for v in variants))
        decision = choose(golden_model, case, scores)
        expected = (case["variant"], case["holdout"], case["explored"])
        assert (decision.variant, decision.holdout, decision.explored) == expected, case["id"]
        assert decision.propensity == pytest.approx(case["propensity"], abs=TOLERANCE)
    assert worst <= TOLERANCE, f"{runtime}: max |Δscore| = {worst:.2e}"
