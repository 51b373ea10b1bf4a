"""PyTorch data over a cache: dict batches of the columns a method declares, raw uint8 images, no augmentation
in workers.

Views are made on the device from each sample's seed (``cxrl.transforms``), so what a run learns does not
depend on ``num_workers`` or on the number of processes. The sampler is seeded, shards itself across ranks
and skips what a resumed run already consumed, so a killed-and-resumed run sees the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from cxrl.data.cache import Cache, as_cache
from cxrl.data.labels import apply_uncertainty_policy, label_matrix, present_pathologies
from cxrl.errors import ConfigError, DataError
from cxrl.losses import inverse_frequency_weights

BASE_COLUMNS = ("image", "index", "labels")


class CacheDataset(Dataset):
    """Rows ``rows`` of a cache as dicts of ``columns``: ``image`` uint8 (H, W), ``index`` (the cache row, int64),
    ``labels`` float32 (K,), and any column of ``extra``, a row-aligned ``(N_cache, ...)`` array (e.g. report
    tokens). ``index`` is always there (the engine seeds each sample's views from it)."""

    def __init__(
        self,
        cache: Cache,
        rows: np.ndarray,
        labels: np.ndarray,
        columns: Sequence[str] = BASE_COLUMNS,
        extra: dict[str, np.ndarray] | None = None,
    ) -> None:
        if len(rows) != len(labels):
            raise DataError(f"{len(rows)} rows but {len(labels)} label rows")
        self.extra = dict(extra or {})
        missing = [c for c in columns if c not in BASE_COLUMNS and c not in self.extra]
        if missing:
            raise ConfigError(f"batch column(s) {missing} have no data in the cache at {cache.path}; "
                              f"a cache provides {', '.join(BASE_COLUMNS)} and what the method adds")
        self.columns = tuple(dict.fromkeys(["index", *columns]))
        self.images = cache.images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = torch.as_tensor(labels, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}

    def __getitems__(self, positions: Sequence[int]) -> dict[str, torch.Tensor]:
        """A whole batch (``image`` (B, H, W), ``index`` (B,), ``labels`` (B, K), extra columns (B, ...)); images
        are copied from the memmap in one call, straight into the batch tensor (the DataLoader calls this instead
        of B ``__getitem__``)."""
        positions = np.asarray(positions, dtype=np.int64)
        rows = self.rows[positions]
        batch = {"index": torch.from_numpy(rows)}
        if "image" in self.columns:
            images = torch.empty((len(rows), *self.images.shape[1:]), dtype=torch.uint8)
            if get_worker_info() is not None:  # in a worker: written once, handed to the main process without a copy
                images.share_memory_()
            np.take(self.images, rows, axis=0, out=images.numpy())
            batch["image"] = images
        if "labels" in self.columns:
            batch["labels"] = self.labels[positions]
        for name in self.columns:
            if name in self.extra:
                batch[name] = torch.from_numpy(np.ascontiguousarray(self.extra[name][rows]))
        return {k: batch[k] for k in self.columns}


def already_batched(batch: Any) -> Any:
    """The ``collate_fn`` of loaders over :class:`CacheDataset`, whose ``__getitems__`` returns a made batch."""
    return batch


class SeededSampler(Sampler[int]):
    """Seeded per-epoch order (a permutation, or weighted draws with replacement), sharded across ranks.

    Epoch ``e`` uses ``torch.Generator().manual_seed(seed + e)``, independent of the number of ranks, so the
    first ``k * world_size`` positions of an epoch hold the same samples whatever the process count; rank ``r``
    takes positions ``r, r + world_size, ...`` (as ``DistributedSampler``). ``skip`` drops this rank's first
    positions once (a resumed epoch).
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: np.ndarray | None = None,
    ) -> None:
        if n <= 0:
            raise DataError("no training samples (check train_splits)")
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)

    def epoch_order(self) -> torch.Tensor:
        """All ranks' positions of the current epoch, padded to a multiple of ``world_size``."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        pad = len(self) * self.world_size - self.n
        return torch.cat([order, order[:pad]])

    def __iter__(self) -> Iterator[int]:
        mine = self.epoch_order()[self.rank :: self.world_size].tolist()
        skip, self.skip = self.skip, 0
        return iter(mine[skip:])


class ResumableLoader(DataLoader):
    """A DataLoader whose position within an epoch is saved in Lightning checkpoints.

    Lightning stores ``state_dict()`` of loaders that have one and calls ``load_state_dict`` before the first
    ``iter()`` of a resumed fit; the sampler then skips the batches already trained on.
    """

    sampler: SeededSampler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_yielded = 0
        self._resume_epoch: int | None = None

    def __iter__(self) -> Iterator[Any]:
        resumed = self._resume_epoch is not None and self._resume_epoch == self.sampler.epoch
        self.batches_yielded = self.batches_yielded if resumed else 0
        if resumed:
            self.sampler.skip = self.batches_yielded * self.batch_size
        self._resume_epoch = None
        for batch in super().__iter__():
            self.batches_yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self.batches_yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_epoch, self.batches_yielded = int(state["epoch"]), int(state["batches"])


def training_rows(records: pd.DataFrame, splits: Sequence[str]) -> np.ndarray:
    """Positional indices of the records whose split is in ``splits``."""
    rows = np.flatnonzero(records["split"].isin(list(splits)).to_numpy())
    if len(rows) == 0:
        found = sorted(records["split"].dropna().unique())
        raise DataError(f"no records with split in {list(splits)}; the cache has splits {found}")
    return rows


class CacheDataModule(pl.LightningDataModule):
    """The training loader over a cache: split filter, label policy, seeded (optionally weighted) sampler.

    ``batch_size`` is the GLOBAL batch; each rank loads ``batch_size / world_size`` (an error if not divisible).
    """

    def __init__(
        self,
        cache: str | Cache,
        *,
        batch_size: int,
        train_splits: Sequence[str] = ("train",),
        pathologies: Sequence[str] = (),
        uncertainty: str = "ignore",
        blank: str = "nan",
        weighted_sampling: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.cache = as_cache(cache)
        self.rows = training_rows(self.cache.records, train_splits)
        records = self.cache.records.iloc[self.rows]
        self.pathologies = list(pathologies) or present_pathologies(records)
        unknown = sorted(set(self.pathologies) - set(records.columns))
        if unknown:
            raise ConfigError(f"pathologies {unknown} are not columns of the cache at {self.cache.path}")
        self.targets = apply_uncertainty_policy(label_matrix(records, self.pathologies), uncertainty, blank=blank,
                                                seed=seed)
        self.dataset = CacheDataset(self.cache, self.rows, self.targets)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.weights = inverse_frequency_weights(self.targets).numpy() if weighted_sampling else None

    def use_columns(self, columns: Sequence[str], extra: dict[str, np.ndarray]) -> None:
        """Batches carry ``columns`` (a method's), the ones beyond :data:`BASE_COLUMNS` read from ``extra``."""
        self.dataset = CacheDataset(self.cache, self.rows, self.targets, columns, extra)

    def per_device_batch(self, world_size: int) -> int:
        if self.batch_size % world_size:
            raise ConfigError(
                f"batch_size={self.batch_size} is the global batch and must be divisible by "
                f"devices x num_nodes = {world_size}"
            )
        per_device = self.batch_size // world_size
        if math.ceil(len(self.dataset) / world_size) < per_device:
            raise DataError(
                f"{len(self.dataset)} training images cannot fill one global batch of {self.batch_size}; "
                "lower batch_size or add train_splits"
            )
        return per_device

    def steps_per_epoch(self, world_size: int) -> int:
        return math.ceil(len(self.dataset) / world_size) // self.per_device_batch(world_size)

    def train_dataloader(self) -> ResumableLoader:
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = SeededSampler(len(self.dataset), seed=self.seed, rank=rank, world_size=world, weights=self.weights)
        return ResumableLoader(
            self.dataset,
            batch_size=self.per_device_batch(world),
            sampler=sampler,
            drop_last=True,
            collate_fn=already_batched,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),  # pinned uint8 batches: Lightning copies them non_blocking
            persistent_workers=self.num_workers > 0,
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Every column goes to the device but ``index``, which stays on the CPU, where the per-sample view
        seeds are made (``cxrl.transforms.seeds_for``), so a step never waits to copy it back."""
        moved = super().transfer_batch_to_device({k: v for k, v in batch.items() if k != "index"}, device,
                                                 dataloader_idx)
        return {**moved, "index": batch["index"]}
