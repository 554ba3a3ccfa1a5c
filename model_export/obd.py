"""The Open Bandit Dataset sample (ZOZOTOWN fashion e-commerce), read from the `obp` wheel.

The `obp==0.4.1` wheel ships a 10,000-row sample of each logged policy (`random`, `bts`) and
campaign (`all`, `men`, `women`) as CSV under `obp/dataset/obd/`. We read those CSVs straight
out of the wheel zip — importing obp would pull in its own (pinned, heavy) dependencies.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OBP_VERSION = "0.4.1"
POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
_ROOT = "obp/dataset/obd"


class ObdError(RuntimeError):
    """The wheel is missing, unreadable or does not hold the expected sample."""


@dataclass(frozen=True)
class ObdRow:
    """One logged impression: which item was shown where, whether it was clicked, and why."""

    action: int
    position: int  # 1 = top slot, as in the CSV
    reward: int
    propensity: float
    timestamp: str
    context: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ObdLog:
    policy: str
    campaign: str
    n_actions: int
    rows: list[ObdRow]

    @property
    def positions(self) -> list[int]:
        return sorted({r.position for r in self.rows})


def fetch_wheel(cache_dir: Path) -> Path:
    """The obp wheel in `cache_dir`, downloaded with pip (no dependencies) if not there yet."""
    found = wheel_in(cache_dir)
    if found:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    spec = f"obp=={OBP_VERSION}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec, "-d"]
    done = subprocess.run([*cmd, str(cache_dir)], capture_output=True, text=True, timeout=300)
    found = wheel_in(cache_dir)
    if done.returncode or not found:
        raise ObdError(f"pip download {spec} failed: {done.stderr.strip()[-500:]}")
    return found


def wheel_in(cache_dir: Path) -> Path | None:
    wheels = sorted(Path(cache_dir).glob(f"obp-{OBP_VERSION}-*.whl"))
    return wheels[0] if wheels else None


def load(wheel: Path, policy: str = "random", campaign: str = "all") -> ObdLog:
    """The logged sample of `policy` in `campaign`; context = user features and affinities."""
    if policy not in POLICIES or campaign not in CAMPAIGNS:
        raise ObdError(f"no OBD sample {policy}/{campaign}; policies {POLICIES}, {CAMPAIGNS}")
    base = f"{_ROOT}/{policy}/{campaign}"
    try:
        with zipfile.ZipFile(wheel) as archive:
            log = _read_csv(archive, f"{base}/{campaign}.csv")
            items = _read_csv(archive, f"{base}/item_context.csv")
    except (OSError, zipfile.BadZipFile) as exc:
        raise ObdError(f"cannot read {wheel}: {exc}") from exc
    rows = [_row(i, record) for i, record in enumerate(log, start=2)]
    return ObdLog(policy=policy, campaign=campaign, n_actions=len(items), rows=rows)


def _read_csv(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    try:
        with archive.open(name) as raw:
            return list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")))
    except KeyError as exc:
        raise ObdError(f"the wheel has no {name}") from exc


def _row(line: int, record: dict[str, str]) -> ObdRow:
    try:
        propensity = float(record["propensity_score"])
        context: dict[str, Any] = {k: v for k, v in record.items() if k.startswith("user_feature_")}
        context["affinity"] = [
            float(v) for k, v in record.items() if k.startswith("user-item_affinity_")
        ]
        row = ObdRow(
            action=int(record["item_id"]),
            position=int(record["position"]),
            reward=int(record["click"]),
            propensity=propensity,
            timestamp=record["timestamp"],
            context=context,
        )
    except (KeyError, ValueError) as exc:
        raise ObdError(f"line {line}: {exc!r}") from exc
    if not 0 < propensity <= 1:
        raise ObdError(f"line {line}: propensity_score {propensity} is not in (0, 1]")
    return row
