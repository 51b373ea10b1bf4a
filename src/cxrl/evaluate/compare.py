"""``cxrl compare``: one table per metric of several evaluations (rows: encoders; columns: label fractions).

Macro AUROC first (the multi-label protocols), then every other metric a protocol summarized (accuracy,
Recall@K, ...), each with the evaluations that have it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cxrl.errors import DataError
from cxrl.evaluate.metric_names import metric_label, summary_keys

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
    """One row per evaluation: its encoder, protocol, target, and each summarized metric's mean/std per fraction
    (``metrics``; ``auroc`` is macro AUROC's)."""
    rows = []
    for f in files:
        try:
            m = json.loads(f.read_text())
            summary = m["summary"]
            name = m["encoder"]["name"]
            metrics = {key: {k: (v[f"{key}_mean"], v[f"{key}_std"]) for k, v in summary.items()}
                       for key in summary_keys(summary)}
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
                "auroc": metrics.get("macro_auroc", {}),
                "metrics": metrics,
            }
        )
    return rows


def metrics_of(rows: list[dict]) -> list[str]:
    """Every metric some row has, macro AUROC first, then in order of appearance."""
    keys = dict.fromkeys(["macro_auroc", *(k for r in rows for k in _values(r))])
    return [k for k in keys if any(_values(r).get(k) for r in rows)]


def _values(row: dict) -> dict:
    return row.get("metrics") or {"macro_auroc": row["auroc"]}


def format_table(rows: list[dict], metric: str = "macro_auroc") -> str:
    """Markdown: encoder | method | protocol | eval dir name | one ``mean ± std`` column per fraction (union) of
    ``metric``, over the rows that have it.

    Evaluations of different source caches or pathology sets get a ``data`` and a ``pathologies`` column (sets
    numbered #1, #2, ... and listed under the table): their AUROCs average different tasks.
    """
    rows = [r for r in rows if _values(r).get(metric)]
    fractions = sorted({k for r in rows for k in _values(r)[metric]}, key=float)
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
            mean, std = _values(r)[metric].get(f, (None, None))
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
        "evaluation, then a table per other metric the evaluations summarized (accuracy, Recall@K, ...). "
        "Accepts eval dirs (with metrics.json) or run dirs holding eval dirs.",
    )
    p.add_argument("paths", nargs="+", help="eval dirs, run dirs or metrics.json files")
    p.add_argument("--out", help="also write the Markdown table to this file")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    rows = load_rows(find_evaluations(args.paths))
    tables = [(f"test {metric_label(k)}, mean ± std over seeds", format_table(rows, k)) for k in metrics_of(rows)]
    if not tables:
        raise DataError(f"{', '.join(map(str, args.paths))}: the evaluations summarize no metric")
    print("\n\n".join(f"{title}\n\n{table}" for title, table in tables))
    table = tables[0][1] if len(tables) == 1 else "\n\n".join(f"{title}\n\n{table}" for title, table in tables)
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
