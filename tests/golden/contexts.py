"""The raw contexts of the golden cases: every referrer class, UTM quirk, device, zone and type."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
SAMSUNG = (
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36"
)
WINDOWS_EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51"
)
MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)
MAC_CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
LINUX_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
CROS = (
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
OPERA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0"
)
KINDLE = (
    "Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Silk/3.68 like Chrome/39.0.2171.93 Safari/537.36"
)
WINDOWS_PHONE = (
    "Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.14977"
)
FIREFOX_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) FxiOS/124.0 Mobile/15E148 Safari/605.1.15"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def ms(iso: str) -> int:
    """Epoch milliseconds of an ISO-8601 UTC time."""
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


BASE: dict[str, Any] = {
    "url": "https://trailhead.example/running",
    "referrer": "https://www.google.com/",
    "user_agent": IPHONE,
    "ch_ua_mobile": "?1",
    "accept_language": "en-US,en;q=0.9",
    "country": "US",
    "timezone": "America/New_York",
    "now_ms": ms("2026-11-25T12:30:00"),
    "returning": False,
}
DROP = object()  # marks a key to remove from BASE


def _variant(**changes: Any) -> dict[str, Any]:
    context = dict(BASE)
    for key, value in changes.items():
        if value is DROP:
            context.pop(key, None)
        else:
            context[key] = value
    return context


def _referrers() -> list[tuple[str, Any]]:
    refs = {
        "search-google": "https://www.google.com/search?q=trail+shoes",
        "search-bing": "https://www.bing.com/",
        "search-ddg": "https://duckduckgo.com/",
        "search-yahoo-jp": "https://search.yahoo.co.jp/search?p=x",
        "search-ecosia-upper": "HTTPS://WWW.ECOSIA.ORG/search",
        "social-facebook": "https://m.facebook.com/",
        "social-tco": "https://t.co/abc123",
        "social-instagram": "https://l.instagram.com/?u=x",
        "social-pinterest-uk": "https://www.pinterest.co.uk/pin/1",
        "social-reddit": "https://old.reddit.com/r/running",
        "email-gmail": "https://mail.google.com/mail/u/0/",
        "email-outlook": "https://outlook.live.com/",
        "internal": "https://trailhead.example/camping",
        "internal-www": "https://www.trailhead.example/",
        "internal-port-user": "https://bob:pw@trailhead.example:8443/x",
        "direct-empty": "",
        "direct-spaces": "  \t ",
        "other-blog": "https://blog.example.org/post",
        "other-lookalike": "https://notgoogle.community/",
        "other-ipv6": "http://[2001:db8::1]:8080/",
        "other-android-app": "android-app://com.google.android.gm/",
        "malformed-no-scheme": "www.google.com/search",
        "malformed-text": "not a url at all",
        "malformed-scheme-only": "https://",
        "malformed-colon-slash": "://google.com",
        "malformed-relative": "/search?q=x",
        "unicode-host": "https://bücher.example/",
        "unicode-rtl-host": "https://مثال.example/",
        "emoji-path": "https://www.google.com/🏕️?q=⛺",
    }
    cases = [(f"referrer/{name}", _variant(referrer=ref)) for name, ref in refs.items()]
    cases.append(("referrer/missing", _variant(referrer=DROP)))
    cases.append(("referrer/number", _variant(referrer=42)))
    cases.append(
        (
            "referrer/site-host-given",
            _variant(referrer="https://shop.b.example/", site_host="WWW.shop.b.example"),
        )
    )
    cases.append(
        (
            "referrer/path-url-no-host",
            _variant(url="/running", referrer="https://trailhead.example/"),
        )
    )
    return cases


def _utm() -> list[tuple[str, Any]]:
    queries = {
        "medium-email": "utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale",
        "medium-newsletter": "utm_medium=newsletter",
        "medium-cpc-mixed-case": "UTM_Source=Google&utm_medium=CpC&utm_campaign=Black_Friday",
        "medium-paid-social": "utm_medium=paid_social&utm_source=tiktok",
        "medium-social": "utm_medium=social&utm_source=instagram",
        "medium-unknown": "utm_medium=carrier_pigeon",
        "medium-padded": "utm_medium=%20email%20",
        "percent-encoded": "utm_source=%66acebook&utm_campaign=camping%5Flaunch",
        "percent-name": "utm%5Fsource=bing",
        "plus-space": "utm_campaign=spring+sale&utm_source=+google+",
        "malformed-percent": "utm_source=goo%zzgle&utm_campaign=%",
        "malformed-truncated-utf8": "utm_campaign=%e2%82",
        "invalid-utf8-byte": "utm_source=%ff",
        "overlong-utf8": "utm_source=%C0%AF",
        "encoded-surrogate": "utm_source=%ED%A0%80",
        "utf8-accent": "utm_campaign=caf%C3%A9",
        "repeated-first-wins": "utm_source=partner&utm_source=google&utm_medium=email"
        "&utm_medium=cpc",
        "no-equals": "utm_source&utm_medium=display",
        "empty-values": "utm_source=&utm_medium=&utm_campaign=",
        "double-equals": "utm_source=a=b",
        "ampersands": "&&utm_source=bing&&",
        "fragment": "utm_source=google#utm_medium=email",
        "camping-launch": "utm_source=newsletter&utm_medium=email&utm_campaign=camping_launch",
        "unicode-combining": "utm_campaign=cafe\u0301&utm_source=goo\u0301gle",
        "unicode-rtl": "utm_campaign=%D8%AA%D8%AE%D9%81%D9%8A%D8%B6",
        "emoji-raw": "utm_source=🔥&utm_campaign=running🏃",
        "long-s": "utm_medium=\u017focial",
        "kelvin": "utm_source=\u212aindle",
    }
    cases = [
        (f"utm/{name}", _variant(url=f"https://trailhead.example/running?{query}"))
        for name, query in queries.items()
    ]
    cases.append(
        ("utm/path-only-url", _variant(url="/camping?utm_medium=email&utm_campaign=camping_launch"))
    )
    cases.append(
        ("utm/url-with-spaces", _variant(url="  https://trailhead.example/sale?utm_medium=cpc  "))
    )
    return cases


def _devices() -> list[tuple[str, Any]]:
    uas = {
        "iphone": (IPHONE, "?1"),
        "ipad": (IPAD, "?0"),
        "android-phone": (ANDROID_PHONE, "?1"),
        "android-tablet": (ANDROID_TABLET, "?0"),
        "samsung": (SAMSUNG, DROP),
        "windows-edge": (WINDOWS_EDGE, "?0"),
        "mac-safari": (MAC_SAFARI, DROP),
        "mac-chrome": (MAC_CHROME, "?0"),
        "linux-firefox": (LINUX_FIREFOX, DROP),
        "chromeos": (CROS, "?0"),
        "opera": (OPERA, DROP),
        "kindle-silk": (KINDLE, DROP),
        "windows-phone": (WINDOWS_PHONE, DROP),
        "firefox-ios": (FIREFOX_IOS, DROP),
        "googlebot": (GOOGLEBOT, DROP),
        "desktop-with-mobile-hint": (MAC_CHROME, "?1"),
        "hint-only-mobile": (DROP, "?1"),
        "hint-only-desktop": (DROP, "?0"),
        "hint-odd": (DROP, "?2"),
        "no-ua-no-hint": (DROP, DROP),
        "empty-ua": ("", "?0"),
        "curl": ("curl/8.5.0", DROP),
        "unicode-ua": ("Mözilla/5.0 (iPhone 📱; ‏עברית) Safari/1", DROP),
        "kelvin-kindle": ("Mozilla/5.0 (\u212aindle)", DROP),
        "lowercase-iphone": ("mozilla/5.0 (iphone; cpu iphone os 17_4) mobile safari/1", DROP),
        "ua-number": (12345, "?1"),
        "hint-bool": (MAC_SAFARI, True),
    }
    return [
        (f"device/{name}", _variant(user_agent=ua, ch_ua_mobile=hint))
        for name, (ua, hint) in uas.items()
    ]


def _times() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for hour in range(24):
        minute = (hour * 7) % 60
        stamp = f"2026-11-{23 + hour % 7:02d}T{hour:02d}:{minute:02d}:00"
        cases.append(
            (f"time/berlin-{hour:02d}h", _variant(timezone="Europe/Berlin", now_ms=ms(stamp)))
        )
    zones = {
        "kiritimati": ("Pacific/Kiritimati", "2026-11-25T10:15:00"),
        "kiritimati-date-line": ("Pacific/Kiritimati", "2026-11-29T09:59:00"),
        "pago-pago": ("Pacific/Pago_Pago", "2026-11-25T10:15:00"),
        "pago-pago-late": ("Pacific/Pago_Pago", "2026-11-26T10:59:00"),
        "kathmandu": ("Asia/Kathmandu", "2026-11-25T18:14:00"),
        "kathmandu-midnight": ("Asia/Kathmandu", "2026-11-25T18:15:00"),
        "lord-howe-summer": ("Australia/Lord_Howe", "2026-01-15T12:00:00"),
        "lord-howe-winter": ("Australia/Lord_Howe", "2026-07-15T12:00:00"),
        "lord-howe-dst-before": ("Australia/Lord_Howe", "2026-10-03T15:29:00"),
        "lord-howe-dst-after": ("Australia/Lord_Howe", "2026-10-03T15:30:00"),
        "new-york-dst-before": ("America/New_York", "2026-03-08T06:59:00"),
        "new-york-dst-after": ("America/New_York", "2026-03-08T07:00:00"),
        "new-york-fall-first": ("America/New_York", "2026-11-01T05:30:00"),
        "new-york-fall-second": ("America/New_York", "2026-11-01T06:30:00"),
        "london-fall-before": ("Europe/London", "2026-10-25T00:59:00"),
        "london-fall-after": ("Europe/London", "2026-10-25T01:00:00"),
        "buenos-aires-3-segments": ("America/Argentina/Buenos_Aires", "2026-11-25T12:00:00"),
        "utc": ("UTC", "2026-11-25T23:59:00"),
        "etc-gmt-minus-14": ("Etc/GMT-14", "2026-11-25T12:00:00"),
        "etc-gmt-plus-12": ("Etc/GMT+12", "2026-11-25T12:00:00"),
        "tokyo-new-year": ("Asia/Tokyo", "2026-12-31T15:00:00"),
        "chatham": ("Pacific/Chatham", "2026-11-25T12:00:00"),
        "invalid-lowercase": ("europe/paris", "2026-11-25T12:00:00"),
        "invalid-not-a-zone": ("Not/AZone", "2026-11-25T12:00:00"),
        "invalid-dotdot": ("../etc", "2026-11-25T12:00:00"),
        "invalid-abs-path": ("/etc/localtime", "2026-11-25T12:00:00"),
        "invalid-four-segments": ("America/Argentina/Buenos_Aires/X", "2026-11-25T12:00:00"),
        "invalid-too-long": ("A" * 65, "2026-11-25T12:00:00"),
        "invalid-leading-space": (" Europe/Paris", "2026-11-25T12:00:00"),
        "invalid-unicode": ("Europe/Pärïs", "2026-11-25T12:00:00"),
        "invalid-empty": ("", "2026-11-25T12:00:00"),
    }
    for name, (zone, stamp) in zones.items():
        cases.append((f"time/{name}", _variant(timezone=zone, now_ms=ms(stamp))))
    cases += [
        ("time/epoch-utc", _variant(timezone="UTC", now_ms=0)),
        (
            "time/fractional-ms",
            _variant(timezone="Europe/Paris", now_ms=ms("2026-11-25T07:44:59") + 999.5),
        ),
        ("time/year-2100", _variant(timezone="Europe/Paris", now_ms=ms("2100-06-01T04:00:00"))),
        ("time/now-missing", _variant(now_ms=DROP)),
        ("time/now-string", _variant(now_ms="1764073800000")),
        ("time/now-bool", _variant(now_ms=True)),
        ("time/zone-missing", _variant(timezone=DROP)),
        ("time/zone-number", _variant(timezone=5)),
    ]
    return cases


def _visitor() -> list[tuple[str, Any]]:
    values = {
        "country-gb-lower": {"country": " gb "},
        "country-unlisted": {"country": "NZ"},
        "country-three-letters": {"country": "USA"},
        "country-fullwidth": {"country": "ＵＳ"},
        "country-number": {"country": 840},
        "country-missing": {"country": DROP},
        "language-de": {"accept_language": "de-DE,de;q=0.9,en;q=0.8"},
        "language-underscore": {"accept_language": "pt_BR"},
        "language-q-first": {"accept_language": "fr;q=0.8,en"},
        "language-three-letters": {"accept_language": "fil-PH"},
        "language-star": {"accept_language": "*"},
        "language-unlisted": {"accept_language": "ko-KR"},
        "language-fullwidth": {"accept_language": "ＥＮ"},
        "language-padded-upper": {"accept_language": "  EN-gb  "},
        "language-empty": {"accept_language": ""},
        "language-list": {"accept_language": ["en"]},
        "returning-true": {"returning": True},
        "returning-missing": {"returning": DROP},
        "returning-string": {"returning": "yes"},
        "returning-number": {"returning": 1},
        "section-home": {"url": "https://trailhead.example/"},
        "section-home-no-path": {"url": "https://trailhead.example"},
        "section-camping-upper": {"url": "https://trailhead.example/CAMPING/tents?x=1"},
        "section-double-slash": {"url": "https://trailhead.example//hiking//boots"},
        "section-unlisted": {"url": "https://trailhead.example/blog/post"},
        "section-product": {"url": "https://trailhead.example/product/123"},
        "section-emoji": {"url": "https://trailhead.example/🏕️camping"},
        "section-percent-not-decoded": {"url": "https://trailhead.example/%63amping"},
        "section-rtl": {"url": "https://trailhead.example/تخفيض"},
        "url-number": {"url": 3.5},
        "url-missing": {"url": DROP},
    }
    return [(f"visitor/{name}", _variant(**changes)) for name, changes in values.items()]


def _sessions() -> list[tuple[str, Any]]:
    sessions = {
        "none": DROP,
        "empty": {},
        "categories": {
            "categories": ["running", "camping"],
            "price": 42,
            "pages": 3,
            "last_event": "click",
        },
        "categories-messy": {
            "categories": [" Running ", "CAMPING", "kayaking", 7, None, "running"]
        },
        "categories-string": {"categories": "running"},
        "categories-unicode": {"categories": ["Cámping", "RUNNİNG", "ſale", "hiking🥾"]},
        "price-low-edge": {"price": 49.99},
        "price-mid-edge": {"price": 50},
        "price-high-edge": {"price": 150},
        "price-zero": {"price": 0},
        "price-negative": {"price": -5},
        "price-huge": {"price": 1e308},
        "price-string": {"price": "20"},
        "price-bool": {"price": True},
        "pages-0": {"pages": 0},
        "pages-3": {"pages": 3},
        "pages-500": {"pages": 500},
        "pages-fraction": {"pages": 2.5},
        "pages-negative": {"pages": -1},
        "pages-string": {"pages": "3"},
        "last-event-conversion": {"last_event": " Conversion "},
        "last-event-unlisted": {"last_event": "scroll"},
        "last-event-number": {"last_event": 1},
        "full": {
            "categories": ["sale", "cycling", "hiking"],
            "price": 180.5,
            "pages": 12,
            "last_event": "impression",
        },
        "not-an-object": "running",
        "list": [1, 2],
    }
    return [(f"session/{name}", _variant(session=s)) for name, s in sessions.items()]


def _whole() -> list[tuple[str, Any]]:
    return [
        ("context/empty", {}),
        ("context/null", None),
        ("context/list", ["url", "/running"]),
        ("context/string", "https://trailhead.example/"),
        ("context/only-url", {"url": "/camping?utm_campaign=camping_launch"}),
        ("context/all-wrong-types", {k: 1 for k in BASE} | {"session": 1}),
        ("context/all-null", dict.fromkeys(BASE)),
        (
            "context/unicode-everywhere",
            {
                "url": "https://trailhead.example/🏃‍♀️/ﬁ?utm_source=ｇｏｏｇｌｅ&utm_campaign=שלום",
                "referrer": "https://пример.рф/",
                "user_agent": "🦊 Firefox/1 (عربى)",
                "ch_ua_mobile": "？1",
                "accept_language": "zh-Hant-TW",
                "country": "🇺🇸",
                "timezone": "Asia/Kolkata",
                "now_ms": ms("2026-11-25T02:00:00"),
                "returning": True,
                "session": {"categories": ["🏕️"], "last_event": "cliсk"},
            },
        ),
        (
            "context/newsletter-evening",
            _variant(
                url="/sale?utm_source=newsletter&utm_medium=email&utm_campaign=black_friday",
                referrer=DROP,
                user_agent=MAC_SAFARI,
                ch_ua_mobile="?0",
                timezone="Europe/London",
                now_ms=ms("2026-11-25T19:45:00"),
                returning=True,
            ),
        ),
        (
            "context/mobile-search-morning",
            _variant(timezone="America/Chicago", now_ms=ms("2026-11-25T13:05:00")),
        ),
        (
            "context/camping-first-timer",
            _variant(
                url="https://trailhead.example/camping?utm_source=instagram&utm_medium=social"
                "&utm_campaign=camping_launch",
                referrer="https://l.instagram.com/",
                timezone="America/Denver",
            ),
        ),
    ]


def _whitespace() -> list[tuple[str, Any]]:
    """Only ASCII white space is trimmed; Python's `$` also matches before a final newline and
    its `.` matches `\r`, U+2028 and U+2029 (CONTRACT §2: the Python semantics are the rule)."""
    android = "Mozilla/5.0 (Linux; Android 14{}Mobile) Chrome/124.0 Safari/537.36"
    changes = {
        "nbsp-utm-source": {"url": "https://trailhead.example/?utm_source=%C2%A0google%C2%A0"},
        "nbsp-country": {"country": "\u00a0US"},
        "nbsp-referrer-only": {"referrer": "\u00a0"},
        "vt-ff-language": {"accept_language": "\x0b\x0cen-US"},
        "newline-language": {"accept_language": "en\n-US"},
        "newline-in-referrer-host": {"referrer": "https://mail.google.com\n/x"},
        "newline-search-host": {"referrer": "https://www.bing.com\n/"},
        "newline-zone": {"timezone": "Europe/Paris\n"},
        "em-space-last-event": {"session": {"last_event": "\u2003click"}},
        "cr-in-android-ua": {"user_agent": android.format("\r "), "ch_ua_mobile": DROP},
        "line-separator-in-android-ua": {
            "user_agent": android.format("\u2028"),
            "ch_ua_mobile": DROP,
        },
        "newline-in-android-ua": {"user_agent": android.format("\n"), "ch_ua_mobile": DROP},
    }
    return [(f"whitespace/{name}", _variant(**c)) for name, c in changes.items()]


def contexts() -> list[tuple[str, Any]]:
    """All golden contexts as (id, context); the context may deliberately not be an object."""
    groups = _referrers() + _utm() + _devices() + _times() + _visitor() + _sessions() + _whole()
    return groups + _whitespace()  # new groups go last: earlier cases keep their ids and draws
