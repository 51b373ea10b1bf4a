"""``cxrl compare``: one table per metric of several evaluations (rows: encoders; columns: label fractions).

Macro AUROC first (the multi-label protocols), then every other metric a protocol summarized (accuracy,
Recall@K, ...), each with the evaluations that have it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cxrl.errors import ConfigError, DataError
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
                "subgroups": subgroup_summary(m.get("runs") or []),
            }
        )
    return rows


def metrics_of(rows: list[dict]) -> list[str]:
    """Every metric some row has, macro AUROC first, then in order of appearance."""
    keys = dict.fromkeys(["macro_auroc", *(k for r in rows for k in _values(r))])
    return [k for k in keys if any(_values(r).get(k) for r in rows)]


def _values(row: dict) -> dict:
    return row.get("metrics") or {"macro_auroc": row["auroc"]}


def subgroup_summary(runs: list[dict]) -> dict[str, dict]:
    """``{"sex=F": {"fraction", "macro_auroc": [per seed], "mean_tpr_gap": [per seed]}}`` at the largest label
    fraction, from the runs' subgroup metrics (mean TPR gap: over the findings measured in the subgroup)."""
    top = [r for r in runs if r.get("subgroups") and r["fraction"] == max(x["fraction"] for x in runs)]
    out: dict[str, dict] = {}
    for run in top:
        for key, members in run["subgroups"]["groups"].items():
            for value, group in members.items():
                entry = out.setdefault(f"{key}={value}", {"fraction": run["fraction"], "macro_auroc": [],
                                                          "mean_tpr_gap": []})
                gaps = [c["tpr_gap"] for c in group["per_class"].values() if c["tpr_gap"] is not None]
                entry["macro_auroc"].append(group["macro_auroc"])
                entry["mean_tpr_gap"].append(float(np.mean(gaps)) if gaps else None)
    return out


def _subgroup_cell(row: dict, subgroup: str) -> str:
    entry = row["subgroups"].get(subgroup)
    aurocs = [v for v in (entry or {}).get("macro_auroc", []) if v is not None]
    if not aurocs:
        return "—"
    gaps = [v for v in entry["mean_tpr_gap"] if v is not None]
    gap = f"{np.mean(gaps):+.3f}" if gaps else "n/a"
    std = float(np.std(aurocs, ddof=1)) if len(aurocs) > 1 else 0.0
    return f"{np.mean(aurocs):.3f} ± {std:.3f} (TPR gap {gap}, {entry['fraction'] * 100:g}% labels)"


def format_table(rows: list[dict], metric: str = "macro_auroc", subgroup: str | None = None) -> str:
    """Markdown: encoder | method | protocol | eval dir name | one ``mean ± std`` column per fraction (union) of
    ``metric``, over the rows that have it, and with ``subgroup`` (e.g. ``"sex=F"``) that subgroup's macro AUROC
    and mean TPR gap at each evaluation's largest label fraction.

    Evaluations of different source caches or pathology sets get a ``data`` and a ``pathologies`` column (sets
    numbered #1, #2, ... and listed under the table): their AUROCs average different tasks.
    """
    rows = [r for r in rows if _values(r).get(metric)]
    fractions = sorted({k for r in rows for k in _values(r)[metric]}, key=float)
    sets = _pathology_sets(rows)
    mixed = mixed_inputs(rows)
    head = ["encoder", "method", "protocol", "evaluation"] + (["data", "pathologies"] if mixed else [])
    extra = [f"{subgroup} macro AUROC"] if subgroup else []
    lines = ["| " + " | ".join(head + [f"{float(f) * 100:g}% labels" for f in fractions] + extra) + " |"]
    lines.append("|" + "---|" * len(head) + "---:|" * len(fractions) + "---|" * len(extra))
    for r in rows:
        encoder = r["encoder"] + (f" → {r['target']}" if r["target"] else "")
        cells = [encoder, str(r["method"]), str(r["protocol"]), Path(r["path"]).name]
        if mixed:
            cells += [str(r["data"]), _set_label(sets, r["pathologies"])]
        for f in fractions:
            mean, std = _values(r)[metric].get(f, (None, None))
            cells.append("—" if mean is None else f"{mean:.3f} ± {std or 0:.3f}")
        if subgroup:
            cells.append(_subgroup_cell(r, subgroup))
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
    p.add_argument("--subgroup", metavar="KEY=VALUE", help="add a column of one subgroup's macro AUROC and mean TPR "
                   "gap (evaluations run with --subgroups), e.g. sex=F or age=80+")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    rows = load_rows(find_evaluations(args.paths))
    if args.subgroup and not any(args.subgroup in r["subgroups"] for r in rows):
        known = sorted({k for r in rows for k in r["subgroups"]})
        raise ConfigError(f"--subgroup {args.subgroup}: in none of these evaluations; "
                          + (f"they have {', '.join(known)}" if known else "none was run with --subgroups"))
    tables = [(f"test {metric_label(k)}, mean ± std over seeds",
               format_table(rows, k, args.subgroup if k == "macro_auroc" else None)) for k in metrics_of(rows)]
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
