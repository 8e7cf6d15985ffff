"""Gaussian naive Bayes: Bayes' rule with per-class, per-feature Gaussian likelihoods and class priors.

The classifier of Duda and Hart, "Pattern Classification and Scene Analysis", 1973 (the "naive" independence
assumption), in the form of scikit-learn's ``GaussianNB`` (Pedregosa et al., "Scikit-learn: Machine Learning
in Python", JMLR 12, 2011), which the Fashion-MNIST paper's benchmark used (Xiao, Rasul, Vollgraf,
arXiv:1708.07747, Table 3: 0.511 test accuracy on raw pixels).

For a sample ``x`` with ``D`` features, class ``c`` scores

    log P(c) + sum_d log N(x_d; mu_cd, var_cd + eps)

(the joint log-likelihood) and the prediction is its argmax; ``predict_proba`` normalises the scores with a
log-sum-exp. Everything is computed in float64 and in log space: the likelihood of 784 pixels underflows
any float.

Variance smoothing, as scikit-learn's ``var_smoothing``: ``eps = var_smoothing * max_d var(x_d)`` with
``var`` the variance of each feature over the whole training set and ``var_smoothing = 1e-9``. It keeps
features that are constant within a class (a background pixel always 0) from a zero variance, which would
give an infinite log-likelihood. Variances are the maximum-likelihood ones (divided by ``n``, not ``n - 1``),
also as scikit-learn. Priors default to the class frequencies.

Departure: a class with no training sample is refused (scikit-learn would fail later with a division by
zero); pass the data of every class, or drop the class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from imgcls.classic.inputs import as_labels, as_matrix
from imgcls.errors import ConfigError, DataError

__all__ = ["GaussianNB"]


class GaussianNB:
    """Gaussian naive Bayes (module docstring).

    Args:
        var_smoothing: fraction of the largest feature variance added to every variance.
        priors: class prior probabilities (default: class frequencies in the training set).
        device: where the arithmetic runs.

    After :meth:`fit`: ``theta`` ``(C, D)`` class means, ``var`` ``(C, D)`` smoothed variances,
    ``class_prior`` ``(C,)``, ``epsilon`` the variance added; all float64.
    """

    def __init__(
        self,
        var_smoothing: float = 1e-9,
        priors: Sequence[float] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if not var_smoothing >= 0:
            raise ConfigError(f"var_smoothing must be >= 0, got {var_smoothing}")
        self.var_smoothing = float(var_smoothing)
        self.priors = None if priors is None else [float(p) for p in priors]
        self.device = torch.device(device)
        self.theta: torch.Tensor | None = None

    def fit(
        self,
        x: Any,
        y: Any,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> GaussianNB:
        """Estimate per-class means, variances and priors; every class in ``0..C-1`` needs a sample."""
        xt = as_matrix(x, "training data").to(self.device)
        yt, c = as_labels(y, xt.shape[0], num_classes)
        if xt.shape[0] == 0:
            raise DataError("the training set is empty")
        yt = yt.to(self.device)
        counts = torch.bincount(yt, minlength=c)
        if bool((counts == 0).any()):
            empty = int((counts == 0).nonzero()[0, 0])
            name = class_names[empty] if class_names is not None and empty < len(class_names) else str(empty)
            raise DataError(
                f"class '{name}' has no training sample: naive Bayes cannot estimate its mean and variance; "
                "add samples of it or drop the class"
            )
        n, d = xt.shape
        # Per class: mean and (maximum-likelihood) variance in float64, one class's rows at a time.
        order = torch.argsort(yt, stable=True)
        theta = torch.empty(c, d, dtype=torch.float64, device=self.device)
        var = torch.empty(c, d, dtype=torch.float64, device=self.device)
        for cls, rows in enumerate(torch.split(order, counts.tolist())):
            var[cls], theta[cls] = torch.var_mean(xt[rows].double(), dim=0, correction=0)
        # The variance over all samples from the class statistics (law of total variance): no extra pass.
        weight = (counts.double() / n)[:, None]
        all_mean = (weight * theta).sum(0)
        all_var = (weight * (var + (theta - all_mean).square())).sum(0)
        self.epsilon = self.var_smoothing * float(all_var.max())
        self.theta = theta
        self.var = var + self.epsilon
        if self.priors is not None:
            prior = torch.tensor(self.priors, dtype=torch.float64, device=self.device)
            if prior.shape != (c,):
                raise ConfigError(f"priors needs one value per class ({c}), got {len(self.priors)}")
            if bool((prior <= 0).any()) or not math.isclose(float(prior.sum()), 1.0, rel_tol=1e-6):
                raise ConfigError("priors must be positive and sum to 1")
            self.class_prior = prior
        else:
            self.class_prior = counts.double() / n
        self.num_classes = c
        if bool((self.var == 0).any()):
            raise DataError(
                "a feature has zero variance within a class and nothing lifts it (var_smoothing=0, or every "
                "feature is constant over the training set): use var_smoothing > 0, or drop constant features"
            )
        # log N(x; mu, var) = -0.5 log(2 pi var) - 0.5 (x - mu)^2 / var; the first term per class, once
        self._log_norm = torch.log(self.class_prior) - 0.5 * torch.log(2 * math.pi * self.var).sum(1)
        return self

    @property
    def n_features(self) -> int:
        self._check_fitted()
        return self.theta.shape[1]

    def _check_fitted(self) -> None:
        if self.theta is None:
            raise ConfigError("this GaussianNB is not fitted: call fit(x, y) first")

    def joint_log_likelihood(self, x: Any) -> torch.Tensor:
        """``log P(c) + log P(x | c)`` per sample and class ``(Q, C)`` float64."""
        self._check_fitted()
        q = as_matrix(x, "query data").to(self.device)
        if q.shape[1] != self.theta.shape[1]:
            raise DataError(
                f"queries have {q.shape[1]} features but the training data has {self.theta.shape[1]}: "
                "prepare both the same way (same image size, same feature extractor)"
            )
        inv_var = 1.0 / self.var
        out = torch.empty(q.shape[0], self.num_classes, dtype=torch.float64, device=self.device)
        # Direct (x - mu)^2 / var per class, as scikit-learn: the expanded form x^2/var - 2 x mu/var + ...
        # cancels badly where var is as small as epsilon.
        for i in range(0, q.shape[0], 2048):
            xc = q[i : i + 2048].double()
            for c in range(self.num_classes):
                out[i : i + 2048, c] = ((xc - self.theta[c]).square_() * inv_var[c]).sum(1)
        return self._log_norm - 0.5 * out

    def predict_log_proba(self, x: Any) -> torch.Tensor:
        jll = self.joint_log_likelihood(x)
        return jll - torch.logsumexp(jll, dim=1, keepdim=True)

    def predict_proba(self, x: Any) -> torch.Tensor:
        """Posterior class probabilities ``(Q, C)`` float64."""
        return self.predict_log_proba(x).exp()

    def predict_topk(self, x: Any, topk: int = 5) -> torch.Tensor:
        """The ``topk`` most probable classes ``(Q, topk)``, best first (ties: smallest label)."""
        self._check_fitted()
        if not 1 <= topk <= self.num_classes:
            raise ConfigError(f"topk must be in 1..{self.num_classes} (the class count), got {topk}")
        jll = self.joint_log_likelihood(x)
        return torch.argsort(-jll, dim=1, stable=True)[:, :topk]

    def predict(self, x: Any) -> torch.Tensor:
        """Most probable class per sample ``(Q,)`` int64."""
        return self.joint_log_likelihood(x).argmax(1)

    def score(self, x: Any, y: Any) -> float:
        """Top-1 accuracy on ``(x, y)``."""
        pred = self.predict(x)
        yt, _ = as_labels(y, pred.shape[0])
        return float((pred.cpu() == yt).double().mean()) if len(yt) else math.nan
