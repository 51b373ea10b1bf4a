"""``cxrl compare``: one table of several evaluations (rows: encoders; columns: label fractions)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cxrl.errors import DataError

METRICS = "metrics.json"


def find_evaluations(paths: list[str | Path]) -> list[Path]:
    """``metrics.json`` files of eval dirs, or of every eval dir below a run dir (searched recursively)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.name == METRICS:
            found.append(path)
        elif (path / METRICS).is_file():
            found.append(path / METRICS)
        elif path.is_dir():
            below = sorted(path.rglob(METRICS))
            if not below:
                raise DataError(f"{path}: no {METRICS} in it or below it (run `cxrl evaluate --out` first)")
            found += below
        else:
            raise DataError(f"{path} does not exist")
    return found


def load_rows(files: list[Path]) -> list[dict]:
    """One row per evaluation: its encoder, protocol, target and macro AUROC mean/std per fraction."""
    rows = []
    for f in files:
        try:
            m = json.loads(f.read_text())
            summary = m["summary"]
            name = m["encoder"]["name"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{f}: not a cxrl metrics.json ({type(e).__name__}: {e})") from e
        target = (m.get("data") or {}).get("target")
        rows.append(
            {
                "encoder": name,
                "method": m["encoder"].get("method"),
                "protocol": m.get("protocol", {}).get("protocol"),
                "target": Path(target["path"]).name if target else None,
                "path": str(f.parent),
                "auroc": {k: (v["macro_auroc_mean"], v["macro_auroc_std"]) for k, v in summary.items()},
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown: encoder | method | protocol | eval dir name | one ``mean ± std`` column per fraction (union)."""
    fractions = sorted({k for r in rows for k in r["auroc"]}, key=float)
    head = ["encoder", "method", "protocol", "evaluation"] + [f"{float(f) * 100:g}% labels" for f in fractions]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * len(fractions)]
    for r in rows:
        encoder = r["encoder"] + (f" → {r['target']}" if r["target"] else "")
        cells = [encoder, str(r["method"]), str(r["protocol"]), Path(r["path"]).name]
        for f in fractions:
            mean, std = r["auroc"].get(f, (None, None))
            cells.append("—" if mean is None else f"{mean:.3f} ± {std or 0:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_cli(subparsers) -> None:
    """Register ``cxrl compare``."""
    p = subparsers.add_parser(
        "compare",
        help="one table of several encoders' evaluations",
        description="Test macro AUROC (mean ± std over seeds) per label fraction, one row per "
        "evaluation. Accepts eval dirs (with metrics.json) or run dirs holding eval dirs.",
    )
    p.add_argument("paths", nargs="+", help="eval dirs, run dirs or metrics.json files")
    p.add_argument("--out", help="also write the Markdown table to this file")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    rows = load_rows(find_evaluations(args.paths))
    table = format_table(rows)
    print("test macro AUROC, mean ± std over seeds\n\n" + table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0
