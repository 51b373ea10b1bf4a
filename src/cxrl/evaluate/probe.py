"""Linear probe: multi-label L2 logistic regression on frozen features, all classes solved at once in torch.

Each class ``k`` has its own problem over the rows where its label is known (NaN = masked)::

    f_k(w, b) = (1 / n_k) * sum_i BCE(x_i . w + b, y_ik) + ||w||^2 / (2 C_k n_k)

which has the same minimizer as scikit-learn's ``LogisticRegression(C=C_k)`` (C * summed log-loss + ||w||^2 / 2,
bias not penalized) fitted on that class's observed rows. Features are standardized with training statistics.
The K problems are solved together by a batched L-BFGS (Nocedal & Wright 2006, Alg. 7.4 two-loop recursion,
Armijo backtracking) with per-class histories, step sizes and stopping, so one ``(n, d) x (d, K)`` matmul serves
every class per iteration; its initial inverse Hessian comes from the eigendecomposition of ``x^T x / n``
(computed once per feature set), which cuts the iterations on correlated features by 2-3x. ``C`` is chosen per
class on the validation split by AUROC over a grid walked from strong to weak regularization with warm starts; the
L-BFGS curvature pairs travel along the grid too (a change of ridge shifts every ``y`` by an exact, known amount),
which takes the grid from ~70 to ~33 passes over the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cxrl.evaluate.metrics import auroc

DEFAULT_C_GRID: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
HISTORY = 10  # L-BFGS curvature pairs kept per class


@dataclass
class LinearProbe:
    """A fitted probe: ``logits = ((x - mean) / scale) @ weight.T + bias``; ``C`` per class as chosen."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    C: np.ndarray
    valid_auroc: np.ndarray  # (len(c_grid), K) validation AUROC of every grid point, NaN if not computed

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(N, K)``."""
        return ((x - self.mean) / self.scale) @ self.weight.T + self.bias

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, K)``."""
        return 1 / (1 + np.exp(-self.decision_function(x)))


class _Objective:
    """Value and gradient of all K regularized masked log-losses at once; parameters are ``(K, d + 1)``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)
        self.xt = self.x.T.contiguous()  # (d + 1, n): the gradient's GEMM is ~2x faster with K << n on CPU
        self.mask = (~torch.isnan(y)).to(x.dtype)
        self.y = torch.nan_to_num(y, nan=0.0)
        self.n = self.mask.sum(0).clamp_min(1)
        self.prevalence = (self.y * self.mask).sum(0) / self.n  # of the observed labels, per class
        self.penalized = torch.ones(self.x.shape[1], dtype=x.dtype, device=x.device)
        self.penalized[-1] = 0
        self.ridge = torch.zeros_like(self.n)
        self.last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def zeros(self) -> torch.Tensor:
        """Parameters ``(K, d + 1)`` of zeros, bias last."""
        return self.x.new_zeros(self.y.shape[1], self.x.shape[1])

    def set_C(self, C: float | torch.Tensor) -> None:
        """Regularization per class (scikit-learn's ``C``); the bias column is not penalized."""
        self.ridge = 1 / (torch.as_tensor(C, dtype=self.n.dtype, device=self.n.device) * self.n)

    def data_term(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean masked log-loss per class and its gradient; the last result is kept, since a warm start along
        the ``C`` grid asks again for the point where the previous fit ended."""
        if self.last is not None and torch.equal(self.last[0], theta):
            return self.last[1:]
        z = self.x @ theta.T
        loss = F.binary_cross_entropy_with_logits(z, self.y, weight=self.mask, reduction="none").sum(0) / self.n
        residual = (torch.sigmoid(z) - self.y).mul_(self.mask).div_(self.n)
        grad = (self.xt @ residual).T
        self.last = (theta.clone(), loss, grad)
        return loss, grad

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, grad = self.data_term(theta)
        w = theta * self.penalized
        return loss + 0.5 * self.ridge * (w * w).sum(1), grad + self.ridge[:, None] * w


@dataclass
class Spectrum:
    """Eigendecomposition of the standardized training features' second moment ``x^T x / n``."""

    values: torch.Tensor  # (d,)
    vectors: torch.Tensor  # (d, d), columns

    @classmethod
    def of(cls, x: torch.Tensor, max_rows: int = 4096) -> Spectrum:
        """From at most ``max_rows`` evenly strided rows: a preconditioner needs no more precision."""
        rows = x[:: max(1, len(x) // max_rows)]
        values, vectors = torch.linalg.eigh(rows.T @ rows / max(len(rows), 1))
        return cls(values.clamp_min(0), vectors)


def _preconditioner(spectrum: Spectrum, objective: _Objective):
    """``q -> H0 q`` with ``H0 = (c_k x^T x / n + ridge_k I)^-1`` per class: the logistic Hessian with its weights
    ``p(1 - p)`` frozen at the label prevalence ``c_k = p_k (1 - p_k)``, inverted in the eigenbasis (the bias
    decouples because the features are centred). It replaces L-BFGS's scalar ``gamma I`` as initial inverse Hessian,
    which takes poorly conditioned (correlated) features from tens of iterations to a handful."""
    c = (objective.prevalence * (1 - objective.prevalence)).clamp_min(1e-3)
    inverse = 1 / (c[:, None] * spectrum.values + objective.ridge[:, None])
    v = spectrum.vectors

    def apply(q: torch.Tensor) -> torch.Tensor:
        return torch.cat([((q[:, :-1] @ v) * inverse) @ v.T, q[:, -1:] / c[:, None]], dim=1)

    return apply


@dataclass
class Curvature:
    """L-BFGS memory per class: the last ``history`` pairs ``s = theta' - theta``, ``y = grad' - grad`` (Nocedal &
    Wright 2006, Sec. 7.2), kept across fits of the same data so that the next ``C`` of a grid starts with the
    curvature already learnt."""

    s: torch.Tensor  # (history, K, p)
    y: torch.Tensor  # (history, K, p)
    rho: torch.Tensor  # (history, K): 1 / s.y, 0 for a pair without positive curvature
    gamma: torch.Tensor  # (K,): s.y / y.y of the newest good pair (eq. 7.20)
    pairs: int = 0

    @classmethod
    def empty(cls, history: int, like: torch.Tensor) -> Curvature:
        K, p = like.shape
        return cls(
            like.new_zeros(history, K, p), like.new_zeros(history, K, p), like.new_zeros(history, K), like.new_ones(K)
        )

    def push(self, s: torch.Tensor, y: torch.Tensor) -> None:
        slot = self.pairs % len(self.rho)
        self.s[slot], self.y[slot] = s, y
        self.rho[slot] = _inverse_curvature(s, y)
        self._update_gamma(slot)
        self.pairs += 1

    def add_ridge(self, delta: torch.Tensor, penalized: torch.Tensor) -> None:
        """The objective gained ``delta_k ||w_k||^2 / 2`` per class: every ``y`` gains ``delta_k s_w`` exactly, so
        ``rho`` and ``gamma`` are recomputed from the shifted pairs (a pair rejected when pushed stays rejected)."""
        self.y += delta[None, :, None] * self.s * penalized
        self.rho = torch.where(self.rho > 0, _inverse_curvature(self.s, self.y), torch.zeros_like(self.rho))
        for slot in reversed(self._newest_first()):
            self._update_gamma(slot)

    def _update_gamma(self, slot: int) -> None:
        """``gamma = s.y / y.y`` (eq. 7.20) from pair ``slot``, for the classes where it has positive curvature."""
        yy = _dot(self.y[slot], self.y[slot])
        self.gamma = torch.where(self.rho[slot] > 0, 1 / (self.rho[slot] * yy).clamp_min(1e-20), self.gamma)

    def _newest_first(self) -> list[int]:
        history = len(self.rho)
        return [(self.pairs - 1 - j) % history for j in range(min(self.pairs, history))]

    def apply(self, grad: torch.Tensor, precondition=None) -> torch.Tensor:
        """``H_k grad_k`` for every class from the stored pairs (two-loop recursion, Alg. 7.4), newest first."""
        slots = self._newest_first()
        q = grad.clone()
        alphas = []
        for i in slots:
            a = self.rho[i] * _dot(self.s[i], q)
            q -= a[:, None] * self.y[i]
            alphas.append(a)
        r = self.gamma[:, None] * q if precondition is None else precondition(q)
        for i, a in zip(reversed(slots), reversed(alphas), strict=True):
            b = self.rho[i] * _dot(self.y[i], r)
            r += (a - b)[:, None] * self.s[i]
        return r


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _inverse_curvature(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``rho = 1 / s.y`` where the pair has positive curvature (``s.y > 1e-10``), else 0."""
    sy = _dot(s, y)
    return torch.where(sy > 1e-10, 1 / sy.clamp_min(1e-10), torch.zeros_like(sy))


def batched_lbfgs(
    objective,
    theta: torch.Tensor,
    max_iter: int = 500,
    tol: float = 1e-4,
    history: int = HISTORY,
    precondition=None,
    memory: Curvature | None = None,
) -> tuple[torch.Tensor, int]:
    """Minimize K independent smooth problems ``objective(theta (K, p)) -> (values (K,), grads (K, p))``.

    ``precondition(q)`` applies an initial inverse Hessian (default: Nocedal & Wright's scaled identity,
    eq. 7.20). ``memory`` (updated in place) carries curvature pairs in and out. Class ``k`` stops when
    ``max |grad_k| <= tol`` (scikit-learn's ``gtol``) or its value stops decreasing relatively (``1e-7``).
    Returns the solution and the number of iterations run.
    """
    memory = memory if memory is not None else Curvature.empty(history, theta)
    value, grad = objective(theta)
    active = grad.abs().amax(1) > tol
    iterations = 0
    while active.any() and iterations < max_iter:
        iterations += 1
        direction = -memory.apply(grad, precondition)
        descent = _dot(grad, direction)
        bad = descent >= 0  # lost curvature information: restart from steepest descent
        direction[bad], descent[bad] = -grad[bad], -_dot(grad[bad], grad[bad])
        direction[~active] = 0
        new_theta, new_value, new_grad = _armijo(objective, theta, value, grad, direction, descent, active)
        memory.push(new_theta - theta, new_grad - grad)
        stalled = (value - new_value) <= 1e-7 * torch.maximum(value.abs(), new_value.abs()).clamp_min(1)
        theta, value, grad = new_theta, new_value, new_grad
        active = active & (grad.abs().amax(1) > tol) & ~stalled
    return theta, iterations


def _armijo(objective, theta, value, grad, direction, descent, active, c1: float = 1e-4, max_halvings: int = 30):
    """Per-class backtracking from step 1 until ``f(theta + t d) <= f + c1 t g.d``; inactive classes stay put."""
    step = torch.where(active, torch.ones_like(value), torch.zeros_like(value))
    pending = active.clone()
    new_theta, new_value, new_grad = theta.clone(), value.clone(), grad.clone()
    for _ in range(max_halvings):
        trial = theta + step[:, None] * direction
        t_value, t_grad = objective(trial)
        accept = pending & (t_value <= value + c1 * step * descent)
        new_theta[accept], new_value[accept], new_grad[accept] = trial[accept], t_value[accept], t_grad[accept]
        pending &= ~accept
        if not pending.any():
            break
        step = torch.where(pending, step * 0.5, step)
    return new_theta, new_value, new_grad


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    C: float | torch.Tensor,
    init: torch.Tensor | None = None,
    max_iter: int = 500,
    tol: float = 1e-4,
    spectrum: Spectrum | None = None,
) -> torch.Tensor:
    """Fit K masked L2 logistic regressions on (already standardized) ``x`` ``(n, d)``, ``y`` ``(n, K)``.

    Returns ``(K, d + 1)`` parameters, bias last. ``C`` is a scalar or one value per class. ``spectrum``
    (:meth:`Spectrum.of` ``x``) may be passed to share it between fits on the same features.
    """
    objective = _Objective(x, y)
    return _solve(objective, C, init, spectrum or Spectrum.of(x), max_iter, tol)


def _solve(
    objective: _Objective,
    C,
    init: torch.Tensor | None,
    spectrum: Spectrum,
    max_iter: int,
    tol: float,
    memory: Curvature | None = None,
):
    """Fit at regularization ``C``, from ``init`` or from the intercept-only solution (the labels' log-odds);
    ``memory`` from the previous ``C`` on the same objective is shifted to the new ridge and reused."""
    previous_ridge = objective.ridge
    objective.set_C(C)
    if memory is not None:
        memory.add_ridge(objective.ridge - previous_ridge, objective.penalized)
    if init is None:
        theta = objective.zeros()
        theta[:, -1] = torch.logit(objective.prevalence.clamp(1e-4, 1 - 1e-4))
    else:
        theta = init.clone()
    precondition = _preconditioner(spectrum, objective)
    theta, _ = batched_lbfgs(objective, theta, max_iter=max_iter, tol=tol, precondition=precondition, memory=memory)
    return theta


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as given to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def fit_linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    valid_x: np.ndarray,
    valid_y: np.ndarray,
    c_grid: tuple[float, ...] = DEFAULT_C_GRID,
    device: str = "auto",
    max_iter: int = 500,
    tol: float = 1e-4,
) -> LinearProbe:
    """Fit the probe on train for every ``C`` in ``c_grid`` (warm-started) and keep, per class, the ``C``
    with the best validation AUROC (ties and undefined AUROC: the strongest regularization)."""
    dev = resolve_device(device)
    mean = train_x.mean(0)
    scale = train_x.std(0)
    scale[scale < 1e-8] = 1.0
    as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=dev)  # noqa: E731
    x, y = as_t((train_x - mean) / scale), as_t(train_y)
    xv = as_t((valid_x - mean) / scale)
    grid = sorted(c_grid)
    thetas, scores = [], np.full((len(grid), train_y.shape[1]), np.nan)
    theta, spectrum, objective = None, Spectrum.of(x), _Objective(x, y)
    memory = Curvature.empty(HISTORY, objective.zeros())
    for g, C in enumerate(grid):
        theta = _solve(objective, C, theta, spectrum, max_iter, tol, memory)
        thetas.append(theta)
        valid_logits = (xv @ theta[:, :-1].T + theta[:, -1]).cpu().numpy()
        scores[g] = auroc(valid_y, valid_logits)
    best = np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=0)
    chosen = torch.stack([thetas[b][k] for k, b in enumerate(best)]).cpu().numpy().astype(np.float64)
    return LinearProbe(
        mean=mean, scale=scale, weight=chosen[:, :-1], bias=chosen[:, -1], C=np.asarray(grid)[best], valid_auroc=scores
    )
