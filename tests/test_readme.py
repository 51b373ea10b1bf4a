"""The README's Python snippets run as pasted: each ```python block as a plain script (no main guard)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cxrl

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.slow
def test_every_python_block_runs_as_a_plain_script(tmp_path):
    blocks = python_blocks(README.read_text())
    assert blocks, "README.md has no ```python block"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(cxrl.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    for i, code in enumerate(blocks):
        assert "__main__" not in code, "a README snippet must work without a main guard"
        folder = tmp_path / f"block{i}"
        folder.mkdir()
        (folder / "snippet.py").write_text(code)
        # A spawned worker pool re-ran the unguarded script forever: the timeout turns that hang into a failure.
        done = subprocess.run([sys.executable, "snippet.py"], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=420)
        assert done.returncode == 0, f"README python block {i} failed:\n{done.stderr[-3000:]}"
        assert done.stderr.count("Traceback") == 0
