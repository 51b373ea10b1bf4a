"""``cxrl label-reports``: the 14 CheXpert labels of free-text reports, from a CSV or a folder of ``.txt`` files.

Rows without an id or text (and repeated ids) are skipped, counted and listed; the rest are labelled by
:mod:`cxrl.data.text.labeler` and written as ``id`` + the 14 CheXpert columns (1, 0, -1, blank = not mentioned).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.sources._common import Skipped, read_csv, read_text, require_columns
from cxrl.data.text.labeler import label_reports
from cxrl.errors import DataError

SHOW_SKIPPED = 20  # skipped rows printed one per line; the rest are counted


def read_report_csv(path: Path, skipped: Skipped) -> pd.DataFrame:
    """``id`` and ``text`` of a CSV; rows with an empty id or text, or an id already seen, are skipped."""
    table = read_csv(path, dtype=str, keep_default_na=False)
    require_columns(table, path, ("id", "text"))
    ids, texts = table["id"].str.strip(), table["text"].str.strip()
    seen: set[str] = set()
    keep = []
    for row, (report_id, text) in enumerate(zip(ids, texts, strict=True), start=1):
        reason = _row_problem(report_id, text, seen)
        if reason:
            skipped.add(path, None, f"row {row} (id {report_id!r}): {reason}")
        seen.add(report_id)
        keep.append(not reason)
    return pd.DataFrame({"id": ids[keep], "text": texts[keep]}).reset_index(drop=True)


def _row_problem(report_id: str, text: str, seen: set[str]) -> str:
    """Why a CSV row cannot be labelled ("" when it can)."""
    if not report_id:
        return "empty id"
    if report_id in seen:
        return "repeated id"
    return "" if text else "empty text"


def read_report_folder(folder: Path, skipped: Skipped) -> pd.DataFrame:
    """One report per ``*.txt`` file (id = file stem, sorted); empty files are skipped."""
    rows = []
    for path in sorted(folder.glob("*.txt")):
        text = read_text(path).strip()
        if text:
            rows.append({"id": path.stem, "text": text})
        else:
            skipped.add(path, None, "empty report")
    if not rows and not skipped.entries:
        raise DataError(f"{folder}: no .txt reports in this folder")
    return pd.DataFrame(rows, columns=["id", "text"])


def read_reports(source: str | Path, skipped: Skipped) -> pd.DataFrame:
    """Reports from a CSV with ``id`` and ``text`` columns or a folder of ``.txt`` files."""
    source = Path(source)
    if source.is_dir():
        return read_report_folder(source, skipped)
    if source.is_file():
        return read_report_csv(source, skipped)
    raise DataError(f"{source}: no such CSV file or folder of .txt reports")


def label_table(reports: pd.DataFrame) -> pd.DataFrame:
    """``id`` and the 14 CheXpert label columns of each report."""
    labels = pd.DataFrame(label_reports(reports["text"]), columns=list(CHEXPERT_PATHOLOGIES))
    return pd.concat([reports[["id"]].reset_index(drop=True), labels], axis=1)


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("label-reports", help="the 14 CheXpert labels of free-text reports (rule labeler)")
    p.add_argument("input", help="CSV with 'id' and 'text' columns, or a folder of .txt reports (id = file name)")
    p.add_argument("--out", required=True, help="CSV to write: id + the 14 CheXpert columns (1, 0, -1, blank)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    skipped = Skipped()
    reports = read_reports(args.input, skipped)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    label_table(reports).to_csv(out, index=False)
    print(f"{len(reports)} report(s) labelled -> {out}")
    if skipped.entries:
        print(f"skipped {len(skipped.entries)} report(s):", file=sys.stderr)
        for entry in skipped.entries[:SHOW_SKIPPED]:
            print(f"  {entry}", file=sys.stderr)
        if len(skipped.entries) > SHOW_SKIPPED:
            print(f"  ... and {len(skipped.entries) - SHOW_SKIPPED} more", file=sys.stderr)
    return 0
