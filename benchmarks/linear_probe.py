"""Linear-probe speed and agreement: cxrl's probe against scikit-learn's logistic regression, on the same features.

``--mode probe`` (default) times what a linear probe is: a fit for every ``C`` of the regularization grid
(``cxrl.evaluate.probe.DEFAULT_C_GRID``) and, per class, the ``C`` with the best validation AUROC. cxrl runs
``fit_linear_probe`` (all classes at once, warm-started along the grid); scikit-learn fits one
``LogisticRegression(warm_start=True)`` per class along the same grid (warm starts make it the strongest
baseline) and selects the same way. ``--mode single`` times one fit at one ``--C``.

Data: a probe-shaped problem (default 8,000 x 512 features, 14 labels, ~30 % of labels missing per class),
features a random projection of a 32-dim latent plus noise, labels thresholded noisy linear functions of the
latent with class prevalences from ~3 % to ~50 %. Both solvers get the same standardized features and the same
``C`` per class; scikit-learn cannot mask labels per class, so it fits ``LogisticRegression`` (lbfgs, the default
solver, its default ``tol``) per class on that class's observed rows, which is what ``OneVsRestClassifier`` would
do class by class. Checks that test macro AUROC differs by at most 0.005; prints both times (best of
``--repeats``) and, last, ``linear_probe ratio=<sklearn seconds / cxrl seconds>``.

Both run on the same number of threads (``--threads``, default 1: torch's intra-op pool and numpy's BLAS via
threadpoolctl). One thread is the robust choice on a shared machine, where a busy core stalls a multi-threaded
GEMM at every barrier and makes timings swing tenfold.

    python benchmarks/linear_probe.py [--rows 8000] [--dims 512] [--labels 14] [--C 0.01] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import interleaved_best_times, machine_line
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from cxrl.evaluate.metrics import auroc
from cxrl.evaluate.probe import DEFAULT_C_GRID, fit_linear_probe, fit_logistic


def make_problem(rows: int, dims: int, labels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardized float32 features ``(2 * rows, dims)`` and NaN-masked labels ``(2 * rows, labels)``."""
    rng = np.random.default_rng(seed)
    n = 2 * rows  # first half trains, second half tests
    latent = rng.normal(size=(n, 32))
    x = latent @ rng.normal(size=(32, dims)) + 2.0 * rng.normal(size=(n, dims))
    logits = latent @ rng.normal(size=(32, labels)) / 4 + 1.5 * rng.normal(size=(n, labels))
    prevalence = np.linspace(0.03, 0.5, labels)
    cut = np.array([np.quantile(logits[:, k], 1 - p) for k, p in enumerate(prevalence)])
    y = (logits > cut).astype(np.float32)
    y[rng.random(y.shape) < 0.3] = np.nan
    x = (x - x[:rows].mean(0)) / x[:rows].std(0)
    return x.astype(np.float32), y


def fit_sklearn(x: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    """Per-class ``LogisticRegression`` on observed rows; returns ``(K, d + 1)`` parameters, bias last."""
    out = []
    for k in range(y.shape[1]):
        keep = ~np.isnan(y[:, k])
        model = LogisticRegression(C=C, max_iter=1000).fit(x[keep], y[keep, k])
        out.append(np.r_[model.coef_[0], model.intercept_])
    return np.asarray(out)


def fit_cxrl(x: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    """cxrl's probe solver on the same standardized features (``tol`` = scikit-learn's default gtol)."""
    return fit_logistic(torch.from_numpy(x), torch.from_numpy(y), C, tol=1e-4).numpy()


def probe_sklearn(x, y, xv, yv, grid: tuple[float, ...]) -> np.ndarray:
    """Per class, warm-started fits along ``grid`` (ascending C), the best validation AUROC kept (ties: smaller C)."""
    out = []
    for k in range(y.shape[1]):
        keep, keep_v = ~np.isnan(y[:, k]), ~np.isnan(yv[:, k])
        model = LogisticRegression(max_iter=1000, warm_start=True)
        best, best_score = None, -np.inf
        for C in sorted(grid):
            model.set_params(C=C).fit(x[keep], y[keep, k])
            score = auroc(yv[keep_v, k : k + 1], model.decision_function(xv[keep_v])[:, None])[0]
            if score > best_score:
                best, best_score = np.r_[model.coef_[0], model.intercept_], score
        out.append(best)
    return np.asarray(out)


def probe_cxrl(x, y, xv, yv, grid: tuple[float, ...]) -> np.ndarray:
    """cxrl's probe; returns ``(K, d + 1)`` parameters in the (already standardized) input space."""
    fitted = fit_linear_probe(x, y, xv, yv, c_grid=grid, device="cpu")
    weight = fitted.weight / fitted.scale
    return np.c_[weight, fitted.bias - weight @ fitted.mean]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8000, help="training rows (as many test rows)")
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--labels", type=int, default=14)
    parser.add_argument("--mode", choices=["probe", "single"], default="probe", help="C grid + selection, or one C")
    parser.add_argument("--C", type=float, default=0.01, help="--mode single: inverse L2 strength (sklearn's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads for both solvers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    x, y = make_problem(args.rows, args.dims, args.labels)
    train, test = slice(0, args.rows), slice(args.rows, None)
    fit_cxrl(x[:256], y[:256], args.C)  # warm-up: thread pools, first-call allocations
    if args.mode == "single":
        fits = {
            "cxrl": lambda: fit_cxrl(x[train], y[train], args.C),
            "sklearn": lambda: fit_sklearn(x[train], y[train], args.C),
        }
    else:  # the test half splits into validation (selection) and test
        valid, test = slice(args.rows, args.rows + args.rows // 2), slice(args.rows + args.rows // 2, None)
        fits = {
            name: (lambda f=f: f(x[train], y[train], x[valid], y[valid], DEFAULT_C_GRID))
            for name, f in (("cxrl", probe_cxrl), ("sklearn", probe_sklearn))
        }
    seconds, thetas = interleaved_best_times(fits, args.repeats)
    scores = {name: x[test] @ th[:, :-1].T + th[:, -1] for name, th in thetas.items()}
    macro = {name: float(np.nanmean(auroc(y[test], s))) for name, s in scores.items()}
    diff = abs(macro["cxrl"] - macro["sklearn"])
    what = f"C={args.C}" if args.mode == "single" else f"C grid {DEFAULT_C_GRID} chosen per class on validation"
    print(f"problem: {args.rows} train rows x {args.dims} dims, {args.labels} labels, {what}, {args.threads} thread(s)")
    print(f"test macro AUROC: cxrl {macro['cxrl']:.5f}  sklearn {macro['sklearn']:.5f}  |diff| {diff:.5f} (<= 0.005)")
    print(f"max |logit difference|: {np.abs(scores['cxrl'] - scores['sklearn']).max():.4f}")
    print(
        f"{args.mode} time (best of {args.repeats}, interleaved): sklearn per-class LogisticRegression "
        f"{seconds['sklearn']:.3f} s, cxrl batched L-BFGS {seconds['cxrl']:.3f} s"
    )
    assert diff <= 0.005, f"macro AUROC differs by {diff:.5f} > 0.005"
    print(machine_line())
    print(f"linear_probe ratio={seconds['sklearn'] / seconds['cxrl']:.2f}")


if __name__ == "__main__":
    main()
