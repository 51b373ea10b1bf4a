"""How hard is the phantom? A raw-pixel linear probe vs a small supervised CNN, macro AUROC on common findings.

Renders ``--n`` phantoms (in memory, patient-disjoint 80/20 split, true labels), then
1. logistic regression on standardized raw pixels downsampled to 32x32;
2. a small CNN trained from scratch for ``--minutes`` on 64x64 images.
The phantom is useful when (1) is clearly below (2): findings are visual structures, not global intensity.

    .venv/bin/python scripts/phantom_difficulty.py [--n 6000] [--size 128] [--minutes 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import cv2
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn
from tqdm.auto import tqdm

from cxrl.data.phantom import plan_dataset, render
from cxrl.evaluate.metrics import auroc

TASKS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion", "Pneumothorax",
         "Lung Opacity", "Support Devices")


def _render_chunk(args: tuple[list, int, int]) -> np.ndarray:
    specs, size, seed = args
    cv2.setNumThreads(1)
    return np.stack([cv2.resize(render(s, size, seed).image, (64, 64), interpolation=cv2.INTER_AREA) for s in specs])


def make_data(n: int, size: int, seed: int, workers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64x64 uint8 images, (n, K) true labels and the patient of each image."""
    specs = plan_dataset(n, seed=seed)
    chunks = [(specs[i : i + 64], size, seed) for i in range(0, n, 64)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        images = np.concatenate(list(tqdm(pool.imap(_render_chunk, chunks), total=len(chunks), desc="render")))
    labels = np.array([[truth[t] for t in TASKS] for truth in (s.true_labels() for s in specs)], np.float32)
    return images, labels, np.array([s.patient for s in specs])


def pixel_probe(x_train, y_train, x_test) -> np.ndarray:
    def flat(x):
        return np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA) for im in x]).reshape(len(x), -1)

    train = flat(x_train)
    scaler = StandardScaler().fit(train)
    a, b = scaler.transform(train), scaler.transform(flat(x_test))
    scores = [LogisticRegression(C=0.01, max_iter=500).fit(a, y_train[:, k]).decision_function(b)
              for k in range(y_train.shape[1])]
    return np.stack(scores, 1)


def small_cnn(k: int) -> nn.Module:
    """Four conv stages (16-32-64-128 channels, two convs in the last two), global average pooling."""
    layers, c = [], 1
    for width, convs in ((16, 1), (32, 1), (64, 2), (128, 2)):
        for _ in range(convs):
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c = width
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, k))


def train_cnn(x_train, y_train, x_test, minutes: float, seed: int) -> np.ndarray:
    torch.manual_seed(seed)

    def tensor(x):
        return (torch.from_numpy(x).float()[:, None] / 255 - 0.5) / 0.25

    xt, yt, xs = tensor(x_train), torch.from_numpy(y_train), tensor(x_test)
    model = small_cnn(y_train.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    deadline, epoch = time.monotonic() + 60 * minutes, 0
    while time.monotonic() < deadline:
        model.train()
        for idx in torch.randperm(len(xt)).split(128):
            shift = tuple(int(v) for v in torch.randint(-4, 5, (2,)))
            loss = loss_fn(model(torch.roll(xt[idx], shift, dims=(2, 3))), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch += 1
        print(f"cnn epoch {epoch} loss {loss.item():.3f}", flush=True)
    model.eval()
    with torch.no_grad():
        return torch.cat([model(b) for b in xs.split(512)]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--size", type=int, default=128, help="render size before downsampling to 64")
    parser.add_argument("--minutes", type=float, default=4.0, help="CNN training budget")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    images, labels, patients = make_data(args.n, args.size, args.seed, args.workers)
    test = (patients % 5) == 0
    print(f"{(~test).sum()} train / {test.sum()} test images; prevalence "
          + ", ".join(f"{t} {p:.2f}" for t, p in zip(TASKS, labels.mean(0), strict=True)))
    results = {}
    for name, scores in (
        ("raw-pixel logistic regression (32x32)", pixel_probe(images[~test], labels[~test], images[test])),
        (f"small CNN ({args.minutes:g} min, 64x64)", train_cnn(images[~test], labels[~test], images[test],
                                                             args.minutes, args.seed)),
    ):
        per = auroc(labels[test], scores)
        results[name] = float(per.mean())
        print(f"{name}: macro AUROC {results[name]:.3f}  (" + ", ".join(
            f"{t} {a:.2f}" for t, a in zip(TASKS, per, strict=True)) + ")")
    pixel, cnn = results.values()
    print(f"phantom_difficulty pixel_auroc={pixel:.3f} cnn_auroc={cnn:.3f} gap={cnn - pixel:.3f}")


if __name__ == "__main__":
    main()
