import pytest

from cxrl.data import load_records
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
