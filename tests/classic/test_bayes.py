"""Gaussian naive Bayes against scikit-learn's GaussianNB; the errors a user can cause."""

from __future__ import annotations

import numpy as np
import pytest

from imgcls.classic import GaussianNB
from imgcls.errors import ConfigError, DataError


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(3, 8)) * 2
    y = rng.integers(0, 3, 300)
    x = means[y] + rng.normal(size=(300, 8)) * rng.uniform(0.5, 2, 8)
    x[y == 1, 3] = 7.0  # constant within a class: only var_smoothing keeps its variance above 0
    xq = means[rng.integers(0, 3, 90)] + rng.normal(size=(90, 8))
    return x, y, xq


def test_matches_scikit_learn() -> None:
    from sklearn.naive_bayes import GaussianNB as SkGNB

    x, y, xq = _data()
    sk = SkGNB().fit(x, y)
    ours = GaussianNB().fit(x, y)
    np.testing.assert_allclose(ours.theta.numpy(), sk.theta_, rtol=1e-12)
    np.testing.assert_allclose(ours.var.numpy(), sk.var_, rtol=1e-9)
    assert ours.epsilon == pytest.approx(sk.epsilon_, rel=1e-12)
    np.testing.assert_array_equal(ours.predict(xq).numpy(), sk.predict(xq))
    np.testing.assert_allclose(ours.predict_proba(xq).numpy(), sk.predict_proba(xq), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(
        ours.predict_log_proba(xq).numpy(), sk.predict_log_proba(xq), rtol=1e-9, atol=1e-6
    )


def test_matches_scikit_learn_on_digit_pixels() -> None:
    from sklearn.datasets import load_digits
    from sklearn.naive_bayes import GaussianNB as SkGNB

    x, y = load_digits(return_X_y=True)
    x = x / 16
    sk = SkGNB().fit(x[:1400], y[:1400])
    ours = GaussianNB().fit(x[:1400], y[:1400])
    np.testing.assert_array_equal(ours.predict(x[1400:]).numpy(), sk.predict(x[1400:]))
    assert ours.predict_topk(x[1400:], 3)[:, 0].tolist() == ours.predict(x[1400:]).tolist()


def test_priors_are_used() -> None:
    from sklearn.naive_bayes import GaussianNB as SkGNB

    x, y, xq = _data(1)
    priors = [0.7, 0.2, 0.1]
    sk = SkGNB(priors=priors).fit(x, y)
    ours = GaussianNB(priors=priors).fit(x, y)
    np.testing.assert_allclose(ours.predict_proba(xq).numpy(), sk.predict_proba(xq), rtol=1e-6, atol=1e-12)


def test_a_class_without_samples_is_refused_by_name() -> None:
    x, y, _ = _data()
    y = np.where(y == 1, 2, y)  # no class 1 left
    with pytest.raises(DataError, match="class 'dress' has no training sample"):
        GaussianNB().fit(x, y, num_classes=3, class_names=["shirt", "dress", "coat"])


def test_bad_input_gives_one_clear_error() -> None:
    x, y, xq = _data()
    nb = GaussianNB().fit(x, y)
    with pytest.raises(DataError, match="queries have 5 features but the training data has 8"):
        nb.predict(xq[:, :5])
    bad = x.copy()
    bad[7, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        GaussianNB().fit(bad, y)
    with pytest.raises(ConfigError, match="priors needs one value per class"):
        GaussianNB(priors=[0.5, 0.5]).fit(x, y)
    with pytest.raises(ConfigError, match="var_smoothing"):
        GaussianNB(var_smoothing=-1)
    with pytest.raises(DataError, match="zero variance"):
        GaussianNB(var_smoothing=0).fit(x, y)
    with pytest.raises(ConfigError, match="not fitted"):
        GaussianNB().predict(xq)
