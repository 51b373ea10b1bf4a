"""``index.html`` of ``cxrl explain``: one self-contained page (inline style, no script, images linked relatively,
so the folder can be moved or zipped) with the localization tables, the CAM gallery per finding and encoder, the
embedding maps and the similarity heatmaps."""

from __future__ import annotations

import html
from pathlib import Path

from cxrl.evaluate.report import html_table

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child{text-align:left}img{max-width:100%}.row{display:flex;flex-wrap:wrap;gap:10px}"
    "figure{margin:0}figcaption{font-size:12px;color:#555}h4{margin:1em 0 .3em}"
)


def _num(x, spec: str = ".3f") -> str:
    return "n/a" if x is None else f"{x:{spec}}"


def _ci(entry: dict, key: str) -> str:
    ci = entry.get(f"{key}_ci")
    return _num(entry.get(key)) + ("" if not ci or None in ci else f" [{ci[0]:.3f}, {ci[1]:.3f}]")


def localization_table(entry: dict, findings: list[str]) -> str:
    """Per finding: images, pointing game and IoU with the random baselines and margins (95 % CIs)."""
    lines = ["| finding | images | pointing game | random | margin | IoU | random-map IoU | IoU margin |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for finding in findings:
        v = entry["localization"].get(finding)
        if v is None:
            lines.append(f"| {finding} | – | no masks | | | | | |")
            continue
        lines.append(f"| {finding} | {v['n_images']} | {_ci(v, 'pointing_game')} | "
                     f"{_num(v.get('pointing_game_random'))} | {_ci(v, 'pointing_game_margin')} | {_ci(v, 'iou')} | "
                     f"{_num(v.get('iou_random'))} | {_ci(v, 'iou_margin')} |")
    m = entry.get("macro") or {}
    if m:
        lines.append(f"| mean over findings | | {_num(m['pointing_game'])} | {_num(m['pointing_game_random'])} | "
                     f"{_num(m['pointing_game_margin'])} | {_num(m['iou'])} | {_num(m['iou_random'])} | "
                     f"{_num(m['iou_margin'])} |")
    return html_table(lines)


def saliency_section(entries: list[dict]) -> list[str]:
    """Zero-shot saliency segmentation of the image-text encoders: Dice per finding and mask, and the overlays."""
    scored = [e for e in entries if e.get("saliency")]
    if not scored:
        return []
    body = ["<h2>Zero-shot saliency segmentation</h2><p>MedCLIP-SAM style: the saliency of the image-text score "
            "(positive minus negative prompts) thresholded by Otsu into a pseudo-mask, with and without the dense CRF "
            "(and refined by SAM where a checkpoint was given), Dice against the finding's mask on the positive test "
            "images; baselines use no model: the whole image, the mean training mask (location prior), a random "
            "map thresholded alike.</p>"]
    for e in scored:
        result = e["saliency"]
        variants = list(next(iter(result["findings"].values()), {}).get("dice", {}))
        lines = ["| finding | images | " + " | ".join(v.replace("_", " ") for v in variants) + " |",
                 "|---|---:|" + "---:|" * len(variants)]
        lines += [f"| {f} | {v['n_images']} | " + " | ".join(_num(v["dice"][k]) for k in variants) + " |"
                  for f, v in result["findings"].items()]
        lines.append("| mean | | " + " | ".join(_num(result["mean"].get(k)) for k in variants) + " |")
        body += [f"<h3>{html.escape(e['name'])}</h3>", html_table(lines), '<div class="row">' + "".join(
            _figure(v["overlay"], f) for f, v in result["findings"].items() if "overlay" in v) + "</div>"]
    return body


def _figure(src: str, caption: str) -> str:
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _caption(item: dict) -> str:
    text = f"row {item['row']}"
    if "hit" in item:
        text += f" · hit {item['hit']:.2g} · IoU {item['iou']:.2f}"
    return text


def gallery_html(metrics: dict) -> str:
    """The page for ``metrics`` (the ``metrics.json`` of :func:`cxrl.explain.run.run_explain`)."""
    s, findings, entries = metrics["settings"], metrics["findings"], metrics["encoders"]
    names = ", ".join(e["name"] for e in entries)
    body = [f"<h1>cxrl explain: {html.escape(names)}</h1>",
            f"<p>Cache {html.escape(metrics['data']['path'])}: {metrics['data']['n_test_rows']} test rows "
            f"({metrics['data']['n_test_patients']} patients), {metrics['data']['image_size']} px. "
            f"CAM: {html.escape(s['cam'])}; at most {s['n_images']} positive test images per finding, drawn with "
            f"seed {s['seed']}.</p>",
            "<h2>Localization</h2>",
            f"<p>Pointing game (Zhang et al. 2018): a hit when the map's maximum lies in the finding's mask "
            f"(grown by {s['tolerance']} px; a tied maximum scores the share inside); random: the expected hit of a "
            f"uniform-random map, the mask's share of the image. IoU: the top {s['top_fraction']:.0%} of the map's "
            f"pixels against the mask; random: the same for uniform-random maps. Margin: map minus random; "
            f"brackets: patient-bootstrap 95 % intervals.</p>"]
    for e in entries:
        body.append(f"<h3>{html.escape(e['name'])}: {html.escape(e['head'])} head</h3>")
        body.append(localization_table(e, findings))
    body.append("<h2>Class activation maps</h2><p>Left: the image, the finding's mask outlined in green; right: "
                "the map over it, a white cross at its maximum.</p>")
    for finding in findings:
        body.append(f"<h3>{html.escape(finding)}</h3>")
        for e in entries:
            items = e["gallery"].get(finding) or []
            body.append(f"<h4>{html.escape(e['name'])}</h4>")
            body.append('<div class="row">' + "".join(_figure(i["png"], _caption(i)) for i in items) + "</div>"
                        if items else "<p>No positive test image.</p>")
    body += saliency_section(entries)
    pictures = {"embedding_umap": "Embedding map (UMAP) of the test rows' pooled encoder features",
                "embedding_tsne": "Embedding map (t-SNE) of the test rows' pooled encoder features",
                "prototype_similarity": "Class-prototype similarity", "prompt_similarity": "Prompt similarity"}
    body.append("<h2>Embedding space</h2>")
    body += [f"<h3>{title}</h3>" + _figure(metrics["plots"][key], title)
             for key, title in pictures.items() if key in metrics["plots"]]
    body += [f"<h3>Finding embeddings of {html.escape(e['name'])} before and after pre-training</h3>"
             + _figure(e["finding_similarity"], "cosine similarity of the learned finding embeddings")
             for e in entries if e.get("finding_similarity")]
    if metrics["notes"]:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in metrics["notes"]) + "</ul>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>cxrl explain: {html.escape(names)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_gallery(metrics: dict, out: Path) -> Path:
    """Write ``out/index.html``; returns its path."""
    path = Path(out) / "index.html"
    path.write_text(gallery_html(metrics))
    return path
