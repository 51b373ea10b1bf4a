"""The pre-training engine shared by every method: ``cxrl pretrain`` and :func:`pretrain`.

Composed of small builders (config -> data -> method -> optimizer/schedule -> callbacks/loggers -> Trainer ->
export). Views are made on the device from per-sample seeds, the global batch is split across
``devices x num_nodes`` processes, and ``RUN/checkpoints/last.ckpt`` lets ``--resume`` continue a killed run to
the same weights.

RUN layout: ``config.yaml`` (resolved), ``checkpoints/last.ckpt``, ``logs/{tensorboard,csv}/version_N``,
``encoder.safetensors`` + ``encoder.json`` (the image encoder, the only things image evaluators read), one
folder per other encoder a method owns (``text/``, :func:`cxrl.models.save_named_encoder`), and an image-text
method's heads to its joint space (``projection.safetensors``, :mod:`cxrl.models.image_text`).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
import platform
import shlex
import shutil
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import yaml
from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.lars import LARS
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from cxrl.config import load_config, save_config, to_dict
from cxrl.data.cache import Cache
from cxrl.data.torch_dataset import CacheDataModule
from cxrl.errors import ConfigError
from cxrl.methods import METHODS, MethodConfig, PretrainMethod, canonical_method, create_method
from cxrl.methods.registry import method_names
from cxrl.models import Encoder, create_encoder
from cxrl.models.export import WEIGHTS_FILE, save_named_encoder
from cxrl.models.image_text import save_projections
from cxrl.monitor import MonitorConfig, OnlineMonitor
from cxrl.precision import canonical_precision
from cxrl.quiet import quiet_lightning
from cxrl.resume import DATA_KEY, check_same_data, check_same_model, data_identity, read_checkpoint
from cxrl.transforms import make_view_fn, seeds_for

log = logging.getLogger(__name__)
LAST_CKPT = Path("checkpoints") / "last.ckpt"
MAX_UPSAMPLE = 4  # image_size at most this many times the cache's side


@dataclass
class PretrainConfig:
    """Everything a pre-training run needs; ``batch_size`` is the GLOBAL batch over all devices and nodes."""

    backbone: str = "resnet50"
    weights: str | None = None  # initial encoder weights (see cxrl.models.create_encoder)
    image_size: int = 224
    batch_size: int = 256
    max_epochs: int = 100
    max_steps: int = -1  # > 0 overrides max_epochs
    optimizer: Literal["adamw", "sgd", "lars"] = "lars"
    lr: float = 0.3
    weight_decay: float = 1e-6
    momentum: float = 0.9  # SGD / LARS momentum (the EMA momentum is method.ema_momentum)
    scheduler: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = 10.0
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_clip: float | None = None
    precision: Any = "32-true"  # as Lightning takes it: 32, 16, bf16, "bf16-mixed", ... (cxrl.precision)
    compile: bool = False  # torch.compile the encoder (Inductor: GPU kernels; on a CPU, a C++ compiler)
    channels_last: bool = True  # NHWC convolutions: ~1.1x on CPU (oneDNN), more with AMP on GPU
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" when devices x num_nodes > 1
    sync_batchnorm: bool = False
    num_workers: int | None = None  # DataLoader workers per device; None: default_workers()
    seed: int = 0
    deterministic: bool = False
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    checkpoint_every_n_steps: int = 500
    log_every_n_steps: int = 10
    progress_bar: bool = True
    method: Any = field(default_factory=MethodConfig)  # the registered method's own dataclass (cxrl.methods)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    def __post_init__(self) -> None:
        self.precision = canonical_precision(self.precision)


def default_config_path(method: str) -> Path | None:
    """The packaged YAML of a method (``cxrl/configs/<method>.yaml``); None for a method registered outside cxrl
    that ships none (its config dataclass's defaults then apply)."""
    path = Path(str(resources.files("cxrl") / "configs" / f"{canonical_method(method)}.yaml"))
    return path if path.is_file() else None


def resolve_config(
    method: str, config_path: str | Path | None = None, overrides: Sequence[str] = ()
) -> PretrainConfig:
    """Defaults <- the method's YAML (or ``config_path``) <- overrides; the method name always wins."""
    name = canonical_method(method)
    cfg = load_config(PretrainConfig, config_path or default_config_path(name), [*overrides, f"method.name={name}"],
                      sections={"method": METHODS[name].config})
    for key in ("batch_size", "image_size", "devices", "num_nodes", "checkpoint_every_n_steps"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"config key {key!r}: expected a positive integer, found {getattr(cfg, key)}")
    return cfg


class PretrainModule(pl.LightningModule):
    """Lightning glue around a method: on-device views, loss, logging, optimizer and per-step schedules."""

    def __init__(
        self, method: PretrainMethod, cfg: PretrainConfig, total_steps: int, warmup_steps: int,
        data: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.method, self.cfg, self.data = method, cfg, data
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.view_fn = make_view_fn(method.views)
        self.last_loss = torch.tensor(float("nan"))
        if cfg.channels_last:
            self.to(memory_format=torch.channels_last)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # torch's global generator (dropout, a method's own draws) seeded per (seed, step, rank): --resume replays
        # the same draws without checkpointing generator states, and each rank draws its own
        torch.manual_seed(int(seeds_for([self.global_rank], self.global_step, self.cfg.seed)[0]))
        self.method.on_step_start(self.global_step, self.total_steps)

    def step_loss(self, batch: dict[str, torch.Tensor], epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Views of the batch's images (seeded per sample and epoch), then the method's loss on the views and the
        batch dict: the work of one step. A method without views gets none."""
        seeds = seeds_for(batch["index"], epoch, self.cfg.seed)
        # (B, 1, s, s) views are already channels_last-contiguous: a single channel has the same layout either way
        views = self.view_fn(batch["image"], seeds) if self.method.views else []
        return self.method.loss(views, batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logs = self.step_loss(batch, self.current_epoch)
        if self.global_step % self.cfg.log_every_n_steps == 0 and not torch.isfinite(loss):  # a sync: not every step
            raise FloatingPointError(f"loss is {loss.item()} at step {self.global_step}; lower lr or check the data")
        self.log("train/loss", loss, prog_bar=True)
        if logs:  # the method's own terms (e.g. GLoRIA's global and local losses)
            self.log_dict({f"train/{name}": value for name, value in logs.items()})
        self.last_loss = loss.detach()
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.data is not None:
            checkpoint[DATA_KEY] = self.data  # what --resume checks it continues on (cxrl.resume)

    def on_after_backward(self) -> None:
        self.method.on_after_backward(self.global_step)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.method, self.cfg)
        scheduler = build_scheduler(optimizer, self.cfg, self.total_steps, self.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def build_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW, SGD or LARS over the method's learning-rate groups (:meth:`PretrainMethod.lr_groups`); norm and bias
    parameters get no weight decay (and so no LARS scaling)."""
    groups = parameter_groups(model, cfg)
    if cfg.optimizer == "adamw":  # fused (one kernel for all parameters) where they live on a GPU
        on_gpu = all(p.is_cuda for group in groups for p in group["params"])
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=on_gpu or None)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return LARS(groups, lr=cfg.lr, momentum=cfg.momentum)


def parameter_groups(model: torch.nn.Module, cfg: PretrainConfig) -> list[dict[str, Any]]:
    """Two optimizer groups (decay, no decay) per learning-rate group of ``model``, each parameter in the first
    group whose module holds it; a plain module is one group at ``cfg.lr``."""
    lr_groups = model.lr_groups() if isinstance(model, PretrainMethod) else [(model, None)]
    groups, seen = [], set()
    for module, lr in lr_groups:
        decay, no_decay = get_weight_decay_parameters([module])
        for params, weight_decay in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            mine = [p for p in params if p.requires_grad and id(p) not in seen]
            seen.update(map(id, mine))
            groups.append({"params": mine, "weight_decay": weight_decay, "lr": cfg.lr if lr is None else lr})
    return groups


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: PretrainConfig, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: linear warm-up then cosine (to ``min_lr_ratio``), one-cycle, or constant."""
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total_steps + 1,
            pct_start=max(warmup_steps, 2) / (total_steps + 1),  # under 2, torch's first phase is empty (0/0)
            cycle_momentum=False,
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, cfg.scheduler, cfg.min_lr_ratio)
    )


def lr_factor(step: int, total_steps: int, warmup_steps: int, kind: str, floor: float = 0.0) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up from ~0, then cosine decay to ``floor`` (or flat)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def plan_steps(cfg: PretrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(total optimization steps, warm-up steps) from max_steps / max_epochs and the epoch length."""
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.max_epochs * steps_per_epoch
    warmup = min(round(cfg.warmup_epochs * steps_per_epoch), total // 2)
    return total, warmup


def compile_encoders(method: PretrainMethod, on_gpu: bool) -> int:
    """``torch.compile`` every image encoder of ``method`` (the online one and any EMA copy) in place.

    ``nn.Module.compile`` keeps the module and its ``state_dict`` keys (no ``_orig_mod.`` prefix), so checkpoints
    and exported weights have the same layout compiled or not. Where compiling cannot work (see
    :func:`compile_unavailable`) this logs why and the run goes on eagerly. Returns the number of encoders compiled.
    """
    reason = compile_unavailable(on_gpu)
    if reason:
        log.warning("compile=true: torch.compile is unavailable here (%s); running eager", reason)
        return 0
    encoders = [m for m in method.modules() if isinstance(m, Encoder)]
    for encoder in encoders:
        encoder.compile()
    log.info("compile=true: %d encoder(s) compiled on their first steps (a minute or more)", len(encoders))
    return len(encoders)


def compile_unavailable(on_gpu: bool) -> str | None:
    """Why ``torch.compile`` (TorchDynamo + Inductor) cannot run here, or ``None``: Dynamo must support this Python,
    and Inductor needs Triton for GPU kernels or a C++ compiler (``$CXX``, else ``g++``) for CPU ones."""
    if not torch._dynamo.is_dynamo_supported():
        return f"TorchDynamo does not support Python {platform.python_version()} with torch {torch.__version__}"
    if on_gpu and importlib.util.find_spec("triton") is None:
        return "Triton, which Inductor needs for GPU kernels, is not installed"
    if not on_gpu and shutil.which(os.environ.get("CXX", "g++")) is None:
        return f"no C++ compiler {os.environ.get('CXX', 'g++')!r} for Inductor's CPU kernels"
    return None


def default_workers(devices: int) -> int:
    """DataLoader workers per device when unset: the cores left beside each device's training process, at most 8
    (a worker reads whole batches in one memmap pass, so a few feed a GPU step; more only cost memory)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(8, cores // devices - 1))


def build_data(cfg: PretrainConfig, data: str | Path) -> CacheDataModule:
    """The training data of ``cfg``: label knobs come from method configs that have them (supervised)."""
    m = cfg.method
    return CacheDataModule(
        data,
        batch_size=cfg.batch_size,
        train_splits=cfg.train_splits,
        pathologies=getattr(m, "pathologies", ()),
        uncertainty=getattr(m, "uncertainty", "ignore"),
        blank=getattr(m, "blank", "nan"),
        weighted_sampling=METHODS[m.name].cls.label_sampling and getattr(m, "weighted_sampling", False),
        num_workers=default_workers(cfg.devices) if cfg.num_workers is None else cfg.num_workers,
        seed=cfg.seed,
    )


def build_callbacks(cfg: PretrainConfig, run_dir: Path, datamodule: CacheDataModule) -> list[Callback]:
    """Checkpoints to ``RUN/checkpoints/last.ckpt`` every N steps and every epoch, lr logging, online monitor."""
    ckpt_dir = run_dir / LAST_CKPT.parent
    by_steps = ModelCheckpoint(
        ckpt_dir, save_last=True, save_top_k=0, every_n_train_steps=cfg.checkpoint_every_n_steps,
        enable_version_counter=False,
    )
    by_epoch = ModelCheckpoint(
        ckpt_dir, save_last=True, save_top_k=0, every_n_epochs=1, save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    callbacks: list[Callback] = [by_steps, by_epoch, LearningRateMonitor(logging_interval="step")]
    if cfg.progress_bar:  # the bar reads the loss (a device sync) when it refreshes: not every step
        callbacks.append(TQDMProgressBar(refresh_rate=cfg.log_every_n_steps))
    if cfg.monitor.enabled:
        callbacks.append(OnlineMonitor(datamodule.cache, cfg.monitor, image_size=cfg.image_size, seed=cfg.seed,
                                       progress=cfg.progress_bar))
    return callbacks


def build_loggers(run_dir: Path) -> list[Logger]:
    """TensorBoard (``RUN/logs/tensorboard/version_N``) and CSV (``RUN/logs/csv/version_N``); a resume gets N + 1."""
    logs = run_dir / "logs"
    taken = [int(p.name.split("_")[1]) for p in logs.glob("csv/version_*") if p.name.split("_")[1].isdigit()]
    version = f"version_{max(taken, default=-1) + 1}"
    return [TensorBoardLogger(logs, name="tensorboard", version=version), CSVLogger(logs, name="csv", version=version)]


def build_trainer(cfg: PretrainConfig, run_dir: Path, callbacks: Sequence[Callback]) -> pl.Trainer:
    world = cfg.devices * cfg.num_nodes
    strategy = "ddp" if cfg.strategy == "auto" and world > 1 else cfg.strategy
    return pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy,
        precision=cfg.precision,
        sync_batchnorm=cfg.sync_batchnorm,
        max_epochs=-1 if cfg.max_steps > 0 else cfg.max_epochs,
        max_steps=cfg.max_steps,
        gradient_clip_val=cfg.grad_clip,
        deterministic=cfg.deterministic,
        callbacks=list(callbacks),
        logger=build_loggers(run_dir),
        log_every_n_steps=cfg.log_every_n_steps,
        enable_progress_bar=cfg.progress_bar,
        use_distributed_sampler=False,  # the SeededSampler shards itself, the same way on resume
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )


def export(run_dir: Path, module: PretrainModule, cfg: PretrainConfig, datamodule: CacheDataModule) -> None:
    """Write every encoder of the method (the contract with evaluators): ``image`` as ``encoder.safetensors`` +
    ``encoder.json`` at the run root, others in their own folder (:func:`~cxrl.models.save_named_encoder`).

    :func:`~cxrl.models.save_encoder` adds the intensity convention and the cxrl, torch and timm versions.
    """
    meta = {
        "backbone": cfg.backbone,
        "image_size": cfg.image_size,
        "method": cfg.method.name,
        "config": to_dict(cfg),
        "versions": {"lightning": pl.__version__},
        "steps": int(module.global_step),
        "final_loss": float(module.last_loss) if torch.isfinite(module.last_loss) else None,  # None: no step run
        "pathologies": datamodule.pathologies,
        "data": str(datamodule.cache.path),
    }
    for name, encoder in module.method.encoders().items():
        save_named_encoder(run_dir, name, encoder, {**meta, **module.method.export_meta(name)})
    if projections := module.method.projections():
        save_projections(run_dir, projections, {"method": cfg.method.name, "steps": meta["steps"]})


def check_image_size(cfg: PretrainConfig, cache: Cache) -> None:
    """Views are cut from the cache's images: refuse more than ``MAX_UPSAMPLE`` x their side, warn on any upsampling.

    Memory grows with ``image_size`` squared while an upsampled view holds no more detail than the cache.
    """
    side = cache.image_size
    if cfg.image_size > MAX_UPSAMPLE * side:
        raise ConfigError(
            f"image_size={cfg.image_size} is {cfg.image_size / side:.0f}x the {side}-px images of the cache "
            f"{cache.path} (at most {MAX_UPSAMPLE}x); lower image_size or prepare a cache with a larger --size"
        )
    if cfg.image_size > side:
        log.warning("image_size=%d upsamples the %d-px images of the cache %s: views gain no detail; "
                    "prepare the cache at --size %d for full resolution", cfg.image_size, side, cache.path,
                    cfg.image_size)


def resume_command(method: str, data: str | Path, run_dir: Path) -> str:
    """The shell command that continues ``run_dir`` (its config.yaml holds every override)."""
    return shlex.join(["cxrl", "pretrain", method, "--data", str(data), "--out", str(run_dir), "--resume"])


def fit(trainer: pl.Trainer, module: PretrainModule, datamodule: CacheDataModule, ckpt: Path | None,
        resume_hint: str) -> None:
    """``trainer.fit`` without Lightning's noise, whose Ctrl-C says how to resume and raises KeyboardInterrupt
    (Lightning exits instead)."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        with quiet_lightning():
            # weights_only: the resume checkpoint is read with torch's safe loader (tensors and plain data, no code)
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    except SystemExit:
        if not trainer.interrupted:
            raise
        log.warning("interrupted at step %d; continue from the last checkpoint with:\n  %s",
                    trainer.global_step, resume_hint)
        raise KeyboardInterrupt from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after an interrupt


def trained_identity(path: Path) -> tuple[str | None, str | None]:
    """(method name, backbone) a run's ``config.yaml`` was trained with."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: not valid YAML ({e})") from e
    method = data.get("method") if isinstance(data, dict) else None
    return (method or {}).get("name") if isinstance(method, dict) else None, data.get("backbone")


def pretrain(
    method: str,
    data: str | Path,
    out: str | Path,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Pre-train ``method`` on the cache ``data``; returns the run directory ``out`` (see module docstring).

    With ``resume``, the run's own ``config.yaml`` is the base (unless ``config_path`` is given) and training
    continues from ``checkpoints/last.ckpt``. Extra Lightning ``callbacks`` are appended (tests, tooling).
    """
    run_dir = Path(out).expanduser().resolve()
    ckpt = run_dir / LAST_CKPT
    if resume and not ckpt.is_file():
        raise ConfigError(f"--resume: no checkpoint at {ckpt}")
    if not resume and ckpt.exists():
        raise ConfigError(f"{run_dir} already holds a run ({ckpt}); pass --resume or choose another --out")
    if resume and config_path is None:
        config_path = run_dir / "config.yaml"
    cfg = resolve_config(method, config_path, overrides)
    if resume:
        trained = trained_identity(run_dir / "config.yaml")
        for key, old, new in zip(("method", "backbone"), trained, (cfg.method.name, cfg.backbone), strict=True):
            if old != new:
                raise ConfigError(f"--resume: {run_dir} was trained with {key} {old!r}, not {new!r}")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_data(cfg, data)
    check_image_size(cfg, datamodule.cache)
    total_steps, warmup_steps = plan_steps(cfg, datamodule.steps_per_epoch(cfg.devices * cfg.num_nodes))
    encoder = create_encoder(cfg.backbone, in_chans=1, weights=cfg.weights)
    pl_method = create_method(cfg.method, encoder, cfg.image_size, datamodule.targets, datamodule.cache,
                              train_splits=cfg.train_splits, pathologies=datamodule.pathologies, seed=cfg.seed)
    datamodule.use_columns(pl_method.columns, pl_method.column_arrays(datamodule.cache))
    module = PretrainModule(pl_method, cfg, total_steps, warmup_steps, data_identity(datamodule.cache))
    if resume:
        state = read_checkpoint(ckpt)
        check_same_data(state, datamodule.cache, ckpt)
        check_same_model(state, module, ckpt)
        if state.get("global_step", 0) >= total_steps and (run_dir / WEIGHTS_FILE).is_file():
            log.info("--resume: %s already finished its %d steps; encoder in %s", run_dir, total_steps, run_dir)
            return run_dir
    if cfg.compile:
        compile_encoders(pl_method, on_gpu=cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available())
    trainer = build_trainer(cfg, run_dir, [*build_callbacks(cfg, run_dir, datamodule), *callbacks])
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    hint = resume_command(cfg.method.name, datamodule.cache.path, run_dir)
    fit(trainer, module, datamodule, ckpt if resume else None, hint)
    trainer.save_checkpoint(ckpt, weights_only=False)  # collective under DDP: every rank calls it, rank 0 writes
    if trainer.is_global_zero:
        export(run_dir, module, cfg, datamodule)
        pl_method.write_artifacts(run_dir)
        log.info("pre-training done: %d steps, final loss %.4f, encoder in %s", module.global_step,
                 float(module.last_loss), run_dir)
    return run_dir


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """``cxrl pretrain METHOD --data CACHE --out RUN [--config FILE] [--resume] [key=value ...]``."""
    p = subparsers.add_parser(
        "pretrain",
        help=f"pre-train encoders ({method_names()})",
        description="Pre-train an encoder on a cache. Overrides are dotted key=value pairs, e.g. "
        "backbone=resnet18 batch_size=512 devices=4 method.temperature=0.2.",
    )
    p.add_argument("method", help=f"one of {method_names()}")
    p.add_argument("--data", required=True, help="cache folder written by `cxrl prepare`")
    p.add_argument("--out", required=True, help="run folder (config, checkpoints, logs, exported encoder)")
    p.add_argument("--config", default=None, help="YAML config (default: the method's packaged YAML)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.ckpt")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    run_dir = pretrain(args.method, args.data, args.out, args.config, args.overrides, resume=args.resume)
    print(run_dir)
    return 0
