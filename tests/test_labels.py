import numpy as np
import pytest

from cxrl.data.labels import PATHOLOGIES, apply_uncertainty_policy
from cxrl.errors import ConfigError

RAW = np.array([[1, 0, -1, np.nan]], dtype=np.float32)


def test_vocabulary_is_chexpert_then_nih_only():
    assert PATHOLOGIES[:2] == ("No Finding", "Enlarged Cardiomediastinum")
    assert "Pleural Effusion" in PATHOLOGIES and "Effusion" not in PATHOLOGIES
    nih_only = ("Infiltration", "Mass", "Nodule", "Emphysema", "Fibrosis", "Pleural Thickening", "Hernia")
    assert PATHOLOGIES[-7:] == nih_only


@pytest.mark.parametrize(
    "policy, expected",
    [("ignore", [1, 0, np.nan, np.nan]), ("zeros", [1, 0, 0, np.nan]), ("ones", [1, 0, 1, np.nan]),
     ("multiclass", [1, 0, 2, np.nan])],
)
def test_policies(policy, expected):
    np.testing.assert_array_equal(apply_uncertainty_policy(RAW, policy)[0], np.array(expected, np.float32))


def test_blank_zero_and_smoothing():
    y = apply_uncertainty_policy(RAW, "smooth_ones", blank="zero", seed=3)[0]
    assert y[0] == 1 and y[1] == 0 and 0.55 <= y[2] <= 0.85 and y[3] == 0
    assert y[2] == apply_uncertainty_policy(RAW, "smooth_ones", blank="zero", seed=3)[0][2]


def test_unknown_policy():
    with pytest.raises(ConfigError, match="expected one of ignore"):
        apply_uncertainty_policy(RAW, "maybe")

