"""Run the benchmarks: `python -m tests.bench [name ...]`.

Each `tests/bench/bench_<name>.py` defines `run() -> dict` (the results) and
`summary(results) -> str` (one human line). Results go to `build/bench/<name>.json`.
A benchmark compares against a baseline measured in the same run, because machines are noisy.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "bench"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}")
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        module = importlib.import_module(f"tests.bench.bench_{name}")
        started = time.monotonic()
        print(f"[bench] {name} …", flush=True)
        try:
            results = module.run()
        except Exception as exc:  # one broken benchmark must not hide the others' results
            print(f"[bench] {name} FAILED: {exc!r}")
            failed.append(name)
            continue
        results.setdefault("elapsed_s", round(time.monotonic() - started, 1))
        (OUT / f"{name}.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"{name}: {module.summary(results)}  → build/bench/{name}.json", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
