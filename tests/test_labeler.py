"""The rule report labeler: mention / negation / uncertainty rules, No Finding, sentence splitting, the CLI."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cxrl.cli import main
from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.text.labeler import label_report
from cxrl.data.text.sentences import split_clauses, split_sentences


def mentioned(text: str) -> dict[str, float]:
    return {k: v for k, v in label_report(text).items() if not math.isnan(v)}


def test_pre_negation():
    assert mentioned("No pneumothorax.")["Pneumothorax"] == 0


def test_negation_reaches_a_list():
    labels = mentioned("No focal consolidation, large pleural effusion, or pneumothorax.")
    assert labels["Consolidation"] == labels["Pleural Effusion"] == labels["Pneumothorax"] == 0


def test_uncertainty_cue_before_negation_cue():
    assert mentioned("Cannot exclude pneumonia.")["Pneumonia"] == -1
    assert mentioned("Pneumonia is not excluded.")["Pneumonia"] == -1


def test_uncertainty_pre_and_post():
    assert mentioned("Possible left lower lobe atelectasis.")["Atelectasis"] == -1
    assert mentioned("Right basilar pneumonia is suspected.")["Pneumonia"] == -1


def test_post_negation():
    assert mentioned("Pneumothorax is not seen.")["Pneumothorax"] == 0
    assert mentioned("The effusion has resolved.")["Pleural Effusion"] == 0


def test_negation_scope_ends_at_the_clause():
    labels = mentioned("No effusion but there is atelectasis.")
    assert labels["Pleural Effusion"] == 0 and labels["Atelectasis"] == 1
    labels = mentioned("Normal heart size with left lower lobe atelectasis.")
    assert labels["Cardiomegaly"] == 0 and labels["Atelectasis"] == 1


def test_organ_phrase_counts_only_beside_a_size_word():
    assert mentioned("Heart size is normal.")["Cardiomegaly"] == 0
    assert mentioned("The heart is mildly enlarged.")["Cardiomegaly"] == 1
    assert mentioned("The heart is not enlarged.")["Cardiomegaly"] == 0
    assert "Cardiomegaly" not in mentioned("The heart and lungs are seen on both views.")


def test_unmention_pericardial_effusion_is_not_pleural():
    assert "Pleural Effusion" not in mentioned("Small pericardial effusion.")


def test_positive_beats_negative_across_sentences():
    assert mentioned("No effusion on the right. Small left pleural effusion.")["Pleural Effusion"] == 1


def test_no_finding_when_only_negatives_or_devices():
    assert mentioned("No pneumothorax. Left PICC line in place.")["No Finding"] == 1
    assert mentioned("Heart size normal. Lungs are clear.")["No Finding"] == 1


def test_no_finding_blank_when_a_finding_is_positive_or_uncertain():
    assert "No Finding" not in mentioned("Small left pleural effusion.")
    assert "No Finding" not in mentioned("Possible pneumonia.")
    assert "No Finding" not in mentioned("Hyperinflated lungs compatible with emphysema.")


def test_labels_in_chexpert_order():
    assert list(label_report("No pneumothorax.")) == list(CHEXPERT_PATHOLOGIES)


def test_sentences_keep_decimals_and_abbreviations():
    text = "Nodule 1.5 cm in the right lung vs. scar. Dr. Smith was called\nNo pneumothorax."
    assert split_sentences(text) == [
        "Nodule 1.5 cm in the right lung vs. scar.", "Dr. Smith was called", "No pneumothorax."
    ]


def test_clauses_split_at_contrast_and_there_is():
    assert split_clauses("No effusion, there is atelectasis; mild edema") == ["No effusion", "there is atelectasis",
                                                                               "mild edema"]
    assert split_clauses("There is no effusion.") == ["There is no effusion."]


def read_labels(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str}).set_index("id")


def test_cli_csv_labels_and_lists_bad_rows(tmp_path, capsys):
    reports = tmp_path / "reports.csv"
    reports.write_text('id,text\na1,"No pneumothorax.\nThe heart is enlarged."\na2,\n,Effusion.\na1,Edema.\n'
                       "a3,Possible pneumonia.\n")
    out = tmp_path / "out" / "labels.csv"
    assert main(["label-reports", str(reports), "--out", str(out)]) == 0
    labels = read_labels(out)
    assert list(labels.columns) == list(CHEXPERT_PATHOLOGIES) and list(labels.index) == ["a1", "a3"]
    assert labels.loc["a1", "Pneumothorax"] == 0 and labels.loc["a1", "Cardiomegaly"] == 1
    assert labels.loc["a3", "Pneumonia"] == -1 and math.isnan(labels.loc["a3", "Edema"])
    err = capsys.readouterr().err
    assert "skipped 3 report(s)" in err
    assert "row 2 (id 'a2'): empty text" in err and "row 3 (id ''): empty id" in err and "repeated id" in err


def test_cli_folder_of_txt_reports(tmp_path, capsys):
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "s1.txt").write_text("FINDINGS: Small right pleural effusion.\nIMPRESSION: No pneumothorax.")
    (folder / "s2.txt").write_text("Lungs are clear.")
    (folder / "s3.txt").write_text("   \n")
    out = tmp_path / "labels.csv"
    assert main(["label-reports", str(folder), "--out", str(out)]) == 0
    labels = read_labels(out)
    assert list(labels.index) == ["s1", "s2"]
    assert labels.loc["s1", "Pleural Effusion"] == 1 and labels.loc["s1", "Pneumothorax"] == 0
    assert labels.loc["s2", "No Finding"] == 1
    assert "s3.txt: empty report" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, "a,b\n1,2\n"])
def test_cli_bad_input_is_an_error_not_a_traceback(tmp_path, capsys, content):
    source = tmp_path / "reports.csv"
    if content is not None:
        source.write_text(content)
    assert main(["label-reports", str(source), "--out", str(tmp_path / "labels.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cxrl label-reports: error:") and "reports.csv" in err
