"""The site configuration (`origin/site.toml`): slots, their variants, exploration and holdout.

The variant HTML lives only here; models, the simulator and the edge bundle take the slot and
variant names from it, and the feature spec takes the site's sections and categories.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_export.policy import ModelError, _check_slot

SITE_TOML = Path(__file__).resolve().parents[1] / "origin" / "site.toml"


class SiteError(ValueError):
    """A site.toml that cannot be served: missing tables, unknown default, bad exploration."""


@dataclass(frozen=True)
class Slot:
    """One personalized slot: its variants (name → HTML, in file order) and how it explores."""

    name: str
    variants: dict[str, str]
    default: str
    holdout: float
    exploration: dict[str, Any]

    def config(self) -> dict[str, Any]:
        """The slot's part of a model file, without bias and weights."""
        return {
            "variants": list(self.variants),
            "default": self.default,
            "exploration": dict(self.exploration),
            "holdout": self.holdout,
        }


@dataclass(frozen=True)
class Site:
    """A parsed site.toml."""

    name: str
    sections: list[str]
    categories: list[str]
    slots: dict[str, Slot]

    def vocab(self) -> dict[str, list[str]]:
        """Feature vocabularies taken from the site (`home` is the landing section of `/`)."""
        sections = ["home", *(s for s in self.sections if s != "home")]
        return {"landing_section": sections, "session_categories": list(self.categories)}

    def to_json(self) -> dict[str, Any]:
        """The site as the edge bundles it (`edge/src/site.json`)."""
        return {
            "name": self.name,
            "sections": self.sections,
            "categories": self.categories,
            "slots": {
                name: {**slot.config(), "html": dict(slot.variants)}
                for name, slot in self.slots.items()
            },
        }


def _names(table: dict[str, Any], key: str) -> list[str]:
    values = table.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise SiteError(f"site.{key} must be a list of non-empty strings")
    return values


def _slot(name: str, table: Any) -> Slot:
    if not isinstance(table, dict):
        raise SiteError(f"slots.{name} must be a table")
    variants = table.get("variants")
    if not isinstance(variants, dict) or not all(isinstance(h, str) for h in variants.values()):
        raise SiteError(f"slots.{name}.variants must be a table of variant = HTML string")
    slot = Slot(
        name=name,
        variants=dict(variants),
        default=table.get("default", ""),
        holdout=table.get("holdout", 0.05),
        exploration=dict(table.get("exploration") or {}),
    )
    try:
        _check_slot(name, slot.config())
    except ModelError as exc:
        raise SiteError(str(exc)) from exc
    return slot


def parse_site(text: str) -> Site:
    """Parse and validate site.toml text; raises SiteError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteError(f"site.toml is not valid TOML: {exc}") from exc
    site = data.get("site", {})
    slots = data.get("slots")
    if not isinstance(slots, dict) or not slots:
        raise SiteError("site.toml needs at least one [slots.<name>] table")
    return Site(
        name=str(site.get("name", "")),
        sections=_names(site, "sections"),
        categories=_names(site, "categories"),
        slots={name: _slot(name, table) for name, table in slots.items()},
    )


def load_site(path: str | Path = SITE_TOML) -> Site:
    """Read and validate a site.toml file; raises SiteError (also for an unreadable file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_site(text)
