"""Patient splits and nested label fractions: determinism, disjointness, nesting, rare labels, leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrl.data.labels import PATHOLOGIES
from cxrl.data.splits import check_no_leakage, label_fraction, official_or_patient_split, patient_split
from cxrl.errors import ConfigError, DataError, LeakageError


def make_records(patients: int, images_per_patient: int = 2, seed: int = 0, split=None) -> pd.DataFrame:
    """Canonical-looking records; Hernia is positive for exactly one patient, Edema for about a third."""
    rng = np.random.default_rng(seed)
    pid = np.repeat([f"p{i:05d}" for i in range(patients)], images_per_patient)
    rec = pd.DataFrame({"image_path": [f"/x/{i}.jpg" for i in range(len(pid))], "patient_id": pid, "split": split})
    for p in PATHOLOGIES:
        rec[p] = np.nan
    edema = rng.random(patients) < 0.3
    rec["Edema"] = np.repeat(edema, images_per_patient).astype("float32")
    rec["Cardiomegaly"] = np.repeat(np.where(rng.random(patients) < 0.5, 0.0, -1.0), images_per_patient)
    rec.loc[rec["patient_id"] == f"p{patients - 7:05d}", "Hernia"] = 1.0
    return rec


def test_patient_split_is_deterministic_patient_level_and_close_to_fractions():
    rec = make_records(2000)
    a, b = patient_split(rec, seed=3), patient_split(rec, seed=3)
    pd.testing.assert_frame_equal(a, b)
    check_no_leakage(a)
    shares = a.drop_duplicates("patient_id")["split"].value_counts(normalize=True)
    np.testing.assert_allclose(shares[["train", "valid", "test"]], [0.8, 0.1, 0.1], atol=0.03)
    assert not patient_split(rec, seed=4)["split"].equals(a["split"])
    assert rec["split"].isna().all()  # input untouched


def test_adding_patients_does_not_move_existing_ones():
    small, large = patient_split(make_records(300)), patient_split(make_records(600))
    assert large["split"].iloc[: len(small)].tolist() == small["split"].tolist()


def test_patient_split_keeps_official_splits_and_follows_a_patients_known_split():
    rec = make_records(50)
    rec.loc[rec.index[:10], "split"] = "test"  # patients p00000-p00004, both images
    rec.loc[rec.index[11], "split"] = "valid"  # p00005's second image only
    out = official_or_patient_split(rec)
    assert (out["split"].iloc[:10] == "test").all()
    assert (out.loc[out["patient_id"] == "p00005", "split"] == "valid").all()
    assert out["split"].notna().all()


def test_rows_to_split_need_a_patient_id():
    rec = make_records(10)
    rec.loc[3, "patient_id"] = "None"  # what finalize_records makes of a missing id
    with pytest.raises(DataError, match="lack a patient_id.*row 3"):
        patient_split(rec)


def test_bad_fractions_are_refused():
    with pytest.raises(ConfigError, match="fractions"):
        patient_split(make_records(10), fractions=(0.8, 0.3, 0.1))


def test_leakage_is_caught_and_named():
    rec = patient_split(make_records(40))
    victim = rec["patient_id"].iloc[0]
    other = "test" if rec["split"].iloc[0] != "test" else "train"
    rec.loc[rec.index[1], "split"] = other
    with pytest.raises(LeakageError, match=victim):
        check_no_leakage(rec)


def test_label_fractions_are_nested_patient_level_and_seeded():
    rec = patient_split(make_records(1000, seed=1))
    train_patients = set(rec.loc[rec["split"] == "train", "patient_id"])
    previous: set[str] = set()
    for fraction in (0.01, 0.1, 0.25, 0.5, 1.0):
        rows = label_fraction(rec, fraction, seed=7)
        assert np.all(np.diff(rows) > 0) and (rec["split"].iloc[rows] == "train").all()
        patients = set(rec["patient_id"].iloc[rows])
        assert previous <= patients  # nested
        whole = rec[rec["patient_id"].isin(patients)]
        assert len(whole) == len(rows)  # every image of a kept patient
        assert len(patients) >= np.ceil(fraction * len(train_patients))
        previous = patients
    assert previous == train_patients
    np.testing.assert_array_equal(label_fraction(rec, 0.1, seed=7), label_fraction(rec, 0.1, seed=7))
    assert not np.array_equal(label_fraction(rec, 0.1, seed=7), label_fraction(rec, 0.1, seed=8))


def test_rare_label_is_kept_at_one_percent():
    rec = make_records(1000, seed=2)
    rec["split"] = "train"
    for seed in range(5):
        rows = label_fraction(rec, 0.01, seed=seed)
        kept = rec.iloc[rows]
        assert (kept["Hernia"] == 1).any() and (kept["Edema"] == 1).any()
        assert kept["patient_id"].nunique() == 10


def test_tiny_fraction_keeps_at_least_one_patient_and_bad_fraction_fails():
    rec = make_records(20)
    rec["split"] = "train"
    assert len(label_fraction(rec, 1e-6, pathologies=[])) == 2  # one patient, both images
    with pytest.raises(ConfigError):
        label_fraction(rec, 0.0)
