import pandas as pd
import pytest

from cxrl.data import load_records
from cxrl.data.records import finalize_records
from cxrl.errors import DataError


def test_load_records_names_unknown_options(tmp_path):
    with pytest.raises(DataError, match="unknown option.*colour.*valid: uncertainty, views"):
        load_records("chexpert", tmp_path, colour=True)
    with pytest.raises(DataError, match="unknown dataset 'padchest'"):
        load_records("padchest", tmp_path)


@pytest.mark.parametrize("dataset, listed", [("covidx", "train.txt, val.txt, test.txt"), ("object-cxr", "train.csv")])
def test_a_root_without_list_files_names_what_it_expected(tmp_path, dataset, listed):
    with pytest.raises(DataError, match=f"{dataset}: none of {listed}"):
        load_records(dataset, tmp_path)


def test_a_repeated_image_path_keeps_the_first_row_and_lists_the_conflict():
    frame = pd.DataFrame({"image_path": ["/r/a.jpg", "/r/b.jpg", "/r/a.jpg"], "patient_id": ["1", "2", "1"],
                          "sex": ["F", "M", "M"], "view": "PA", "split": "train"})
    rec = finalize_records(frame, "demo")
    assert rec["image_path"].tolist() == ["/r/a.jpg", "/r/b.jpg"] and rec["sex"].tolist() == ["F", "M"]
    assert rec.attrs["skipped"] == ["/r/a.jpg: image listed again, disagreeing on sex; the first row is kept"]


def test_a_csv_path_climbing_out_of_the_root_is_refused(tmp_path):
    from test_prepare import HEADER

    root = tmp_path / "chexpert"
    root.mkdir()
    rows = [[f"CheXpert-v1.0-small/{p}/patient00001/study1/view1_frontal.jpg", "Female", "60", "Frontal", "PA",
             *[""] * (len(HEADER) - 5)] for p in ("train", "../../outside")]  # fmt: skip
    pd.DataFrame(rows, columns=HEADER).to_csv(root / "train.csv", index=False)
    rec = load_records("chexpert", root)
    assert rec["image_path"].tolist() == [f"{root}/train/patient00001/study1/view1_frontal.jpg"]
    [entry] = rec.attrs["skipped"]
    assert "../../outside" in entry and "leaves the dataset root" in entry
