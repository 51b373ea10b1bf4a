"""Write an evaluation's ``metrics.json``, plots, ``report.md`` and ``report.html``, and format its table."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from cxrl.evaluate import plots
from cxrl.evaluate.metric_names import metric_label, summary_keys


def json_safe(x):
    """Plain JSON data: numpy scalars/arrays to Python, NaN and inf to ``None``."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


TRAIN_IMAGES_NOTE = (
    "train images: images in each seed's label subset (a fraction of the train patients, so the counts can "
    "differ between seeds; different counts are joined by /)."
)


def summary_table(metrics: dict) -> str:
    """Markdown table: one row per label fraction, each summarized metric's mean ± std over seeds (macro AUROC,
    AP, F1, kappa for the multi-label protocols; whatever a protocol reports, e.g. accuracy or Recall@K)."""
    keys = summary_keys(metrics["summary"])
    rows = [
        "| labels | train images | seeds | " + " | ".join(metric_label(k) for k in keys) + " |",
        "|---:|---:|---:|" + "---|" * len(keys),
    ]
    for s in metrics["summary"].values():
        cells = [_pm(s, k) for k in keys]
        images = "/".join(str(n) for n in sorted(set(s["n_train_images"])))
        rows.append(f"| {s['fraction'] * 100:g}% | {images} | {s['n_seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _pm(entry: dict, key: str) -> str:
    mean, std = entry[f"{key}_mean"], entry[f"{key}_std"]
    return "n/a" if mean is None else f"{mean:.3f} ± {std:.3f}"


def per_class_table(run: dict, pathologies: list[str]) -> str:
    """Markdown table of one run's per-class test metrics."""
    rows = [
        "| class | pos/neg | AUROC (95% CI) | AP | threshold | F1 | kappa | precision | recall |",
        "|---|---:|---|---|---|---|---|---|---|",
    ]
    for p in pathologies:
        c = run["per_class"][p]
        ci = "" if None in c["auroc_ci"] else f" ({c['auroc_ci'][0]:.3f}–{c['auroc_ci'][1]:.3f})"
        vals = [_f(c[k]) for k in ("ap", "threshold", "f1", "kappa", "precision", "recall")]
        rows.append(f"| {p} | {c['n_positive']}/{c['n_negative']} | {_f(c['auroc'])}{ci} | " + " | ".join(vals) + " |")
    return "\n".join(rows)


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def make_plots(metrics: dict, best: dict, out: Path) -> dict[str, str]:
    """Write the report's PNGs into ``out``; returns ``{plot name: file name}``.

    ``best`` holds the test ``scores``, ``labels`` and ``embedding`` of the largest fraction's first-seed run.
    """
    names = metrics["pathologies"]
    run = _largest_fraction_run(metrics)
    if "per_class" not in run:  # the multi-label plots need per-class results and AUROCs
        return {}
    title = f"{metrics['encoder']['name']}, {run['fraction'] * 100:g}% labels, seed {run['seed']}"
    files = {} if run["fraction"] == 0 else {  # a label-free protocol has no label-efficiency curve
        "label_efficiency": plots.label_efficiency(
            metrics["summary"], out / "label_efficiency.png", metrics["encoder"]["name"]
        ),
    }
    files |= {
        "roc": plots.roc_curves(best["labels"], best["scores"], names, out / "roc.png", f"ROC: {title}"),
        "per_class_auroc": plots.per_class_auroc(run, names, out / "per_class_auroc.png", title),
        "confusion": plots.confusion_matrices(run, names, out / "confusion.png"),
    }
    if run.get("subgroups"):
        files["subgroup_tpr_gaps"] = plots.subgroup_tpr_gaps(
            run["subgroups"], names, out / "subgroup_tpr_gaps.png", f"TPR gap per subgroup: {title}"
        )
    method = metrics["protocol"]["embedding"]
    if method != "none" and best["embedding"] is not None:
        k = int(
            np.argmax(
                [
                    (~np.isnan(best["labels"][:, i])).sum() * min((best["labels"][:, i] == 1).mean(), 0.5)
                    for i in range(len(names))
                ]
            )
        )
        emb = plots.embedding_map(best["embedding"], best["labels"][:, k], names[k], out / "embedding.png", method)
        if emb is not None:
            files["embedding"] = emb
    return {k: Path(v).name for k, v in files.items()}


def write_reports(metrics: dict, best: dict, out: Path) -> None:
    """``metrics.json`` + plots + ``report.md`` + ``report.html`` into ``out``; prints the summary table."""
    metrics["plots"] = make_plots(metrics, best, out)
    metrics.update(json_safe(metrics))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    md = markdown_report(metrics)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(html_report(metrics, md))
    headline = metric_label(summary_keys(metrics["summary"])[0])
    print(
        f"\n{metrics['encoder']['name']} ({metrics['protocol']['protocol']}), test {headline} over "
        f"{len(metrics['pathologies'])} pathologies:\n{summary_table(metrics)}\n{TRAIN_IMAGES_NOTE}\n"
        f"report: {out / 'report.html'}"
    )


def _largest_fraction_run(metrics: dict) -> dict:
    top = max(r["fraction"] for r in metrics["runs"])
    return next(r for r in metrics["runs"] if r["fraction"] == top)


def markdown_report(metrics: dict) -> str:
    """The whole report as Markdown (images referenced beside it)."""
    enc, proto = metrics["encoder"], metrics["protocol"]
    run = _largest_fraction_run(metrics)
    target = metrics["data"]["target"]
    lines = [
        f"# Evaluation: {enc['name']}",
        "",
        f"- encoder: `{enc['name']}` (method {enc.get('method')}, backbone {enc.get('backbone')}, "
        f"{enc['num_features']} features, image size {enc['image_size']})",
        f"- protocol: {proto['protocol']}; label fractions {', '.join(f'{f * 100:g}%' for f in proto['fractions'])}; "
        f"{proto['seeds']} seed{'s' if proto['seeds'] > 1 else ''} per fraction; uncertainty {proto['uncertainty']}; "
        f"thresholds by {proto['threshold_rule']}",
        f"- data: `{metrics['data']['source']['path']}`" + (f" → tested on `{target['path']}`" if target else ""),
        f"- test rows: {metrics['data']['n_test_rows']} images of {metrics['data']['n_test_patients']} patients; "
        f"bootstrap: {proto['n_bootstrap']} patient resamples",
        f"- pathologies: {', '.join(metrics['pathologies'])}",
        *_selection_lines(metrics),
        "",
        "## Label efficiency",
        "",
        summary_table(metrics),
        "",
        TRAIN_IMAGES_NOTE,
        "",
    ]
    lines += (
        [f"![label efficiency]({metrics['plots']['label_efficiency']})", ""]
        if "label_efficiency" in metrics["plots"]
        else []
    )
    if "per_class" in run:
        lines += [
            f"## Per class ({run['fraction'] * 100:g}% labels, seed {run['seed']})",
            "",
            f"Macro AUROC {_f(run['macro_auroc'])} (95% CI {_ci(run['macro_auroc_ci'])}).",
            "",
            per_class_table(run, metrics["pathologies"]),
            "",
        ]
    if "per_finding" in run:  # a dense protocol's per-finding figures (segmentation)
        lines += [f"## Per finding ({run['fraction'] * 100:g}% labels, seed {run['seed']})", "",
                  per_finding_table(run["per_finding"]), ""]
    for key, caption in (
        ("roc", "ROC curves"),
        ("per_class_auroc", "per-class AUROC"),
        ("confusion", "confusion matrices"),
        ("embedding", "test embeddings"),
    ):
        if key in metrics["plots"]:
            lines += [f"![{caption}]({metrics['plots'][key]})", ""]
    if run.get("subgroups"):
        lines += subgroup_section(run, metrics["pathologies"], metrics["plots"].get("subgroup_tpr_gaps"))
    notes = metrics["notes"] + run.get("notes", [])
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def per_finding_table(per_finding: dict[str, dict]) -> str:
    """One row per finding, one column per figure the protocol gives each (numbers to 3 decimals)."""
    keys = list(next(iter(per_finding.values()), {}))
    rows = ["| finding | " + " | ".join(metric_label(k) for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    rows += [f"| {f} | " + " | ".join(_f(v[k]) if isinstance(v[k], float) else str(v[k]) for k in keys) + " |"
             for f, v in per_finding.items()]
    return "\n".join(rows)


def subgroup_section(run: dict, pathologies: list[str], plot: str | None) -> list[str]:
    """Markdown lines: the largest TPR gap per finding, the TPR gap of every subgroup, and the gap plot."""
    sub = run["subgroups"]
    lines = [
        f"## Subgroups ({run['fraction'] * 100:g}% labels, seed {run['seed']})",
        "",
        "TPR gap: a subgroup's true-positive rate minus the whole test set's, at the chosen threshold "
        "(CheXclusion). 95% CI: patient bootstrap joined with the subgroup TPR's Wilson interval; Bonferroni CI: "
        f"the same over all the gaps measured. Fewer than {sub['min_count']} positives: n/a, count shown.",
        "",
        "| finding | largest gap in | positives | TPR | overall TPR | TPR gap (95% CI) | Bonferroni CI | FPR gap |",
        "|---|---|---:|---|---|---|---|---|",
    ]
    for p in pathologies:
        g = sub["largest_gaps"][p]
        if g is None:
            lines.append(f"| {p} | no subgroup with {sub['min_count']}+ positives | | | | | | |")
            continue
        lines.append(
            f"| {p} | {g['key']} {g['subgroup']} | {g['n_positive']} | {_f(g['tpr'])} | {_f(sub['overall'][p]['tpr'])}"
            f" | {_gap(g['tpr_gap'])} ({_ci(g['tpr_gap_ci'], '+.3f')}) | {_ci(g['tpr_gap_ci_adjusted'], '+.3f')}"
            f" ({g['n_compared']} gaps) | {_gap(g['fpr_gap'])} |"
        )
    lines += ["", "TPR gap of every subgroup (positives in brackets):", "",
              "| subgroup | images | macro AUROC | " + " | ".join(pathologies) + " |",
              "|---|---:|---|" + "---|" * len(pathologies)]
    for key, members in sub["groups"].items():
        for value, group in members.items():
            cells = [f"{_gap(c['tpr_gap'])} ({c['n_positive']})" for c in (group["per_class"][p] for p in pathologies)]
            lines.append(f"| {key} {value} | {group['n_images']} | {_f(group['macro_auroc'])} | " + " | ".join(cells)
                         + " |")
    return lines + ([""] + ([f"![TPR gap per subgroup]({plot})", ""] if plot else []))


def _gap(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def _selection_lines(metrics: dict) -> list[str]:
    """Fine-tuning: the early-stopping criterion used and each run's best epoch (none for the linear probe)."""
    runs = [r for r in metrics["runs"] if isinstance(r["selection"], dict) and "criterion" in r["selection"]]
    if not runs:
        return []
    criteria = sorted({r["selection"]["criterion"] for r in runs})
    epochs = ", ".join(f"{r['fraction'] * 100:g}% seed {r['seed']}: {r['selection']['best_epoch']}" for r in runs)
    return [f"- fine-tuning selection: {'; '.join(criteria)}; best epoch (0-based) {epochs}"]


def _ci(ci: list, spec: str = ".3f") -> str:
    return "n/a" if None in ci else f"{ci[0]:{spec}}–{ci[1]:{spec}}"


def html_report(metrics: dict, markdown: str) -> str:
    """An HTML page (PNG files beside it) rendering ``markdown``, the :func:`markdown_report` of ``metrics``."""
    body: list[str] = []
    block: list[str] = []  # consecutive table rows or list items

    def flush() -> None:
        if block and block[0].startswith("|"):
            body.append(html_table(block))
        elif block:
            body.append("<ul>" + "".join(f"<li>{html.escape(b[2:]).replace('`', '')}</li>" for b in block) + "</ul>")
        block.clear()

    for line in markdown.splitlines() + [""]:
        if line.startswith(("|", "- ")):
            if block and block[0][0] != line[0]:
                flush()
            block.append(line)
            continue
        flush()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            alt, src = line[2:-1].split("](")
            body.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}"></figure>')
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}td:first-child{text-align:left}img{max-width:100%}"
    )
    title = html.escape(f"cxrl evaluation: {metrics['encoder']['name']}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style>"
        f"</head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def html_table(lines: list[str]) -> str:
    """An HTML table of markdown table ``lines`` (header, separator, rows), cells escaped."""
    cells = [[html.escape(c.strip()) for c in line.strip("|").split("|")] for line in lines]
    head, rows = cells[0], cells[2:]
    out = ["<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join(out) + "</table>"
