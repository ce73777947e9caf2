"""How much of a run's success variance comes from the inputs and how much from sampling, and
which cases the model is confidently wrong on.

Variance decomposition (law of total variance over cases: a sample of case i passes with
probability p_i). One sample's 0/1 outcome has variance mean (1 - mean) = var_i(p_i) +
E_i[p_i (1 - p_i)]:

- within-case (sampling) share: E[p(1-p)], estimated without bias from k samples per case as
  mean(r (1 - r)) k / (k - 1) (r = the case's observed rate);
- between-case (input) share: var(p), the method-of-moments estimate var(r, ddof=1) -
  within / k, clipped at 0 (var(r) holds the sampling noise within / k on top of var(p)).

The same estimator plans `lab plan` (lab.comparison.plan imports it from here: one
implementation). Shares are each part over their sum; their 95% intervals resample cases with
replacement (lab.variance.stats.bootstrap_intervals). What each share needs: the run mean's
variance is between / n + within / (n k), so

- k* = within / between (rounded up) is the samples per case beyond which the sampling term is
  the smaller one: past it, more cases buy more precision than more samples per case;
- cases needed for a 95% interval of +-h (default 0.05) on mean success, at the run's k and at
  k*: n = z^2 (between + within / k) / h^2, z = norm.ppf(0.975).

Undefined parts are None with the reason: k = 1 (within cannot be estimated), one case
(between cannot), no variance at all (shares undefined).

Consistency classes (confidently wrong): a case's k samples fall into embedding clusters
(lab.variance.diversity). Its dominant cluster is the largest (ties: the first sample's).
The case is *consistent* when the dominant cluster holds at least `share` of the k samples
(default 0.8), and then *consistent-correct* when at least `share` of that cluster's samples
pass every check, *consistent-wrong* when at least `share` of them fail (the model says the
same thing and it is wrong: sampling more will not save it); every other case is *flaky*.

    record = decomposition(passed, rng, samples=1000)       # passed [C, k] bool
    classes = consistency_classes(passed, labels, share=0.8)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import norm

from lab.variance import stats

#: default share of the k samples the dominant cluster (and its verdict) must hold
CONSISTENT_SHARE = 0.8
#: default half-width of the mean-success interval the "cases needed" figures aim at
TARGET_HALF_WIDTH = 0.05
CLASSES = ("consistent-correct", "consistent-wrong", "flaky")


def within_variance(rates: np.ndarray, k: int) -> float:
    """E[p(1-p)] from per-case rates of k samples each, unbiased (k / (k - 1) correction)."""
    factor = k / (k - 1) if k > 1 else 1.0
    return float(np.mean(rates * (1 - rates))) * factor


def between_variance(rates: np.ndarray, k: int) -> float:
    """var(p) over cases: var(r, ddof=1) - within / k, clipped at 0 (method of moments)."""
    if len(rates) < 2:
        return 0.0
    return max(0.0, float(np.var(rates, ddof=1)) - within_variance(rates, k) / k)


def _rows_within(rates: np.ndarray, k: int) -> np.ndarray:
    """within_variance of every row of [B, C] resampled rates."""
    return np.mean(rates * (1 - rates), axis=-1) * (k / (k - 1))


def _rows_between(rates: np.ndarray, k: int) -> np.ndarray:
    return np.maximum(0.0, np.var(rates, axis=-1, ddof=1) - _rows_within(rates, k) / k)


def _share_rows(rates: np.ndarray, k: int, part: str) -> np.ndarray:
    within, between = _rows_within(rates, k), _rows_between(rates, k)
    total = within + between
    mine = between if part == "between" else within
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, mine / np.where(total > 0, total, 1.0), np.nan)


def cases_needed(between: float, within: float, k: int, half_width: float) -> int:
    """Cases for a 95% interval of +-half_width on mean success with k samples per case."""
    z = float(norm.ppf(0.975))
    return max(1, math.ceil(z * z * (between + within / k) / half_width**2))


def decomposition(
    passed: np.ndarray,
    rng: np.random.Generator,
    samples: int = 1000,
    half_width: float = TARGET_HALF_WIDTH,
) -> dict[str, Any]:
    """passed [C, k] bool -> the record metrics.json keeps under "variance_decomposition"."""
    cases, k = passed.shape
    rates = passed.mean(axis=1)
    mean = float(rates.mean())
    out: dict[str, Any] = {
        "cases": cases,
        "k": k,
        "total_plugin": mean * (1 - mean),
        "within": None,
        "between": None,
        "total": None,
        "between_share": None,
        "within_share": None,
        "intervals_95": {"between_share": None, "within_share": None},
        "run_mean_variance": None,
        "k_star": None,
        "target_half_width": half_width,
        "cases_needed_at_k": None,
        "cases_needed_at_k_star": None,
        "undefined": None,
    }
    if k < 2:
        out["undefined"] = "k = 1: the within-case (sampling) variance needs 2 samples per case"
        return out
    if cases < 2:
        out["undefined"] = "one case: the between-case (input) variance needs 2 cases"
        return out
    within, between = within_variance(rates, k), between_variance(rates, k)
    total = within + between
    out |= {
        "within": within,
        "between": between,
        "total": total,
        "run_mean_variance": between / cases + within / (cases * k),
        "cases_needed_at_k": cases_needed(between, within, k, half_width),
    }
    if total == 0:
        out["undefined"] = "no variance: every case passes always or never"
        return out
    out["between_share"], out["within_share"] = between / total, within / total
    intervals = stats.bootstrap_intervals(
        {"rate": rates},
        {
            "between_share": lambda d: _share_rows(d["rate"], k, "between"),
            "within_share": lambda d: _share_rows(d["rate"], k, "within"),
        },
        rng,
        samples=samples,
    )
    out["intervals_95"] = {name: list(iv) for name, iv in intervals.items()}
    if between > 0:
        k_star = max(1, math.ceil(within / between))
        out["k_star"] = k_star
        out["cases_needed_at_k_star"] = cases_needed(between, within, k_star, half_width)
    return out


def consistency_class(passed: np.ndarray, labels: np.ndarray, share: float) -> dict[str, Any]:
    """One case: passed [k] bool, labels [k] cluster ids -> its class and the figures behind it."""
    k = len(passed)
    ids, counts = np.unique(labels, return_counts=True)
    # ties: the cluster of the earliest sample (cluster ids are the smallest member index)
    dominant = int(ids[np.argmax(counts)])
    members = labels == dominant
    dominant_share = float(members.sum()) / k
    pass_share = float(passed[members].mean())
    if dominant_share >= share and pass_share >= share:
        label = "consistent-correct"
    elif dominant_share >= share and 1 - pass_share >= share:
        label = "consistent-wrong"
    else:
        label = "flaky"
    return {
        "class": label,
        "dominant_cluster_share": dominant_share,
        "dominant_cluster_pass_share": pass_share,
    }


def consistency_classes(
    passed: np.ndarray, labels: np.ndarray, share: float = CONSISTENT_SHARE
) -> list[dict[str, Any]]:
    """passed [C, k], labels [C, k] -> one consistency_class record per case."""
    return [consistency_class(passed[i], labels[i], share) for i in range(len(passed))]


def class_counts(classes: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and shares of each class over the run's cases (the headline's figures)."""
    n = max(len(classes), 1)
    counts = {name: sum(c["class"] == name for c in classes) for name in CLASSES}
    return {
        "consistent_correct": counts["consistent-correct"],
        "consistent_wrong": counts["consistent-wrong"],
        "flaky": counts["flaky"],
        "consistent_wrong_share": counts["consistent-wrong"] / n,
    }
