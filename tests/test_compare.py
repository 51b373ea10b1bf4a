"""``cxrl compare``: one table from eval dirs, run dirs holding eval dirs, or metrics.json files."""

from __future__ import annotations

import json

import pytest

from cxrl.cli import main
from cxrl.errors import DataError
from cxrl.evaluate.compare import find_evaluations, format_table, load_rows


def _metrics(name: str, method: str, summary: dict[str, tuple[float, float]], target: str | None = None) -> dict:
    return {
        "encoder": {"name": name, "method": method},
        "protocol": {"protocol": "linear"},
        "data": {"source": {"path": "/c/src"}, "target": {"path": f"/c/{target}"} if target else None},
        "summary": {f: {"macro_auroc_mean": m, "macro_auroc_std": s} for f, (m, s) in summary.items()},
    }


@pytest.fixture
def evals(tmp_path):
    """A run dir with two eval subdirs, and a lone eval dir."""
    run = tmp_path / "simclr-run"
    for sub, metrics in {
        "eval/linear": _metrics("simclr-run", "simclr", {"0.01": (0.71, 0.02), "1.0": (0.86, 0.0)}),
        "eval/to-nih": _metrics("simclr-run", "simclr", {"1.0": (0.80, 0.01)}, target="nih-cache"),
    }.items():
        (run / sub).mkdir(parents=True)
        (run / sub / "metrics.json").write_text(json.dumps(metrics))
    lone = tmp_path / "random-eval"
    lone.mkdir()
    (lone / "metrics.json").write_text(json.dumps(_metrics("random-resnet18", "random", {"0.1": (0.6, 0.05)})))
    return run, lone


def test_run_dirs_and_eval_dirs_are_found(evals):
    run, lone = evals
    files = find_evaluations([run, lone])
    assert [f.parent.name for f in files] == ["linear", "to-nih", "random-eval"]
    assert find_evaluations([lone / "metrics.json"]) == [lone / "metrics.json"]


def test_table_has_one_row_per_evaluation_and_union_of_fractions(evals):
    table = format_table(load_rows(find_evaluations(list(evals))))
    lines = table.splitlines()
    assert lines[0] == "| encoder | method | protocol | evaluation | 1% labels | 10% labels | 100% labels |"
    assert len(lines) == 5
    assert "| simclr-run | simclr | linear | linear | 0.710 ± 0.020 | — | 0.860 ± 0.000 |" in lines
    assert "| simclr-run → nih-cache | simclr | linear | to-nih | — | — | 0.800 ± 0.010 |" in lines
    assert "| random-resnet18 | random | linear | random-eval | — | 0.600 ± 0.050 | — |" in lines


def test_cli_prints_and_writes_table_and_json(evals, tmp_path, capsys):
    out_md, out_json = tmp_path / "table.md", tmp_path / "rows.json"
    assert main(["compare", *map(str, evals), "--out", str(out_md), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "0.860 ± 0.000" in printed and out_md.read_text().strip() in printed
    rows = json.loads(out_json.read_text())
    assert [r["encoder"] for r in rows] == ["simclr-run", "simclr-run", "random-resnet18"]


def test_missing_or_foreign_inputs_are_clear_errors(tmp_path, capsys):
    with pytest.raises(DataError, match="does not exist"):
        find_evaluations([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no metrics.json"):
        find_evaluations([tmp_path / "empty"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text('{"accuracy": 1}')
    assert main(["compare", str(tmp_path / "bad")]) == 1
    assert "not a cxrl metrics.json" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")  # tiny problems on a shared machine
def test_compare_reads_real_evaluations(toy_cache, tmp_path):
    from cxrl.evaluate.protocol import run_evaluation

    quick = dict(backbone="tiny_cnn", n_bootstrap=50, min_positives=2, embedding="none", seeds=1)
    run_evaluation("random", toy_cache.path, tmp_path / "a", fractions=[0.5, 1.0], **quick)
    run_evaluation("random", toy_cache.path, tmp_path / "b", fractions=[1.0], seed=3, **quick)
    rows = load_rows(find_evaluations([tmp_path / "a", tmp_path / "b"]))
    assert [set(r["auroc"]) for r in rows] == [{"0.5", "1.0"}, {"1.0"}]
    assert format_table(rows).count("random-tiny_cnn") == 2


def test_evaluations_of_different_caches_or_pathologies_get_columns_and_a_warning(tmp_path, capsys):
    paths = []
    for name, cache, pathologies in (("a", "/c/chexpert", ["Edema"]), ("b", "/c/mimic", ["Edema", "Atelectasis"])):
        metrics = {**_metrics(name, "simclr", {"1.0": (0.8, 0.0)}), "pathologies": pathologies}
        metrics["data"]["source"]["path"] = cache
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics))
        paths.append(str(tmp_path / name))
    assert main(["compare", *paths]) == 0
    out, err = capsys.readouterr()
    assert "| encoder | method | protocol | evaluation | data | pathologies | 100% labels |" in out
    assert "| a | simclr | linear | a | chexpert | #1 (1) | 0.800 ± 0.000 |" in out
    assert "| b | simclr | linear | b | mimic | #2 (2) | 0.800 ± 0.000 |" in out
    assert "- pathologies #2 (2): Edema, Atelectasis" in out
    assert "different caches or pathology sets" in err


def test_a_file_that_is_not_a_metrics_file_is_named_as_such(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "weights.bin").write_bytes(b"\xff\xfe\x00")
    for name in ("notes.txt", "weights.bin"):
        assert main(["compare", str(tmp_path / name)]) == 1
        assert f"{tmp_path / name}: not a cxrl metrics.json" in capsys.readouterr().err


def test_compare_out_says_where_it_wrote(evals, tmp_path, capsys):
    out_md, out_json = tmp_path / "table.md", tmp_path / "rows.json"
    assert main(["compare", *map(str, evals), "--out", str(out_md), "--json", str(out_json)]) == 0
    err = capsys.readouterr().err
    assert f"written to {out_md}" in err and f"written to {out_json}" in err
