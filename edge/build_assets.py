"""Write the edge worker's bundled assets from the contract's Python sources.

- `edge/src/site.json`: `origin/site.toml` as the edge bundles it (`Site.to_json()`).
- `edge/src/model.json`: the starter model the worker serves until its first refresh from
  `GET /v1/model` — the site's slots with a few hand-set weights that say what the demo site
  believes before any data (search and mornings → running, newsletters and evenings → the
  subscriber deal, landing sections → their own hero).

`python edge/build_assets.py` rewrites both; `--check` exits 1 when either is out of date.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_export.export import build_model  # noqa: E402
from model_export.features import default_spec  # noqa: E402
from model_export.site import Site, load_site  # noqa: E402

SITE_JSON = ROOT / "edge" / "src" / "site.json"
MODEL_JSON = ROOT / "edge" / "src" / "model.json"
STARTER_CREATED_AT = datetime(2026, 11, 25, tzinfo=UTC)

# variant → {feature: weight}; only variants and features the site has are kept.
STARTER_WEIGHTS: dict[str, dict[str, float]] = {
    "running": {"landing_section=running": 1.2, "utm_campaign=running": 1.0},
    "camping": {"landing_section=camping": 1.2, "utm_campaign=camping_launch": 1.0},
    "hiking": {"landing_section=hiking": 1.2},
    "cycling": {"landing_section=cycling": 1.2},
    "sale": {"landing_section=sale": 1.2, "utm_campaign=black_friday": 1.0, "price_band=low": 0.4},
    "morning_run": {
        "hour_sin": 0.9,
        "referrer_class=search": 0.6,
        "device=mobile": 0.5,
        "landing_section=running": 0.6,
    },
    "newsletter_deal": {
        "referrer_class=email": 1.4,
        "utm_source=newsletter": 0.6,
        "hour_sin": -0.5,
        "visitor=returning": 0.4,
    },
    "bundle": {"landing_section=camping": 1.0, "session_categories=camping": 0.8},
    "membership": {"visitor=returning": 0.6, "session_pages": 0.5},
    "reviews": {"visitor=new": 0.3, "referrer_class=social": 0.5},
}
STARTER_BIAS = -2.0


def site_json(site: Site) -> str:
    return json.dumps(site.to_json(), indent=1, ensure_ascii=False) + "\n"


def starter_model(site: Site) -> dict:
    spec = default_spec(site.vocab())
    names = {n for f in spec["fields"] for n in _names(f)}
    slots = {}
    for name, slot in site.slots.items():
        config = slot.config()
        config["bias"] = {v: STARTER_BIAS for v in config["variants"]}
        config["weights"] = {
            v: {f: w for f, w in STARTER_WEIGHTS[v].items() if f in names}
            for v in config["variants"]
            if v in STARTER_WEIGHTS
        }
        slots[name] = config
    return build_model(spec, slots, STARTER_CREATED_AT)


def _names(field: dict) -> list[str]:
    if field["kind"] == "numeric":
        return [field["name"]]
    return [f"{field['name']}={v}" for v in field["vocab"]]


def model_json(site: Site) -> str:
    return json.dumps(starter_model(site), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    site = load_site()
    wanted = {SITE_JSON: site_json(site), MODEL_JSON: model_json(site)}
    if "--check" in argv:
        stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python edge/build_assets.py")
        return 1 if stale else 0
    for path, text in wanted.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
