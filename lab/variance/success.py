"""The n-of-k success statistics every run reports, from its [C, k] pass matrix: one
implementation for the n-of-k report (lab.variance.analyze) and the agent report
(lab.agents.report), so a trajectory's pass@k means what a sample's does.

- headline: the tails of per-case success (mean = expected success, p5, p10, p50, p90,
  mean / p5, min), the high-variance flag, pass@1, pass@k and pass^k at the run's k, maj@k,
  the CV of success across the k runs and the lowest / highest run rate;
- intervals: percentile bootstrap over cases (95%) of mean, p5, pass@k, pass^k and maj@k,
  every statistic on the same resamples (lab.variance.stats.bootstrap_intervals);
- curves: mean pass@j and pass^j on the k grid (1, 2, 4, ..., k).

Every definition is lab.variance.stats's (its docstring); this module only puts them
together. `run_record` is the "run" block both reports open metrics.json with (what was
sampled, how).

    s = success_statistics(passed, majority_correct, np.random.default_rng(0), samples=1000)
    s.headline["pass^k"], s.intervals["p5"], s.curves["pass@k"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.variance import stats
from lab.variance.config import SampleConfig


@dataclass(frozen=True)
class SuccessStatistics:
    """What success_statistics returns (metrics.json's headline, intervals_95, curves,
    run_rates)."""

    headline: dict[str, Any]
    intervals: dict[str, list[float]]
    curves: dict[str, list[Any]]
    run_rates: list[float]
    #: per-case success rate [C] (the cohort tails and the decomposition use it)
    rates: np.ndarray


def _mean_over_cases(passed: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-case pass@j and pass^j [C] of a [C, k] pass matrix."""
    k = passed.shape[1]
    counts = passed.sum(axis=1)
    return (
        np.array([stats.pass_at_k(k, int(x), j) for x in counts]),
        np.array([stats.pass_hat_k(k, int(x), j) for x in counts]),
    )


def success_statistics(
    passed: np.ndarray,
    majority_correct: np.ndarray,
    rng: np.random.Generator,
    samples: int,
) -> SuccessStatistics:
    """passed [C, k] bool; majority_correct [C] (whether each case's majority answer mostly
    passed, lab.variance.analyze.majority); `rng` and `samples` drive the case bootstrap."""
    k = passed.shape[1]
    rates = passed.mean(axis=1)  # [C]
    tails = stats.tail_summary(rates)
    p_at_k, p_hat_k = _mean_over_cases(passed, k)
    maj = np.asarray(majority_correct, dtype=float)
    runs = stats.run_rates(passed)
    headline = tails | {
        "high_variance": stats.high_variance(tails["mean"], tails["p5"]),
        "pass@1": float(rates.mean()),
        "pass@k": float(np.nanmean(p_at_k)),
        "pass^k": float(np.nanmean(p_hat_k)),
        "maj@k": float(maj.mean()),
        "cv_across_runs": stats.coefficient_of_variation(runs),
        "run_rate_min": float(runs.min()),
        "run_rate_max": float(runs.max()),
    }
    intervals = stats.bootstrap_intervals(
        {"rate": rates, "pass_at_k": p_at_k, "pass_hat_k": p_hat_k, "maj": maj},
        {
            "mean": lambda d: d["rate"].mean(axis=1),
            "p5": lambda d: stats.p5_rows(d["rate"]),
            "pass@k": lambda d: stats.nanmean_rows(d["pass_at_k"]),
            "pass^k": lambda d: stats.nanmean_rows(d["pass_hat_k"]),
            "maj@k": lambda d: d["maj"].mean(axis=1),
        },
        rng,
        samples=samples,
    )
    ks = stats.k_grid(k)
    per_j = [_mean_over_cases(passed, j) for j in ks]
    curves: dict[str, list[Any]] = {
        "k": ks,
        "pass@k": [float(np.nanmean(at)) for at, _ in per_j],
        "pass^k": [float(np.nanmean(hat)) for _, hat in per_j],
    }
    return SuccessStatistics(
        headline=headline,
        intervals={name: list(iv) for name, iv in intervals.items()},
        curves=curves,
        run_rates=runs.tolist(),
        rates=rates,
    )


def run_record(
    config: SampleConfig, passed: np.ndarray, engine: dict[str, Any] | None = None
) -> dict[str, Any]:
    """cases, k, samples, the model and sampling settings, and (n-of-k runs) the engine record
    after the dtype; each report adds its own fields around it."""
    head: dict[str, Any] = {
        "cases": int(passed.shape[0]),
        "k": config.k,
        "samples": int(passed.size),
        "backend": config.backend,
        "model": config.model,
        "dtype": config.dtype,
    }
    if engine is not None:
        head["engine"] = engine
    return head | {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "max_tokens": config.max_tokens,
        "seed": config.seed,
    }
