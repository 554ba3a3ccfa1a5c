"""Any header or URL bytes give a well-formed feature list, never an exception (issue 7 §1)."""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_export.features import default_spec, feature_names, features, is_bot, split_url
from tests.conftest import ROOT

SPEC = default_spec()
NAMES = set(feature_names(SPEC))
CATEGORICAL = [f["name"] for f in SPEC["fields"] if f["kind"] == "categorical"]
TRIED: Counter[str] = Counter()

# Header values as a browser or a hostile client may send them: any text, raw bytes decoded
# leniently, and strings that look almost right.
header_text = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["%", "%zz", "%E2%82", "%C0%80", "?utm_source=%", "http://", "https://[::1"]),
)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | header_text,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
context_keys = st.sampled_from(
    [
        "url",
        "referrer",
        "site_host",
        "user_agent",
        "ch_ua_mobile",
        "accept_language",
        "country",
        "timezone",
        "now_ms",
        "returning",
        "session",
    ]
)
contexts = st.dictionaries(context_keys, st.one_of(header_text, anything), max_size=11)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(active: list[tuple[str, float]]) -> None:
    names = [n for n, _ in active]
    assert set(names) <= NAMES
    assert len(names) == len(set(names))
    for field in CATEGORICAL:
        assert sum(n.startswith(field + "=") for n in names) == 1, field
    assert all(isinstance(v, float) and abs(v) <= 1.0 for _, v in active)


@FUZZ
@given(contexts)
def test_any_context_gives_features(context: dict) -> None:
    TRIED["contexts"] += 1
    _check(features(context, SPEC))


@FUZZ
@given(st.one_of(anything, st.lists(anything)))
def test_non_mapping_context_gives_features(context: object) -> None:
    TRIED["non_mapping"] += 1
    _check(features(context, SPEC))  # type: ignore[arg-type]


@FUZZ
@given(header_text)
def test_any_url_splits(url: str) -> None:
    TRIED["urls"] += 1
    host, path, params = split_url(url)
    assert host is None or isinstance(host, str)
    assert path and isinstance(params, dict)
    assert is_bot(url, SPEC["rules"]) in (True, False)


def teardown_module() -> None:
    """Leave the count of inputs tried where the closing note can quote it."""
    out = ROOT / "build" / "test-artifacts"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz_features_py.json").write_text(json.dumps(dict(TRIED), sort_keys=True))
    print(f"\nfeatures.py fuzz: {sum(TRIED.values())} inputs tried {dict(TRIED)}")
