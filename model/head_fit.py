"""The genre head's fit: a standardised multinomial logistic regression whose labels may be sets.

A clip whose label is a set of candidate genres (more-genres' "Pop/Rock" = pop, rock or metal) is
learned as "any of these": its loss is -log of the summed probability of its candidates, so the head
is free to share that probability among them as the other clips teach it. With one candidate per
clip this is the ordinary cross-entropy (scikit-learn's LogisticRegression finds the same optimum).

Minimised, as scikit-learn does: 0.5 * |W|^2 + c * sum_i weight_i * loss_i over standardised features
(the biases unpenalised), by scipy's L-BFGS from zeros: a fixed problem, no seed, the same answer
every run. The standardisation is folded into the returned kernel and bias.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

ABSENT_BIAS = -1e4   # a genre no clip could be is never predicted


def set_loss(logits: np.ndarray, candidates: np.ndarray, weight: np.ndarray) -> tuple[float, np.ndarray]:
    """sum_i weight_i * -log(sum of softmax(logits_i) over candidates_i), and its gradient in the
    logits. `candidates` is a (n, genres) boolean mask, at least one True per row."""
    log_all = logsumexp(logits, axis=1)
    masked = np.where(candidates, logits, -np.inf)
    log_any = logsumexp(masked, axis=1)
    loss = float(np.sum(weight * (log_all - log_any)))
    p = np.exp(logits - log_all[:, None])                        # softmax over every genre
    q = np.where(candidates, np.exp(masked - log_any[:, None]), 0.0)   # ... over the candidates
    return loss, weight[:, None] * (p - q)


def fit_set_softmax(x: np.ndarray, candidates: np.ndarray, weight: np.ndarray, c: float,
                    max_iter: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Kernel (d, genres) and bias (genres,) of the head on raw features `x` (n, d), fitted on
    standardised features (weighted mean and deviation) with inverse L2 strength `c`."""
    x, candidates, weight = np.asarray(x, np.float64), np.asarray(candidates, bool), np.asarray(weight, np.float64)
    if not candidates.any(axis=1).all():
        raise ValueError("every row needs at least one candidate genre")
    mean = np.average(x, axis=0, weights=weight)
    scale = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=weight))
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    present = candidates.any(axis=0)
    k, d = int(present.sum()), x.shape[1]
    cand = candidates[:, present]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d * k].reshape(d, k), theta[d * k:]
        loss, grad_logits = set_loss(z @ w + b, cand, weight)
        grad_w = c * (z.T @ grad_logits) + w
        return c * loss + 0.5 * float(np.sum(w * w)), np.r_[grad_w.ravel(), c * grad_logits.sum(axis=0)]

    result = minimize(objective, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "maxcor": 20, "gtol": 1e-6, "ftol": 1e-12})
    w, b = result.x[:d * k].reshape(d, k), result.x[d * k:]
    kernel = np.zeros((d, len(present)))
    bias = np.full(len(present), ABSENT_BIAS)
    kernel[:, present] = w / scale[:, None]
    bias[present] = b - mean @ kernel[:, present]
    return kernel, bias
