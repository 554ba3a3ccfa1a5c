"""`python -m model_export`: simulate traffic, train and export a model, print the site config."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from model_export import evaluate
from model_export.export import model_from_fit, write_artifacts
from model_export.features import default_spec
from model_export.simulate import Simulator, simulate_log, true_value, uniform_model
from model_export.site import SITE_TOML, SiteError, load_site
from model_export.train import TrainingError, fit, read_log


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_export", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="write a simulated decision log (JSONL)")
    simulate.add_argument("--n", type=_positive, required=True, help="number of decisions")
    simulate.add_argument("--out", type=Path, required=True, help="log file to write")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--drift-at-ms", type=int, help="simulated time of the drift event")

    train = commands.add_parser("train", help="train and export model.json + model.onnx")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--log", type=Path, help="decision log (JSONL) to train on")
    source.add_argument(
        "--simulate", type=_positive, metavar="N", help="simulate N decisions first"
    )
    train.add_argument("--out", type=Path, required=True, help="output directory")
    train.add_argument("--skip-invalid", action="store_true", help="skip and count bad lines")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--site", type=Path, default=SITE_TOML)
    train.add_argument(
        "--value-visitors",
        type=_positive,
        default=10_000,
        help="simulated visitors for the true value (with --simulate)",
    )

    site_json = commands.add_parser("site-json", help="print site.toml as JSON (edge bundle)")
    site_json.add_argument("site", type=Path, nargs="?", default=SITE_TOML)
    evaluate.add_cli(commands)
    return parser


def _print_report(report: dict[str, Any]) -> None:
    print(
        f"model {report['model_version']}: {report['decisions']} decisions "
        f"({report['skipped']} skipped), {report['features']} features, "
        f"trained in {report['train_s']} s"
    )
    print(f"  {'slot':<6} {'variant':<16} {'n_train':>7} {'engaged':>8} {'log_loss':>8} {'auc':>6}")
    for slot, variants in report["slots"].items():
        for variant, row in variants.items():
            cells = [row["engaged_rate"], row["log_loss"], row["auc"]]
            rate, loss, auc = ("-" if v is None else f"{v:.3f}" for v in cells)
            print(f"  {slot:<6} {variant:<16} {row['n_train']:>7} {rate:>8} {loss:>8} {auc:>6}")
    value = report.get("true_value")
    if value:
        print(
            f"true value (simulator ground truth, {value['visitors']} visitors): "
            f"trained {value['trained']:.4f} vs uniform random {value['uniform']:.4f} "
            f"→ {value['ratio']:.2f}×"
        )


def _train(args: argparse.Namespace) -> None:
    site = load_site(args.site)
    slots = {name: slot.config() for name, slot in site.slots.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.log
    simulate_s = None
    if args.simulate is not None:
        log_path = args.out / "simulated.jsonl"
        started = time.monotonic()
        print(f"simulating {args.simulate} decisions → {log_path}", file=sys.stderr)
        simulate_log(args.simulate, log_path, simulator=Simulator(args.seed, site=site))
        simulate_s = round(time.monotonic() - started, 2)
    print(f"reading {log_path}", file=sys.stderr)
    log = read_log(log_path, slots, skip_invalid=args.skip_invalid)
    if not log.records:
        raise TrainingError(f"{log_path} holds no valid decisions")
    for message in log.first_skipped:
        print(f"skipped {message}", file=sys.stderr)
    fitted = fit(log, default_spec(site.vocab()), slots, seed=args.seed)
    model = model_from_fit(fitted)
    report = {"model_version": model["model_version"], "log": str(log_path), **fitted.report}
    if simulate_s is not None:
        report["simulate_s"] = simulate_s
        trained, uniform = (
            true_value(m, args.value_visitors, simulator=Simulator(args.seed + 1, site=site))
            for m in (model, uniform_model(site))
        )
        report["true_value"] = {
            "visitors": args.value_visitors,
            "trained": round(trained, 5),
            "uniform": round(uniform, 5),
            "ratio": round(trained / uniform, 3),
        }
    json_path, onnx_path = write_artifacts(model, args.out)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _print_report(report)
    print(f"wrote {json_path}, {onnx_path}, {args.out / 'report.json'}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 on bad input)."""
    args = _parser().parse_args(argv)
    if args.command == "evaluate":
        return evaluate.cli(args)
    try:
        if args.command == "simulate":
            count = simulate_log(
                args.n,
                args.out,
                seed=args.seed,
                simulator=Simulator(args.seed, drift_at_ms=args.drift_at_ms),
            )
            print(f"wrote {count} decisions to {args.out}")
        elif args.command == "train":
            _train(args)
        else:
            print(json.dumps(load_site(args.site).to_json(), indent=2, ensure_ascii=False))
    except (TrainingError, SiteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
