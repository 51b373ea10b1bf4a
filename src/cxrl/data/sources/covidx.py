"""COVIDx CXR (Wang et al., COVID-Net, 2020): ``train.txt``, ``test.txt`` and optional ``val.txt``.

Each line is ``<patient> <file> <label> <source>`` (space-separated, no header). Labels are ``positive`` /
``negative`` (binary releases) or ``normal`` / ``pneumonia`` / ``COVID-19`` (3-class releases). ``covid`` is 1/0;
"Pneumonia" is 1 for pneumonia or COVID-19, 0 for normal, NaN in binary releases (a COVID-negative image may
still show pneumonia). Patient ids are strings and are prefixed with the source (``"cohen/5"``), because
sources number their patients independently. Lines with another number of fields or an unknown label are
skipped and listed in ``frame.attrs["skipped"]``.
Leakage: COVIDx includes RSNA (hence NIH) images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrl.data.sources._common import Skipped, load_split_files, paths_under, read_text

FILES = {"train.txt": "train", "val.txt": "valid", "test.txt": "test"}
COVID = {"positive": 1.0, "negative": 0.0, "covid-19": 1.0, "pneumonia": 0.0, "normal": 0.0}
PNEUMONIA = {"positive": np.nan, "negative": np.nan, "covid-19": 1.0, "pneumonia": 1.0, "normal": 0.0}
FIELDS = 4


def load(root: Path) -> pd.DataFrame:
    """One record per listed line, images under ``root/<train|val|test>/``."""
    return load_split_files(root, "covidx", FILES, read_list)


def read_list(path: Path, split: str, image_dir: Path, skipped: Skipped) -> pd.DataFrame:
    """The records of one COVIDx list file."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != FIELDS:
            skipped.add(path, number, f"expected {FIELDS} fields <patient> <file> <label> <source>, got {len(fields)}")
        elif fields[2].lower() not in COVID:
            skipped.add(path, number, f"label {fields[2]!r} is not one of {', '.join(COVID)}")
        else:
            rows.append(fields)
    table = pd.DataFrame(rows, columns=["patient", "file", "label_raw", "source"], dtype=str)
    label = table["label_raw"].str.lower()
    return pd.DataFrame(
        {
            "image_path": paths_under(image_dir, table["file"]),
            "patient_id": table["source"] + "/" + table["patient"],
            "study_id": table["file"],
            "split": split,
            "Pneumonia": label.map(PNEUMONIA).astype("float32"),
            "covid": label.map(COVID).astype("float32"),
            "label_raw": table["label_raw"],
            "source": table["source"],
        }
    )
