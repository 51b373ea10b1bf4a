"""``cxrl compare``: one table of several evaluations (rows: encoders; columns: label fractions)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cxrl.errors import DataError

METRICS = "metrics.json"


def find_evaluations(paths: list[str | Path]) -> list[Path]:
    """``metrics.json`` files of eval dirs, or of every eval dir below a run dir (searched recursively)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():  # load_rows says whether it is a metrics file
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
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{f}: not a cxrl metrics.json ({type(e).__name__}: {e})") from e
        data = m.get("data") or {}
        target = data.get("target")
        rows.append(
            {
                "encoder": name,
                "data": Path(data["source"]["path"]).name if data.get("source") else None,
                "pathologies": m.get("pathologies"),
                "method": m["encoder"].get("method"),
                "protocol": m.get("protocol", {}).get("protocol"),
                "target": Path(target["path"]).name if target else None,
                "path": str(f.parent),
                "auroc": {k: (v["macro_auroc_mean"], v["macro_auroc_std"]) for k, v in summary.items()},
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown: encoder | method | protocol | eval dir name | one ``mean ± std`` column per fraction (union).

    Evaluations of different source caches or pathology sets get a ``data`` and a ``pathologies`` column (sets
    numbered #1, #2, ... and listed under the table): their AUROCs average different tasks.
    """
    fractions = sorted({k for r in rows for k in r["auroc"]}, key=float)
    sets = _pathology_sets(rows)
    mixed = mixed_inputs(rows)
    head = ["encoder", "method", "protocol", "evaluation"] + (["data", "pathologies"] if mixed else [])
    lines = ["| " + " | ".join(head + [f"{float(f) * 100:g}% labels" for f in fractions]) + " |"]
    lines.append("|" + "---|" * len(head) + "---:|" * len(fractions))
    for r in rows:
        encoder = r["encoder"] + (f" → {r['target']}" if r["target"] else "")
        cells = [encoder, str(r["method"]), str(r["protocol"]), Path(r["path"]).name]
        if mixed:
            cells += [str(r["data"]), _set_label(sets, r["pathologies"])]
        for f in fractions:
            mean, std = r["auroc"].get(f, (None, None))
            cells.append("—" if mean is None else f"{mean:.3f} ± {std or 0:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    if mixed:
        lines += [""] + [f"- pathologies {_set_label(sets, list(p))}: {', '.join(p)}" for p in sets]
    return "\n".join(lines)


def mixed_inputs(rows: list[dict]) -> bool:
    """Whether the evaluations differ in source cache or pathology set (known ones only)."""
    caches = {r["data"] for r in rows if r.get("data") is not None}
    return len(caches) > 1 or len(_pathology_sets(rows)) > 1


def _pathology_sets(rows: list[dict]) -> list[tuple[str, ...]]:
    return list(dict.fromkeys(tuple(r["pathologies"]) for r in rows if r.get("pathologies") is not None))


def _set_label(sets: list[tuple[str, ...]], pathologies: list[str] | None) -> str:
    if pathologies is None:
        return "?"
    return f"#{sets.index(tuple(pathologies)) + 1} ({len(pathologies)})"


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
    if mixed_inputs(rows):
        print(
            "warning: these evaluations used different caches or pathology sets (data and pathologies columns); "
            "their macro AUROCs average different tasks and are not directly comparable",
            file=sys.stderr,
        )
    for path, text in ((args.out, table), (args.json, json.dumps(rows, indent=2))):
        if path:
            Path(path).write_text(text + "\n")
            print(f"written to {path}", file=sys.stderr)
    return 0
