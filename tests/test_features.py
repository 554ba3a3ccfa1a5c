"""Feature spec `fp-features/1`: edge cases of every field (CONTRACT §2–§4)."""

from __future__ import annotations

import math

import pytest

from model_export.features import (
    SpecError,
    decode,
    default_spec,
    dense,
    feature_names,
    features,
    split_url,
    validate_spec,
)
from model_export.site import load_site

SPEC = default_spec(load_site().vocab())
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148 Safari/604.1"


def active(context: object) -> dict[str, float]:
    return dict(features(context, SPEC))  # type: ignore[arg-type]


def value_of(context: object, field: str) -> str:
    [name] = [n for n in active(context) if n.startswith(f"{field}=")]
    return name.split("=", 1)[1]


def test_names_follow_the_spec_and_vocabularies_end_with_other_unknown() -> None:
    names = feature_names(SPEC)
    assert len(names) == len(set(names))
    assert names[:2] == ["referrer_class=search", "referrer_class=social"]
    assert "hour_sin" in names and "session_pages" in names
    for field in SPEC["fields"]:
        if field["kind"] == "categorical":
            assert field["vocab"][-2:] == ["other", "unknown"]


def test_site_vocabulary_reaches_the_spec() -> None:
    sections = next(f for f in SPEC["fields"] if f["name"] == "landing_section")["vocab"]
    assert sections == [
        "home",
        "running",
        "camping",
        "hiking",
        "cycling",
        "sale",
        "other",
        "unknown",
    ]


@pytest.mark.parametrize("context", [{}, None, [], "x", 42, {"url": 1, "session": "s"}])
def test_empty_or_malformed_context_is_all_unknown_never_an_error(context: object) -> None:
    names = active(context)
    assert names["referrer_class=direct"] == 1.0
    assert names["device=unknown"] == 1.0 and names["weekday=unknown"] == 1.0
    assert names["landing_section=home"] == 1.0
    assert "hour_sin" not in names and "hour_cos" not in names


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        ("https://www.google.com/search?q=x", "search"),
        ("https://search.yahoo.co.jp/", "search"),
        ("https://m.facebook.com/", "social"),
        ("https://t.co/abc", "social"),
        ("https://mail.google.com/mail/u/0", "email"),
        ("https://www.trailhead.example/camping", "internal"),
        ("", "direct"),
        ("   ", "direct"),
        ("https://blog.example.org/", "other"),
        ("https://notgoogle.community/", "other"),
        ("not a url", "unknown"),
        ("https://", "unknown"),
    ],
)
def test_referrer_class(referrer: str, expected: str) -> None:
    context = {"url": "https://trailhead.example/", "referrer": referrer}
    assert value_of(context, "referrer_class") == expected


def test_utm_medium_outranks_the_referrer_and_is_decoded() -> None:
    url = "https://trailhead.example/?UTM_Medium=%45mail&utm_source=News+letter"
    context = {"url": url, "referrer": "https://www.google.com/"}
    assert value_of(context, "referrer_class") == "email"
    assert value_of(context, "utm_medium") == "email"
    assert value_of(context, "utm_source") == "other"  # "news letter" is not in the vocabulary


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a+b", "a b"),
        ("caf%C3%A9", "café"),
        ("100%zz", "100%zz"),
        ("%e2%82", "%e2%82"),
        ("%C0%AF+x", "%C0%AF x"),
        ("%", "%"),
    ],
)
def test_decode_is_strict_and_falls_back_to_the_input(raw: str, decoded: str) -> None:
    assert decode(raw) == decoded


def test_first_query_parameter_wins_and_fragment_is_ignored() -> None:
    host, path, params = split_url(" HTTPS://User@Shop.Example:8443/Running?a=1&a=2#b=3 ")
    assert (host, path, params) == ("shop.example", "/Running", {"a": "1"})
    assert value_of({"url": path}, "landing_section") == "running"


@pytest.mark.parametrize(
    ("ua", "hint", "device"),
    [
        (IPHONE, None, "mobile"),
        ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) Mobile/15E148", "?0", "tablet"),
        ("Mozilla/5.0 (Linux; Android 13; SM-X700) Chrome/124.0 Safari/537.36", None, "tablet"),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/124 Mobile Safari/537.36",
            None,
            "mobile",
        ),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0 Safari/537.36", "?1", "mobile"),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Firefox/125.0", None, "desktop"),
        (None, "?1", "mobile"),
        (None, "?0", "desktop"),
        (None, None, "unknown"),
        (7, None, "unknown"),
    ],
)
def test_device_from_user_agent_and_client_hint(ua: object, hint: object, device: str) -> None:
    context = {k: v for k, v in {"user_agent": ua, "ch_ua_mobile": hint}.items() if v is not None}
    assert value_of(context, "device") == device


@pytest.mark.parametrize(
    ("zone", "iso_utc", "hour", "weekday"),
    [
        ("Asia/Kathmandu", "2026-11-25T18:15:00+00:00", 0.0, "thu"),  # +5:45
        ("Pacific/Kiritimati", "2026-11-25T10:30:00+00:00", 0.5, "thu"),  # +14
        ("Pacific/Pago_Pago", "2026-11-25T10:30:00+00:00", 23.5, "tue"),  # −11
        ("America/New_York", "2026-03-08T07:00:00+00:00", 3.0, "sun"),  # just after DST starts
        ("Australia/Lord_Howe", "2026-01-15T12:00:00+00:00", 23.0, "thu"),  # +11 in summer
    ],
)
def test_local_hour_and_weekday(zone: str, iso_utc: str, hour: float, weekday: str) -> None:
    from datetime import datetime

    now_ms = datetime.fromisoformat(iso_utc).timestamp() * 1000
    got = active({"timezone": zone, "now_ms": now_ms})
    assert got.get("hour_sin", 0.0) == pytest.approx(math.sin(2 * math.pi * hour / 24), abs=1e-12)
    assert got.get("hour_cos", 0.0) == pytest.approx(math.cos(2 * math.pi * hour / 24), abs=1e-12)
    assert got[f"weekday={weekday}"] == 1.0


@pytest.mark.parametrize("zone", ["europe/paris", "Not/AZone", "../etc", "A" * 65, "", 5, None])
def test_invalid_time_zones_are_unknown(zone: object) -> None:
    got = active({"timezone": zone, "now_ms": 1_764_073_800_000})
    assert got["weekday=unknown"] == 1.0 and "hour_sin" not in got


@pytest.mark.parametrize(
    ("context", "field", "expected"),
    [
        ({"country": " gb "}, "country", "GB"),
        ({"country": "ＵＳ"}, "country", "unknown"),
        ({"country": "NZ"}, "country", "other"),
        ({"accept_language": "pt_BR,en;q=0.5"}, "language", "pt"),
        ({"accept_language": "*"}, "language", "unknown"),
        ({"accept_language": "en\n-US"}, "language", "unknown"),  # whole-string match
        ({"country": "\u00a0US"}, "country", "unknown"),  # only ASCII space is trimmed
        ({"returning": True}, "visitor", "returning"),
        ({"returning": 1}, "visitor", "unknown"),
        ({"url": "https://trailhead.example//CAMPING/x"}, "landing_section", "camping"),
        ({"url": "https://trailhead.example/blog"}, "landing_section", "other"),
        ({"session": {"price": 49.99}}, "price_band", "low"),
        ({"session": {"price": 50}}, "price_band", "mid"),
        ({"session": {"price": 150}}, "price_band", "high"),
        ({"session": {"price": -1}}, "price_band", "unknown"),
        ({"session": {"price": "20"}}, "price_band", "unknown"),
        ({"session": {"last_event": " Click "}}, "last_event", "click"),
    ],
)
def test_categorical_fields(context: dict, field: str, expected: str) -> None:
    assert value_of(context, field) == expected


def test_session_categories_and_pages() -> None:
    session = {"categories": [" Running ", "CAMPING", "kayaking", 7, "ſale"], "pages": 500}
    got = active({"session": session})
    assert [n for n in got if n.startswith("session_categories=")] == [
        "session_categories=running",
        "session_categories=camping",
    ]
    assert got["session_pages"] == 1.0  # capped at 50 pages
    assert active({"session": {"pages": 0}}).get("session_pages") is None
    assert active({"session": {"pages": 3}})["session_pages"] == pytest.approx(
        math.log1p(3) / math.log1p(50)
    )


def test_dense_row_matches_the_active_features() -> None:
    names = feature_names(SPEC)
    pairs = features({"url": "/sale", "session": {"pages": 3}}, SPEC)
    row = dense(pairs, names)
    assert len(row) == len(names)
    assert {names[i]: v for i, v in enumerate(row) if v} == dict(pairs)


def test_validate_spec_rejects_an_unknown_version_or_vocabulary() -> None:
    with pytest.raises(SpecError, match="version"):
        validate_spec({**SPEC, "version": "fp-features/0"})
    broken = [dict(f) for f in SPEC["fields"]]
    broken[0]["vocab"] = ["search", "unknown"]
    with pytest.raises(SpecError, match="referrer_class"):
        validate_spec({**SPEC, "fields": broken})
