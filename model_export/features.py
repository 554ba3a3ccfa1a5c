"""The feature spec `fp-features/1`: raw request context → named, ordered features.

Pure standard library, so it imports unchanged in Pyodide. See CONTRACT.md §2–§4; every
runtime implements the same steps, and `tests/golden/` checks that they do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeGuard, TypeVar

SPEC_VERSION = "fp-features/1"

Feature = tuple[str, float]

_ASCII_SPACE = " \t\n\r\f\v"
_HEX = "0123456789abcdefABCDEF"
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# `\Z`, not `$`: Python's `$` also matches before a final "\n" ("en\n" is not a language).
_COUNTRY = re.compile(r"^[A-Z]{2}\Z")
_LANGUAGE = re.compile(r"^[a-z]{2,3}\Z")
_TIMEZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}\Z")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TWO_PI = 2 * math.pi  # the first product of `2 * math.pi * hour / 24`, made once

DEFAULT_RULES: dict[str, Any] = {
    "medium_class": {
        "email": "email",
        "newsletter": "email",
        "cpc": "paid",
        "ppc": "paid",
        "paid": "paid",
        "paidsearch": "paid",
        "paid_social": "paid",
        "display": "paid",
        "social": "social",
        "organic_social": "social",
    },
    "referrer_hosts": [
        [
            "email",
            r"^(mail\.google\.com|outlook\.live\.com|outlook\.office\.com|mail\.yahoo\.com)$",
        ],
        ["search", r"(^|\.)(google|bing|duckduckgo|yahoo|baidu|yandex|ecosia|qwant)\.[a-z.]+$"],
        [
            "social",
            r"(^|\.)(facebook\.com|instagram\.com|t\.co|twitter\.com|x\.com|linkedin\.com"
            r"|lnkd\.in|pinterest\.[a-z.]+|reddit\.com|tiktok\.com|youtube\.com)$",
        ],
    ],
    "tablet": r"iPad|Tablet|Kindle|Silk/|PlayBook|Android(?!.*Mobile)",
    "mobile": r"Mobi|iPhone|iPod|Windows Phone|BlackBerry|Opera Mini",
    "os": [
        ["ios", r"iPhone|iPad|iPod|CPU OS \d"],
        ["android", r"Android"],
        ["chromeos", r"CrOS"],
        ["windows", r"Windows"],
        ["macos", r"Macintosh|Mac OS X"],
        ["linux", r"Linux|X11"],
    ],
    "browser": [
        ["edge", r"Edg(e|A|iOS)?/"],
        ["opera", r"OPR/|Opera"],
        ["samsung", r"SamsungBrowser"],
        ["firefox", r"Firefox/|FxiOS"],
        ["chrome", r"Chrome/|CriOS|Chromium"],
        ["safari", r"Safari/"],
    ],
    "bot": r"bot|crawl|spider|slurp|bingpreview|facebookexternalhit|headlesschrome|lighthouse",
    "price_bands": [50, 150],
    "max_pages": 50,
}

DEFAULT_VOCAB: dict[str, list[str]] = {
    "referrer_class": ["search", "social", "email", "paid", "internal", "direct"],
    "referrer_host": [
        "google.com",
        "bing.com",
        "duckduckgo.com",
        "facebook.com",
        "instagram.com",
        "t.co",
        "linkedin.com",
        "pinterest.com",
        "reddit.com",
        "mail.google.com",
    ],
    "utm_source": ["google", "facebook", "instagram", "newsletter", "tiktok", "bing", "partner"],
    "utm_medium": ["cpc", "email", "social", "display", "affiliate", "organic"],
    "utm_campaign": ["spring_sale", "summer_sale", "black_friday", "camping_launch", "running"],
    "device": ["mobile", "tablet", "desktop"],
    "os": ["ios", "android", "chromeos", "windows", "macos", "linux"],
    "browser": ["chrome", "safari", "firefox", "edge", "samsung", "opera"],
    "weekday": list(_WEEKDAYS),
    "country": ["US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "JP", "CA", "AU", "BR", "IN"],
    "language": ["en", "de", "fr", "es", "it", "nl", "sv", "ja", "pt"],
    "visitor": ["new", "returning"],
    "landing_section": ["home", "running", "camping", "hiking", "cycling", "sale", "product"],
    "session_categories": ["running", "camping", "hiking", "cycling", "sale"],
    "last_event": ["view", "impression", "click", "conversion"],
}

_FIELDS: list[tuple[str, str]] = [
    ("referrer_class", "categorical"),
    ("referrer_host", "categorical"),
    ("utm_source", "categorical"),
    ("utm_medium", "categorical"),
    ("utm_campaign", "categorical"),
    ("device", "categorical"),
    ("os", "categorical"),
    ("browser", "categorical"),
    ("hour_sin", "numeric"),
    ("hour_cos", "numeric"),
    ("weekday", "categorical"),
    ("country", "categorical"),
    ("language", "categorical"),
    ("visitor", "categorical"),
    ("landing_section", "categorical"),
    ("session_categories", "multi_hot"),
    ("price_band", "categorical"),
    ("session_pages", "numeric"),
    ("last_event", "categorical"),
]


class SpecError(ValueError):
    """A feature spec that no runtime could apply consistently."""


def default_spec(vocab: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """The default spec; `vocab` overrides vocabularies (e.g. a site's sections and categories)."""
    merged = {**DEFAULT_VOCAB, **(vocab or {})}
    merged["price_band"] = ["low", "mid", "high"]
    fields: list[dict[str, Any]] = []
    for name, kind in _FIELDS:
        field: dict[str, Any] = {"name": name, "kind": kind}
        if kind == "categorical":
            values = [v for v in merged[name] if v not in ("other", "unknown")]
            field["vocab"] = values + ["other", "unknown"]
        elif kind == "multi_hot":
            field["vocab"] = list(merged[name])
        fields.append(field)
    spec = {"version": SPEC_VERSION, "fields": fields, "rules": DEFAULT_RULES}
    validate_spec(spec)
    return spec


def validate_spec(spec: Mapping[str, Any]) -> None:
    """Raise SpecError unless `spec` is a well-formed `fp-features/1` spec."""
    if spec.get("version") != SPEC_VERSION:
        raise SpecError(f"features.version must be {SPEC_VERSION!r}, got {spec.get('version')!r}")
    known = dict(_FIELDS)
    for field in spec.get("fields", []):
        name = field.get("name")
        if known.get(name) != field.get("kind"):
            raise SpecError(
                f"features.fields: unknown field or kind {name!r}/{field.get('kind')!r}"
            )
        if field["kind"] == "categorical" and field.get("vocab", [])[-2:] != ["other", "unknown"]:
            raise SpecError(f"features.fields[{name}].vocab must end with 'other', 'unknown'")


def feature_names(spec: Mapping[str, Any]) -> list[str]:
    """All feature names in contract order (the dense ONNX input layout)."""
    names: list[str] = []
    for field in spec["fields"]:
        if field["kind"] == "numeric":
            names.append(field["name"])
        else:
            names.extend(f"{field['name']}={v}" for v in field["vocab"])
    return names


# --- text helpers (CONTRACT §2) ---------------------------------------------------------------


_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def lower(s: str) -> str:
    """ASCII-only lowercase: the same in every runtime, whatever its Unicode tables."""
    return s.translate(_LOWER)


def upper(s: str) -> str:
    """ASCII-only uppercase."""
    return s.translate(_UPPER)


def trim(s: str) -> str:
    """Strip ASCII white space only."""
    return s.strip(_ASCII_SPACE)


def decode(s: str) -> str:
    """`+` → space, then strict UTF-8 percent-decoding; malformed input stays as it was."""
    s = s.replace("+", " ")
    if "%" not in s:
        return s
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c == "%":
            pair = s[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                return s
            out.append(int(pair, 16))
            i += 3
        else:
            out.extend(c.encode("utf-8", "surrogatepass"))
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return s


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """`isinstance(value, Mapping)`, asking `dict` first: contexts and sessions are nearly always
    dicts, and the check against the Mapping ABC is several times slower (~0.3 µs)."""
    return isinstance(value, dict) or isinstance(value, Mapping)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):  # a tuple: faster than |
        return None
    return float(value) if math.isfinite(value) else None


# --- URL parsing (CONTRACT §3) ----------------------------------------------------------------


def split_url(url: str) -> tuple[str | None, str, dict[str, str]]:
    """(host or None, path, first-occurrence query parameters) by the contract's own rules."""
    u = trim(url).split("#", 1)[0]
    before, _, query = u.partition("?")
    host: str | None = None
    path = before
    scheme = _SCHEME.match(before)
    if scheme:
        rest = before[scheme.end() :]
        authority, slash, tail = rest.partition("/")
        authority = authority.rsplit("@", 1)[-1]
        if authority.startswith("["):
            authority = authority.split("]", 1)[0] + "]"
        else:
            authority = authority.split(":", 1)[0]
        host = lower(authority)
        path = slash + tail
    params: dict[str, str] = {}
    if query:
        for item in query.split("&"):
            name, _, value = item.partition("=")
            key = lower(decode(name))
            if key not in params:
                params[key] = decode(value)
    return host, path or "/", params


def _strip_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


_COMPILED: dict[str, re.Pattern[str]] = {}


def _search(pattern: str, text: str) -> bool:
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        if len(_COMPILED) > 256:  # specs come and go with model versions; patterns rarely do
            _COMPILED.clear()
        compiled = _COMPILED[pattern] = re.compile(pattern, re.ASCII | re.IGNORECASE)
    return compiled.search(text) is not None


def _first_rule(rules: Iterable[Sequence[str]], text: str) -> str | None:
    for value, pattern in rules:
        if _search(pattern, text):
            return value
    return None


# --- field extraction (CONTRACT §4) -----------------------------------------------------------


@lru_cache(maxsize=512)
def _zone(name: str) -> Any:
    """The tzinfo for an IANA zone name, or None when unknown or malformed (cached: zones
    repeat)."""
    if len(name) > 64 or not _TIMEZONE.match(name):
        return None
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except (Exception, KeyError):  # unknown key, missing tzdata
        return None


_NO_CLOCK = (0.0, 0.0, None)  # hour_sin, hour_cos, weekday when the local time is unknown


def _clock(context: Mapping[str, Any]) -> tuple[float, float, str | None]:
    """(hour_sin, hour_cos, weekday) of the context's local time (`now_ms` in `timezone`)."""
    now_ms = context.get("now_ms")
    zone = _text(context.get("timezone"))
    if type(now_ms) is int:  # the server's clock: whole ms, whose second fixes the local minute
        return _clock_at(zone, now_ms // 1000)
    now = _number(now_ms)
    return _NO_CLOCK if now is None else _clock_fields(zone, now / 1000.0)


@lru_cache(maxsize=1024)
def _clock_at(zone: str, second: int) -> tuple[float, float, str | None]:
    """`_clock_fields` once per zone and second: under load, every decision of a second shares
    it (a zone conversion, a sine and a cosine: ~3 µs of the origin's ~24 µs `features`)."""
    return _clock_fields(zone, second)


def _clock_fields(zone: str, seconds: float) -> tuple[float, float, str | None]:
    tz = _zone(zone)
    if tz is None:
        return _NO_CLOCK
    try:
        local = datetime.fromtimestamp(seconds, tz)
    except Exception:  # out-of-range time
        return _NO_CLOCK
    hour = local.hour + local.minute / 60.0
    return math.sin(_TWO_PI * hour / 24), math.cos(_TWO_PI * hour / 24), _WEEKDAYS[local.weekday()]


_T = TypeVar("_T")


def per_object(cache: dict[int, tuple[Any, Any]], key: Any, build: Callable[[Any], _T]) -> _T:
    """`build(key)`, once per object `key` (a model's rules, fields or slots; models are never
    mutated once in use).

    The entry keeps `key` alive, so its id() is not reused while cached. A few live models at a
    time: the cache is cleared, never grown without bound.
    """
    cached = cache.get(id(key))
    if cached is not None and cached[0] is key:
        return cached[1]
    if len(cache) > 16:
        cache.clear()
    value = build(key)
    cache[id(key)] = (key, value)
    return value


class _Rules:
    """A spec's rules, prepared once per rules object; hashed by identity for the caches below."""

    def __init__(self, rules: Mapping[str, Any]) -> None:
        self.medium_class: Mapping[str, str] = rules["medium_class"]
        self.referrer_hosts = tuple((v, p) for v, p in rules["referrer_hosts"])
        self.tablet: str = rules["tablet"]
        self.mobile: str = rules["mobile"]
        self.os = tuple((v, p) for v, p in rules["os"])
        self.browser = tuple((v, p) for v, p in rules["browser"])
        self.low_max, self.mid_max = rules["price_bands"]
        self.max_pages = rules["max_pages"]
        self.log1p_max_pages = math.log1p(rules["max_pages"])


_PREPARED: dict[int, tuple[Any, _Rules]] = {}


def _prepared(rules: Mapping[str, Any]) -> _Rules:
    return per_object(_PREPARED, rules, _Rules)


# Real traffic repeats a few thousand landing URLs, referrers, user agents and languages: what
# each one yields is computed once (bounded caches keyed on the raw strings).


@lru_cache(maxsize=4096)
def _page(url: str) -> tuple[str | None, str, str, str, str]:
    """(host, landing section, utm_source, utm_medium, utm_campaign) of the page URL."""
    host, path, params = split_url(url)
    segments = [s for s in path.split("/") if s]
    return (
        host,
        lower(segments[0]) if segments else "home",
        lower(trim(params.get("utm_source", ""))),
        lower(trim(params.get("utm_medium", ""))),
        lower(trim(params.get("utm_campaign", ""))),
    )


@lru_cache(maxsize=4096)
def _referrer_host(referrer: str) -> str | None:
    """The referrer's host without `www.` (None when it has none); `referrer` is trimmed."""
    host = split_url(referrer)[0] if referrer else None
    return _strip_www(host) if host else None


@lru_cache(maxsize=4096)
def _referrer_class(ref_host: str, rules: _Rules) -> str:
    return _first_rule(rules.referrer_hosts, ref_host) or "other"


@lru_cache(maxsize=4096)
def _classify_agent(ua: str, mobile_hint: str, rules: _Rules) -> tuple[str | None, ...]:
    """(device, os, browser) of a user agent and its `Sec-CH-UA-Mobile` hint."""
    if ua and _search(rules.tablet, ua):
        device: str | None = "tablet"
    elif mobile_hint == "?1" or (ua and _search(rules.mobile, ua)):
        device = "mobile"
    elif ua or mobile_hint == "?0":
        device = "desktop"
    else:
        device = None
    if not ua:
        return device, None, None
    return device, _first_rule(rules.os, ua) or "other", _first_rule(rules.browser, ua) or "other"


@lru_cache(maxsize=1024)
def _country(text: str) -> str | None:
    """An ISO 3166 alpha-2 code (any ASCII case, trimmed) in upper case, or None."""
    country = upper(trim(text))
    return country if _COUNTRY.match(country) else None


@lru_cache(maxsize=1024)
def _language(accept_language: str) -> str | None:
    language = accept_language.split(",", 1)[0].split(";", 1)[0]
    language = lower(trim(language).replace("_", "-").split("-", 1)[0])
    return language if _LANGUAGE.match(language) else None


def raw_values(context: Mapping[str, Any], rules: Mapping[str, Any]) -> dict[str, Any]:
    """Each field's raw value before vocabulary lookup (`None` = unknown)."""
    if not is_mapping(context):
        context = {}
    prepared = _prepared(rules)
    url_host, section, source, medium, campaign = _page(_text(context.get("url")))
    referrer = trim(_text(context.get("referrer")))
    ref_host = _referrer_host(referrer)

    if medium in prepared.medium_class:
        ref_class: str | None = prepared.medium_class[medium]
    elif not referrer:
        ref_class = "direct"
    elif not ref_host:
        ref_class = None
    elif ref_host == _site_host(_text(context.get("site_host")), url_host):
        ref_class = "internal"
    else:
        ref_class = _referrer_class(ref_host, prepared)

    device, os_family, browser = _classify_agent(
        _text(context.get("user_agent")), _text(context.get("ch_ua_mobile")), prepared
    )

    hour_sin, hour_cos, weekday = _clock(context)

    country = _country(_text(context.get("country")))
    returning = context.get("returning")

    session = context.get("session")
    if is_mapping(session) and session:
        categories = session.get("categories")
        categories = categories if isinstance(categories, list) else []
        price = _number(session.get("price"))
        pages = _number(session.get("pages"))
        pages = pages if pages is not None and pages >= 0 else 0.0
        session_categories = [lower(trim(c)) for c in categories if isinstance(c, str)]
        price_band = None if price is None or price < 0 else _price_band(price, prepared)
        session_pages = math.log1p(min(pages, prepared.max_pages)) / prepared.log1p_max_pages
        last_event = lower(trim(_text(session.get("last_event")))) or None
    else:  # none yet (a first page): what an empty session gives, without reading it
        session_categories, price_band, session_pages, last_event = [], None, 0.0, None

    return {
        "referrer_class": ref_class,
        "referrer_host": ref_host,
        "utm_source": source or None,
        "utm_medium": medium or None,
        "utm_campaign": campaign or None,
        "device": device,
        "os": os_family,
        "browser": browser,
        "hour_sin": hour_sin,
        "hour_cos": hour_cos,
        "weekday": weekday,
        "country": country,
        "language": _language(_text(context.get("accept_language"))),
        "visitor": ("returning" if returning else "new") if isinstance(returning, bool) else None,
        "landing_section": section,
        "session_categories": session_categories,
        "price_band": price_band,
        "session_pages": session_pages,
        "last_event": last_event,
    }


def _price_band(price: float, prepared: _Rules) -> str:
    return "low" if price < prepared.low_max else "mid" if price < prepared.mid_max else "high"


@lru_cache(maxsize=1024)
def _site_host(site_host: str, url_host: str | None) -> str:
    """The site's own host without `www.`: the context's `site_host`, else the page URL's (only
    asked when a referrer's host is compared to it)."""
    return _strip_www(lower(trim(site_host)) or url_host or "")


_Plan = list[tuple[str, str, dict[str, Feature], Feature, Feature]]
_PLANS: dict[int, tuple[Any, _Plan]] = {}


def _plan(fields: list[dict[str, Any]]) -> _Plan:
    """Per field: (name, kind, value → active feature, `other`, `unknown` feature), cached."""
    return per_object(_PLANS, fields, _build_plan)


def _build_plan(fields: list[dict[str, Any]]) -> _Plan:
    """`_plan` built: its `(name, 1.0)` pairs are shared by every feature list (immutable)."""
    plan: _Plan = []
    for field in fields:
        name, kind = field["name"], field["kind"]
        vocab = field.get("vocab", [])
        known = vocab[:-2] if kind == "categorical" else vocab
        names = {v: (f"{name}={v}", 1.0) for v in known}
        plan.append((name, kind, names, (f"{name}=other", 1.0), (f"{name}=unknown", 1.0)))
    return plan


def features(context: Mapping[str, Any], spec: Mapping[str, Any]) -> list[Feature]:
    """Active features of `context` as ordered `(name, value)` pairs; never raises on bad input."""
    raw = raw_values(context, spec["rules"])
    active: list[Feature] = []
    append = active.append
    for name, kind, names, other, unknown in _plan(spec["fields"]):
        value = raw[name]
        if kind == "categorical":
            append(names.get(value, other) if value else unknown)
        elif kind == "numeric":
            if value != 0.0:
                append((name, value))
        elif value:  # multi_hot
            present = set(value)
            active.extend(pair for v, pair in names.items() if v in present)
    return active


def dense(active: list[Feature], names: list[str]) -> list[float]:
    """The dense vector for `active` in `names` order (the ONNX and scikit-learn layout)."""
    index = {n: i for i, n in enumerate(names)}
    row = [0.0] * len(names)
    for name, value in active:
        row[index[name]] = value
    return row


def is_bot(user_agent: str, rules: Mapping[str, Any]) -> bool:
    """Known crawlers and headless fetchers get the default variant and are not logged."""
    return bool(user_agent) and _search(rules["bot"], user_agent)
