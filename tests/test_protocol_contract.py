"""The protocol contract: a protocol registered in this file runs through ``cxrl evaluate`` and its metrics
(accuracy, Recall@K) render in report.md and ``cxrl compare``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrl.cli import main
from cxrl.evaluate.metric_names import metric_label
from cxrl.evaluate.protocols import EvalProtocol, Predictions, register_protocol, unregister_protocol

pytestmark = pytest.mark.usefixtures("one_thread")


class ToyRetrieval(EvalProtocol):
    """Scores nothing; reports an accuracy and a Recall@5 that follow the train subset's size."""

    summary_keys = ("accuracy", "recall_at_5")

    def fit(self, train: np.ndarray, seed: int) -> int:
        return len(train)

    def predict(self, fitted: int) -> Predictions:
        ev = self.setup.ev
        k = len(ev.pathologies)
        return Predictions(np.zeros((len(ev.valid), k)), np.zeros((len(ev.test), k)), {"n": fitted})

    def metrics(self, predictions: Predictions, seed: int, fraction: float) -> dict:
        n = predictions.selection["n"]
        return {"accuracy": n / 1000, "recall_at_5": n / 100}


@pytest.fixture
def toy_protocol():
    register_protocol("toy_retrieval")(ToyRetrieval)
    yield
    unregister_protocol("toy_retrieval")


def test_a_protocol_registered_in_a_test_renders_in_report_and_compare(toy_cache, tmp_path, toy_protocol, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--encoder", "random", "--backbone", "tiny_cnn", "--data", str(toy_cache.path), "--out",
            str(out), "--protocol", "toy_retrieval", "--fractions", "0.5,1", "--seeds", "2", "--min-positives", "2",
            "--embedding", "none", "--bootstrap", "0"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    full = [r["n_train_images"] for r in metrics["runs"] if r["fraction"] == 1.0][0]
    assert metrics["summary"]["1.0"]["recall_at_5_mean"] == pytest.approx(full / 100)
    report = (out / "report.md").read_text()
    assert "| labels | train images | seeds | accuracy | Recall@5 |" in report
    assert f"| 100% | {full} | 2 | {full / 1000:.3f} ± 0.000 | {full / 100:.3f} ± 0.000 |" in report
    capsys.readouterr()
    assert main(["compare", str(out)]) == 0
    table = capsys.readouterr().out
    assert "test accuracy, mean ± std over seeds" in table and "test Recall@5, mean ± std over seeds" in table
    assert f"{full / 100:.3f} ± 0.000" in table and "macro AUROC" not in table


def test_metric_labels_read_as_in_papers():
    assert [metric_label(k) for k in ("macro_auroc", "accuracy", "i2t_recall@10", "t2i_recall_at_1", "median_rank")] \
        == ["macro AUROC", "accuracy", "i2t Recall@10", "t2i Recall@1", "median rank"]
