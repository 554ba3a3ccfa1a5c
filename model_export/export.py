"""Write the runtime artifacts: `model.json` (CONTRACT §5) and `model.onnx` (CONTRACT §7)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from model_export.policy import FORMAT, model_sha256, seal


def build_model(
    spec: dict[str, Any], slots: dict[str, dict[str, Any]], created_at: datetime
) -> dict[str, Any]:
    """A sealed model; `model_version` is `<UTC stamp>-<first 8 hex of the content's sha256>`."""
    created = created_at.astimezone(UTC).replace(microsecond=0)
    body: dict[str, Any] = {
        "format": FORMAT,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "features": spec,
        "slots": slots,
    }
    body["model_version"] = f"{created.strftime('%Y%m%dT%H%M%SZ')}-{model_sha256(body)[:8]}"
    return seal(body)
