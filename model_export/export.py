"""Write the runtime artifacts: `model.json` (CONTRACT §5) and `model.onnx` (CONTRACT §7)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_export.features import feature_names
from model_export.policy import FORMAT, model_sha256, seal

if TYPE_CHECKING:  # training pulls in scikit-learn; building a model.json does not need it
    from model_export.train import Fitted

OPSET = 17
IR_VERSION = 9  # what onnxruntime releases from 1.16 on load


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


def model_from_fit(fitted: Fitted, created_at: datetime | None = None) -> dict[str, Any]:
    """The sealed `model.json` document of a trained model."""
    return build_model(fitted.spec, fitted.slots, created_at or datetime.now(UTC))


def to_onnx(model: Mapping[str, Any]) -> onnx.ModelProto:
    """The model as ONNX: `features` float32 [N, F] → `engagement_<slot>` float32 [N, K]."""
    names = feature_names(model["features"])
    column = {name: i for i, name in enumerate(names)}
    nodes, initializers, outputs = [], [], []
    for slot, config in model["slots"].items():
        variants = config["variants"]
        weights = np.zeros((len(names), len(variants)), dtype=np.float32)
        for k, variant in enumerate(variants):
            for name, w in config["weights"].get(variant, {}).items():
                weights[column[name], k] = w
        bias = np.array([config["bias"].get(v, 0.0) for v in variants], dtype=np.float32)
        initializers += [
            numpy_helper.from_array(weights, f"W_{slot}"),
            numpy_helper.from_array(bias, f"b_{slot}"),
        ]
        nodes += [
            helper.make_node("MatMul", ["features", f"W_{slot}"], [f"xw_{slot}"]),
            helper.make_node("Add", [f"xw_{slot}", f"b_{slot}"], [f"z_{slot}"]),
            helper.make_node("Sigmoid", [f"z_{slot}"], [f"engagement_{slot}"]),
        ]
        outputs.append(
            helper.make_tensor_value_info(
                f"engagement_{slot}", TensorProto.FLOAT, ["N", len(variants)]
            )
        )
    graph = helper.make_graph(
        nodes,
        "firstpaint",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", len(names)])],
        outputs,
        initializers,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="firstpaint.model_export",
        ir_version=IR_VERSION,
    )
    proto.doc_string = f"{model['format']} {model['model_version']}"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def write_artifacts(model: Mapping[str, Any], out: str | Path) -> tuple[Path, Path]:
    """Write `model.json` and `model.onnx` into directory `out`; return both paths."""
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, onnx_path = directory / "model.json", directory / "model.onnx"
    json_path.write_text(json.dumps(model, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    onnx.save(to_onnx(model), onnx_path)
    return json_path, onnx_path
