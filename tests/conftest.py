"""Shared fixtures: the real files shipped in registry packages, and small generated data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cxrl.data.labels import PATHOLOGIES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the ``longest`` tests first: at the end of the queue they ran alone while the other xdist worker idled."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)


@pytest.fixture
def one_thread():
    """Tiny models and problems run fastest single-threaded on a shared 2-core CPU (no OpenMP barrier stalls)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def txv_data() -> Path:
    """The data folder of the installed torchxrayvision wheel (real CheXpert/NIH/RSNA/SIIM/VinDr CSVs)."""
    spec = importlib.util.find_spec("torchxrayvision")
    assert spec is not None and spec.origin, "torchxrayvision is a test dependency: pip install -e '.[test]'"
    return Path(spec.origin).parent / "data"


@pytest.fixture(scope="session")
def rg1_dicom() -> Path:
    """The real adult PA chest CR (MONOCHROME1, 15-bit) from pydicom-data."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("RG1_UNCI.dcm"))


@pytest.fixture(scope="session")
def toy_cache(tmp_path_factory):
    """A 96-image cache at 64 px whose labels are learnable (a bright disc means Cardiomegaly, etc.).

    For engine and evaluation tests that must not depend on the phantom's speed.
    """
    from cxrl.data.cache import write_cache

    rng = np.random.default_rng(0)
    n, size = 96, 64
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(100, 20, (n, size, size))
    labels = rng.random((n, 3)) < 0.4
    centers = [(20, 20), (44, 44), (20, 44)]
    for i in range(n):
        for k, (cy, cx) in enumerate(centers):
            if labels[i, k]:
                images[i][(yy - cy) ** 2 + (xx - cx) ** 2 < 64] += 90
    images = np.clip(images, 0, 255).astype(np.uint8)
    patients = np.arange(n) // 2
    split = np.where(patients % 10 < 6, "train", np.where(patients % 10 < 8, "valid", "test"))
    rec = pd.DataFrame(
        {
            "image_path": [f"/toy/{i}.png" for i in range(n)],
            "patient_id": patients.astype(str),
            "study_id": np.arange(n).astype(str),
            "view": "PA",
            "sex": "F",
            "age": 50.0,
            "split": split,
            "dataset": "toy",
        }
    )
    for p in PATHOLOGIES:
        rec[p] = np.nan
    for k, p in enumerate(("Cardiomegaly", "Pleural Effusion", "Edema")):
        rec[p] = labels[:, k].astype("float32")
    return write_cache(tmp_path_factory.mktemp("toy_cache"), images, rec, {"source": "toy"})


@pytest.fixture(scope="session")
def toy_report_cache(toy_cache, tmp_path_factory):
    """The toy cache with a ``findings`` report per image stating each disc finding or its absence."""
    from engine_support import TOY_FINDINGS, toy_report

    from cxrl.data.cache import write_cache

    records = toy_cache.records.copy()
    records["findings"] = [toy_report({f: r[f] == 1 for f in TOY_FINDINGS}) for _, r in records.iterrows()]
    return write_cache(tmp_path_factory.mktemp("toy_reports"), np.asarray(toy_cache.images), records,
                       {"source": "toy"})
