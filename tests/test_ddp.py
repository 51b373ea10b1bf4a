"""Two CPU processes (gloo DDP, launched by Lightning) train exactly like one process on the same global batch.

torch's SyncBatchNorm refuses CPU modules, so this test removes BatchNorm instead: a ViT encoder (LayerNorm) and
SimCLR's projector without BN. What it checks is the rest of the DDP path: the global batch split over ranks by
the seeded sampler, per-sample views, NT-Xent negatives gathered from every rank with gradients, and the gradient
scale after DDP averaging (plain SGD, so a wrong scale shows as wrong weights). SyncBN itself needs GPUs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import lightning.pytorch as pl
import pytest
import torch
from engine_support import TINY, encoder_tensors
from lightly.models.modules import heads
from safetensors.torch import load_file

import cxrl.methods.simclr
import cxrl.models.text
from cxrl.models import create_encoder
from cxrl.train import pretrain

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

BACKBONE = "timm:vit_tiny_patch16_224"
NO_BN_RUN = [
    *TINY,
    f"backbone={BACKBONE}",
    "optimizer=sgd",
    "lr=0.5",
    "momentum=0",
    "weight_decay=0",
    "max_steps=2",
    "accelerator=cpu",
    "deterministic=true",
]
PATCH = "cxrl.methods.simclr.simclr_projection = lambda i, h, o: heads.SimCLRProjectionHead(i, h, o, batch_norm=False)"


def test_two_process_ddp_matches_one_process(toy_cache, tmp_path, monkeypatch):
    script = tmp_path / "run_without_bn.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from lightly.models.modules import heads
            import cxrl.methods.simclr
            from cxrl.cli import main
            {PATCH}
            sys.exit(main())
            """
        )
    )
    two = tmp_path / "two"
    cmd = [sys.executable, str(script), "pretrain", "simclr", "--data", str(toy_cache.path), "--out", str(two)]
    done = subprocess.run([*cmd, *NO_BN_RUN, "devices=2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed_backend=gloo" in done.stderr and "All distributed processes registered" in done.stderr

    monkeypatch.setattr(
        cxrl.methods.simclr, "simclr_projection", lambda i, h, o: heads.SimCLRProjectionHead(i, h, o, batch_norm=False)
    )
    one = pretrain("simclr", toy_cache.path, tmp_path / "one", overrides=[*NO_BN_RUN, "devices=1"])
    pl.seed_everything(0)  # pretrain seeds, then builds the encoder first: these are its initial weights
    initial = create_encoder(BACKBONE).state_dict()

    expected, found = encoder_tensors(one), encoder_tensors(two)
    moved = max((expected[k] - initial[k]).abs().max() for k in expected)
    assert moved > 1e-3  # the two steps changed the weights, so equality below means something
    for name, tensor in expected.items():
        torch.testing.assert_close(found[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


NO_DROPOUT = "cxrl.models.text.TINY_TEXT['hidden_dropout_prob'] = 0.0"


def test_two_process_mgca_matches_one_process(toy_report_cache, tmp_path, monkeypatch):
    """MGCA gathers its instance term's negatives and its prototype term's Sinkhorn codes across ranks, and its
    token term is a per-sample mean: two ranks of 8 train exactly like one of 16 (dropout off, as its masks differ
    with the split)."""
    script = tmp_path / "run_without_dropout.py"
    script.write_text(f"import sys\nimport cxrl.models.text\nfrom cxrl.cli import main\n{NO_DROPOUT}\n"
                      "sys.exit(main())\n")
    text_side = ["method.proj_hidden_dim=32", "method.proj_dim=16", "method.vocab_size=120", "method.tiny_width=32",
                 "method.tiny_layers=1", "method.local_dim=16", "method.num_prototypes=12"]
    run = [*(o for o in NO_BN_RUN if not o.startswith("method.")), *text_side]
    two = tmp_path / "two"
    cmd = [sys.executable, str(script), "pretrain", "mgca", "--data", str(toy_report_cache.path), "--out", str(two)]
    done = subprocess.run([*cmd, *run, "devices=2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    monkeypatch.setitem(cxrl.models.text.TINY_TEXT, "hidden_dropout_prob", 0.0)
    one = pretrain("mgca", toy_report_cache.path, tmp_path / "one", overrides=[*run, "devices=1"])
    pl.seed_everything(0)
    initial = create_encoder(BACKBONE).state_dict()
    assert max((t - initial[k]).abs().max() for k, t in encoder_tensors(one).items()) > 1e-3  # it trained
    for part in ("encoder.safetensors", "text/encoder.safetensors", "projection.safetensors"):
        expected, found = (load_file(str(r / part)) for r in (one, two))
        for name, tensor in expected.items():
            torch.testing.assert_close(found[name], tensor, rtol=1e-4, atol=1e-5, msg=f"{part}: {name}")
