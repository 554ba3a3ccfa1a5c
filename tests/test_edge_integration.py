"""The edge worker (workerd through Miniflare) in front of the real origin service.

Also: the bundled site.json / starter model are in sync with their sources, and the origin's
token verifier accepts the tokens the worker writes.
"""

from __future__ import annotations

import base64
import html
import json
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from model_export.policy import decide, load_model, seal
from tests.conftest import GOLDEN, ROOT, wait_for
from tests.support_edge import cf_header, edge_worker
from tests.support_origin import TEST_SECRET, running_origin

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36"
)
SITE = json.loads((ROOT / "edge" / "src" / "site.json").read_text())


def test_bundled_site_and_starter_model_are_in_sync_with_their_sources() -> None:
    check = subprocess.run(
        [sys.executable, "edge/build_assets.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    load_model((ROOT / "edge" / "src" / "model.json").read_text())


def test_origin_verifies_the_edge_token_vectors() -> None:
    from origin.tokens import verify

    vectors = json.loads((GOLDEN / "token_vectors.json").read_text())
    for vector in vectors:
        claims = verify(vector["secret"].encode("utf-8"), vector["token"])
        decision = vector["decision"]
        assert claims.decision_id == decision["decision_id"]
        assert (claims.slot, claims.variant) == (decision["slot"], decision["variant"])
        assert claims.model_version == decision["model_version"]
        assert claims.propensity == pytest.approx(decision["propensity"])
        assert claims.issued_ms == vector["issued_ms"]


def zone_at(local_hour: int) -> str:
    """An IANA zone (Etc/GMT±N) where it is `local_hour` o'clock right now."""
    offset = (local_hour - datetime.now(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def hero(page: str) -> dict[str, Any]:
    """The hero element's attributes and inner HTML."""
    match = re.search(r'<div([^>]*data-fp-slot="hero"[^>]*)>(.*?)</div>', page, re.S)
    assert match, "no hero slot in the page"
    attributes = {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', match.group(1))}
    return {"attributes": attributes, "inner": match.group(2)}


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def logged_decisions(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT record FROM log WHERE kind = 'decision'").fetchall()
    return {r["decision_id"]: r for r in (json.loads(row[0]) for row in rows)}


@pytest.fixture
def test_model(tmp_path: Path) -> Path:
    """The starter model without exploration or holdout: each visitor sees the model's best."""
    model = json.loads((ROOT / "edge" / "src" / "model.json").read_text())
    for slot in model["slots"].values():
        slot["exploration"] = {"kind": "egreedy", "epsilon": 0.0}
        slot["holdout"] = 0.0
    model["model_version"] = "20261125T230000Z-edgeint"
    path = tmp_path / "model.json"
    path.write_text(json.dumps(seal(model)))
    return path


def test_worker_in_front_of_the_real_origin_personalizes_and_logs(
    tmp_path: Path, test_model: Path
) -> None:
    with (
        running_origin(tmp_path, model=test_model, env={"FP_PUBLISH_INTERVAL_S": "3600"}) as origin,
        edge_worker(origin.url, token_secret=TEST_SECRET, vars={"FP_MODEL_REFRESH_S": "0"}) as edge,
    ):
        served = httpx.get(origin.url + "/v1/model", timeout=10)
        model = load_model(served.content)

        def refreshed() -> bool:
            httpx.get(edge.url + "/", headers={"user-agent": DESKTOP}, timeout=30)
            return edge.status()["model_version"] == model["model_version"]

        wait_for(refreshed, f"the worker to load model {model['model_version']} from the origin")

        visitors = {
            "mobile, Google search, morning": (
                "/",
                {"user-agent": IPHONE, "sec-ch-ua-mobile": "?1", "referer": "https://www.google.com/search?q=trail+running+shoes",
                 **cf_header("US", zone_at(8))},
            ),
            "desktop, newsletter, evening": (
                "/?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale",
                {"user-agent": DESKTOP, "sec-ch-ua-mobile": "?0", **cf_header("GB", zone_at(19))},
            ),
        }  # fmt: skip
        shown: dict[str, dict[str, Any]] = {}
        for who, (path, headers) in visitors.items():
            response = httpx.get(edge.url + path, headers=headers, timeout=30)
            assert response.status_code == 200, who
            assert response.headers["cache-control"] == "private"
            assert response.headers["x-fp-model"] == model["model_version"]
            assert "x-fp-fallback" not in response.headers
            shown[who] = hero(response.text)

        variants = {who: h["attributes"]["data-fp-variant"] for who, h in shown.items()}
        assert len(set(variants.values())) == 2, f"both visitors saw the same hero: {variants}"

        tokens = {who: h["attributes"]["data-fp-decision"] for who, h in shown.items()}
        ids = {who: json.loads(b64url(token.split(".")[0]))["d"] for who, token in tokens.items()}
        log = wait_for(
            lambda: (d := logged_decisions(origin.db)) and all(i in d for i in ids.values()) and d,
            "the decisions to reach the origin's log",
        )
        for who, decision_id in ids.items():
            record = log[decision_id]
            assert record["slot"] == "hero"
            assert record["variant"] == variants[who]
            assert record["model_version"] == model["model_version"]
            # Whatever the model says for this visitor: the Python policy, on the logged inputs.
            again = decide(model, record["context"], "hero", record["visitor_id"], decision_id)
            assert again.variant == variants[who], who
            assert record["propensity"] == pytest.approx(again.propensity)
            assert shown[who]["inner"] == SITE["slots"]["hero"]["html"][variants[who]]
