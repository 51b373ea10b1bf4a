"""Worker processes never re-run the caller's script: forked on Linux, elsewhere spawned only when safe."""

from __future__ import annotations

import sys
import types

import pytest

from cxrl.data import workers


@pytest.mark.parametrize(
    ("platform", "main_file", "expected"),
    [
        ("linux", "/home/me/analysis.py", "fork"),
        ("darwin", "/home/me/analysis.py", None),  # a user script: spawning would re-run it, so work in-process
        ("darwin", "/venv/bin/cxrl", "spawn"),  # the console entry point guards its main
        ("win32", None, "spawn"),  # interactive: nothing to re-run
    ],
)
def test_worker_context_never_reruns_a_user_script(monkeypatch, platform, main_file, expected):
    main = types.ModuleType("__main__")
    if main_file is not None:
        main.__file__ = main_file
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setitem(sys.modules, "__main__", main)
    context = workers.worker_context()
    assert (context.get_start_method() if context else None) == expected
