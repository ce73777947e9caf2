"""Independent audit: the lab's statistics against from-scratch implementations of their
published definitions, on fixed synthetic data, plus small cases computed by hand.

Nothing here calls a lab function to produce an expected value: pass@k / pass^k come from
math.comb (Chen et al. 2021; tau-bench), quantiles from Hyndman & Fan type 7 written out,
Wilson from its closed form, diversity from numpy eigenvalues and a union-find, retry odds
from enumerating every order of a case's k outcomes, McNemar from the binomial sum, Holm from
its step-down rule, and `lab plan` from the textbook cluster design effect and a simulation
of the paired t test it models. Pure logic, no model: the whole file runs in a few seconds.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import norm
from scipy.stats import t as t_dist

from lab.backends.base import Generation, TopLogprob
from lab.comparison import paired, plan
from lab.determinism.config import parse_sweep_config
from lab.determinism.divergence import compare
from lab.determinism.metrics import compute_metrics, parse_answer, tar
from lab.longtail.retry import CaseOutcomes, fallback_case, retry_case, retry_report
from lab.variance import stats
from lab.variance.analyze import majority
from lab.variance.diversity import diversity
from tests.unit.test_base import make_generation

# ---------------------------------------------------------------- reference implementations


def ref_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Chen et al. 2021: 1 - C(n-c, k) / C(n, k), exact."""
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def ref_pass_hat_k(n: int, c: int, k: int) -> Fraction:
    """tau-bench: C(c, k) / C(n, k), exact."""
    return Fraction(math.comb(c, k), math.comb(n, k))


def ref_quantile(values: list[float], q: float) -> float:
    """Hyndman & Fan type 7: h = (m-1) q; x[floor h] + frac(h) (x[floor h + 1] - x[floor h])."""
    x = sorted(values)
    h = (len(x) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(x) - 1)
    return x[lo] + (h - lo) * (x[hi] - x[lo])


def ref_wilson(c: int, n: int, z: float = NormalDist().inv_cdf(0.975)) -> tuple[float, float]:
    """Wilson (1927): (c + z^2/2)/(n + z^2) -+ z sqrt(n)/(n + z^2) sqrt(p q + z^2/(4n)), z the
    exact normal quantile (stdlib, not scipy: independent of the implementation)."""
    p = c / n
    centre = (c + z * z / 2) / (n + z * z)
    half = z * math.sqrt(n) / (n + z * z) * math.sqrt(p * (1 - p) + z * z / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def ref_diversity(emb: np.ndarray, threshold: float) -> tuple[float, float, int, float]:
    """(mean pairwise cosine distance, Vendi, clusters, semantic entropy) of one case's k rows."""
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    k = len(e)
    sim = e @ e.T
    pairs = list(itertools.combinations(range(k), 2))
    distance = float(np.mean([1 - sim[a, b] for a, b in pairs]))
    lam = np.linalg.eigvalsh(sim / k)
    lam = lam[lam > 1e-12]
    lam = lam / lam.sum()
    vendi = math.exp(-float(np.sum(lam * np.log(lam))))
    parent = list(range(k))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in pairs:
        if sim[a, b] >= threshold:
            parent[find(a)] = find(b)
    sizes = Counter(find(x) for x in range(k)).values()
    entropy = -sum(s / k * math.log(s / k) for s in sizes)
    return distance, vendi, len(sizes), entropy


def ref_retry(outcomes: list[bool], tokens: list[int], attempts: int) -> tuple[float, float, float]:
    """Enumerate every order of the case's k samples; retry = draw without replacement."""
    success = attempts_made = spent = Fraction(0)
    orders = list(itertools.permutations(range(len(outcomes))))
    for order in orders:
        for j in range(attempts):
            attempts_made += 1
            spent += tokens[order[j]]
            if outcomes[order[j]]:
                success += 1
                break
    n = len(orders)
    return float(success / n), float(attempts_made / n), float(spent / n)


def ref_holm(p: list[float]) -> list[float]:
    """Holm (1979) step-down: p_(i) -> max_{j <= i} min(1, (m - j + 1) p_(j))."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for j, i in enumerate(order, start=1):
        running = max(running, min(1.0, (m - j + 1) * p[i]))
        out[i] = running
    return out


def ref_mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar: binomial test of b discordant of b + c at 1/2."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(Fraction(math.comb(n, i), 2**n) for i in range(min(b, c) + 1))
    return float(min(Fraction(1), 2 * tail))


def ref_sign_flip_p(d: np.ndarray) -> float:
    """Exact sign-flip test of mean(d) = 0: share of the 2^C sign patterns with |mean| >= obs."""
    observed = abs(d.mean())
    hits = total = 0
    for signs in itertools.product((1, -1), repeat=len(d)):
        total += 1
        hits += abs((np.array(signs) * d).mean()) >= observed - 1e-12
    return hits / total


# ---------------------------------------------------------------- n-of-k statistics


def test_pass_at_k_and_pass_hat_k_match_the_binomial_definitions() -> None:
    for n in range(1, 17):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert stats.pass_at_k(n, c, k) == pytest.approx(
                    float(ref_pass_at_k(n, c, k)), abs=1e-12
                )
                assert stats.pass_hat_k(n, c, k) == pytest.approx(
                    float(ref_pass_hat_k(n, c, k)), abs=1e-12
                )
    # by hand: n=10, c=3, k=5: 1 - C(7,5)/C(10,5) = 1 - 21/252; pass^2 of 3 in 4: 3/6
    assert stats.pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    assert stats.pass_hat_k(4, 3, 2) == pytest.approx(0.5)
    # k=1: both are c/n; more samples than exist: undefined
    assert stats.pass_at_k(8, 3, 1) == pytest.approx(3 / 8) == stats.pass_hat_k(8, 3, 1)
    assert math.isnan(stats.pass_at_k(4, 2, 5)) and math.isnan(stats.pass_hat_k(4, 2, 5))


def test_wilson_interval_matches_closed_form_and_tables() -> None:
    for n in (1, 2, 4, 8, 32, 100):
        for c in range(n + 1):
            lo, hi = stats.wilson_interval(c, n)
            ref_lo, ref_hi = ref_wilson(c, n)
            assert (lo, hi) == (pytest.approx(ref_lo, abs=1e-12), pytest.approx(ref_hi, abs=1e-12))
    # published values (e.g. Newcombe 1998 / any Wilson table): 5/10 and 0/10 at 95%
    assert stats.wilson_interval(5, 10) == (
        pytest.approx(0.2366, abs=1e-4),
        pytest.approx(0.7634, abs=1e-4),
    )
    assert stats.wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))


def test_quantiles_are_hyndman_fan_type_7() -> None:
    # by hand: x = 0, 0, .25, .5, 1; p5: h = 0.2 -> 0; p90: h = 3.6 -> .5 + .6 * .5 = .8;
    # p50: h = 2 -> .25; p10: h = 0.4 -> 0
    assert stats.quantiles(np.array([1.0, 0.5, 0.0, 0.25, 0.0])) == pytest.approx(
        [0.0, 0.0, 0.25, 0.8]
    )
    rng = np.random.default_rng(7)
    for m in (1, 2, 3, 7, 50, 101):
        values = rng.integers(0, 9, size=m) / 8  # per-case rates with k=8: many ties
        got = stats.quantiles(values)
        assert got == pytest.approx([ref_quantile(list(values), q) for q in (0.05, 0.1, 0.5, 0.9)])


def test_tail_summary_cv_and_majority_by_hand() -> None:
    rates = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    tails = stats.tail_summary(rates)
    assert tails["mean"] == pytest.approx(3.5 / 6)
    # p5: h = 5 * .05 = .25 -> 0 + .25 * .25
    assert tails["p5"] == pytest.approx(0.0625)
    assert tails["mean_over_p5"] == pytest.approx((3.5 / 6) / 0.0625)
    # CV across runs: sample std (ddof=1) / mean, written out
    runs = np.array([0.4, 0.5, 0.6, 0.3])
    mean = sum(runs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in runs) / 3)
    assert stats.coefficient_of_variation(runs) == pytest.approx(sd / mean)
    # maj@k: the most frequent answer (ties: first seen) and whether it passed
    assert majority(["7", "8", "8", "7"], [True, False, False, True]) == ("7", 0.5, True)
    assert majority(["3", "5", "5", "5"], [True, False, False, False]) == ("5", 0.75, False)


def test_bootstrap_interval_of_a_mean_matches_the_normal_interval() -> None:
    """Plausibility: 400 cases, so the percentile bootstrap of the mean is close to
    mean -+ 1.96 sd / sqrt(C) (an independent large-sample formula)."""
    rng = np.random.default_rng(3)
    rates = rng.integers(0, 9, size=400) / 8
    ((name, (lo, hi)),) = stats.bootstrap_intervals(
        {"r": rates}, {"mean": lambda d: d["r"].mean(axis=1)}, np.random.default_rng(0), 4000
    ).items()
    half = 1.96 * rates.std(ddof=1) / math.sqrt(len(rates))
    assert lo == pytest.approx(rates.mean() - half, abs=0.006)
    assert hi == pytest.approx(rates.mean() + half, abs=0.006)


# ---------------------------------------------------------------- diversity


def test_diversity_hand_cases() -> None:
    eye = torch.eye(4)
    identical = torch.ones(4, 4) / 2.0  # 4 copies of one unit vector
    two_pairs = torch.stack([eye[0], eye[0], eye[1], eye[1]])
    emb = torch.stack([identical, eye, two_pairs])  # [3, 4, 4]
    div = diversity(emb, threshold=0.8)
    # identical: distance 0, Vendi 1, one cluster, entropy 0
    # orthogonal: distance 1, Vendi 4 (= k), four clusters, entropy log 4
    # two pairs: 4 of 6 pairs orthogonal -> 2/3, Vendi 2, two clusters, entropy log 2
    assert div.mean_distance.tolist() == pytest.approx([0.0, 1.0, 2 / 3], abs=1e-6)
    assert div.vendi.tolist() == pytest.approx([1.0, 4.0, 2.0], abs=1e-5)
    assert div.clusters.tolist() == [1, 4, 2]
    assert div.semantic_entropy.tolist() == pytest.approx([0.0, math.log(4), math.log(2)], abs=1e-6)


def test_diversity_matches_reference_on_random_embeddings() -> None:
    rng = np.random.default_rng(11)
    cases, k, d = 12, 6, 16
    centres = rng.normal(size=(cases, 3, d))
    pick = rng.integers(0, 3, size=(cases, k))
    emb = centres[np.arange(cases)[:, None], pick] + 0.35 * rng.normal(size=(cases, k, d))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    div = diversity(torch.tensor(emb, dtype=torch.float32), threshold=0.8)
    clusters_seen = set()
    for i in range(cases):
        distance, vendi, clusters, entropy = ref_diversity(emb[i], 0.8)
        clusters_seen.add(clusters)
        assert float(div.mean_distance[i]) == pytest.approx(distance, abs=1e-5)
        assert float(div.vendi[i]) == pytest.approx(vendi, abs=1e-4)
        assert int(div.clusters[i]) == clusters
        assert float(div.semantic_entropy[i]) == pytest.approx(entropy, abs=1e-5)
    assert len(clusters_seen) > 1  # the data exercises the clustering, not one trivial case


# ---------------------------------------------------------------- determinism


def _gen(tokens: list[int], logprobs: list[float], gaps: list[float]) -> Generation:
    tops = [
        [TopLogprob(t, lp, str(t)), TopLogprob(t + 1000, lp - g, "alt")]
        for t, lp, g in zip(tokens, logprobs, gaps, strict=True)
    ]
    return Generation("p", 0, 0, "test", [1], tokens, logprobs, tops, "", "stop", {}, {}, {})


def test_first_divergence_and_gap_by_hand() -> None:
    ref = _gen([5, 6, 7, 8], [-0.1, -0.2, -0.9, -0.3], [2.0, 1.5, 0.07, 1.0])
    other = _gen([5, 6, 9, 8], [-0.1, -0.2000001, -0.97, -0.3], [2.0, 1.5, 0.07, 1.0])
    d = compare(ref, other)
    assert d.first_divergence == 2 and d.common_prefix == 2
    assert d.reference_top_gap == pytest.approx(0.07)
    assert (d.reference_logprob, d.other_logprob) == (-0.9, -0.97)
    assert d.max_abs_logprob_delta == pytest.approx(1e-7, rel=1e-3)
    assert d.positions_logprob_differs == 1
    # a strict prefix diverges where the shorter ends
    assert compare(ref, _gen([5, 6], [-0.1, -0.2], [2.0, 1.5])).first_divergence == 2
    assert compare(ref, ref).first_divergence is None


def test_tar_is_the_share_of_prompts_whose_n_outputs_all_agree() -> None:
    raw: list[list[Any]] = [[(1, 2), (1, 2), (1, 2)], [(1, 2), (1, 3), (1, 2)], [(4,)] * 3, []]
    assert tar(raw) == pytest.approx(2 / 3)  # an unscored prompt (no outputs) is left out
    answers: list[list[Any]] = [["42", "42"], ["42", None], [None, None], ["7", "7"]]
    assert tar(answers) == pytest.approx(2 / 4)  # a parse failure is a disagreement
    regex = r"(-?\d+)(?!.*\d)"
    assert parse_answer("4 * 6 = 24 eggs.\nThe answer is 24.", regex) == "24"
    assert parse_answer("no digits here", regex) is None


def test_tar_n_counts_every_output_of_a_prompt_in_identical_mode() -> None:
    """Atil et al.'s N is the number of outputs compared per prompt: in identical mode a cell
    holds several copies, so N is cells x copies, not cells (it said 2 here, now 4)."""
    cfg = parse_sweep_config(
        {
            "mode": "identical",
            "prompts": [{"id": "f", "prompt": "x"}],
            "axes": {"batch_size": [1, 3]},
        }
    )
    axes1 = {k: v[0] for k, v in cfg.axes.items()}

    def cell(batch: int, outs: list[list[int]]) -> dict[str, Any]:
        outputs = {}
        for i, tokens in enumerate(outs):
            record = make_generation(tokens, [-0.5] * len(tokens)).to_dict()
            record.pop("engine"), record.pop("sampling")
            outputs[f"f#{i}"] = record
        return {
            "status": "ok",
            "error": None,
            "cell": axes1 | {"batch_size": batch},
            "repeat": 0,
            "engine": {},
            "sampling": {},
            "timings": {},
            "outputs": outputs,
        }

    same = compute_metrics(cfg, [cell(1, [[1, 2]]), cell(3, [[1, 2]] * 3)], context=8192)
    assert (same.summary["N"], same.summary["TARr@N"], same.summary["outputs"]) == (4, 1.0, 4)


# ---------------------------------------------------------------- comparison


def test_mcnemar_and_holm_by_hand() -> None:
    # b=1, c=6: n=7, P(X <= 1) = 8/128, two-sided 16/128
    assert paired.mcnemar_exact(1, 6) == pytest.approx(0.125)
    # past 5000 discordant pairs too: the test stays exact (it used chi-square there while
    # the report called it exact; 2400 vs 2700: 2.8287e-05 before, exact 2.8146e-05)
    for b, c in [(0, 0), (0, 5), (3, 3), (2, 9), (10, 25), (40, 61), (120, 80), (2400, 2700)]:
        assert paired.mcnemar_exact(b, c) == pytest.approx(ref_mcnemar_exact(b, c), rel=1e-9)
    assert paired.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    rng = np.random.default_rng(5)
    for _ in range(20):
        p = list(rng.random(rng.integers(1, 7)) ** 3)
        assert paired.holm(p) == pytest.approx(ref_holm(p))


def test_sign_flip_test_matches_exhaustive_enumeration() -> None:
    rng = np.random.default_rng(2)
    for cases in (5, 9, 12):  # the lab enumerates exactly here
        d = rng.integers(-2, 3, size=cases) / 4
        got = paired.sign_flip_test(d, np.random.default_rng(0))
        assert got.method == "exact"
        assert got.p_value == pytest.approx(ref_sign_flip_p(d))
    d = rng.integers(-2, 4, size=15) / 4  # random swaps: within Monte Carlo error of exact
    got = paired.sign_flip_test(d, np.random.default_rng(0), permutations=20000)
    exact = ref_sign_flip_p(d)
    assert abs(got.p_value - exact) < 4 * math.sqrt(exact * (1 - exact) / 20000) + 1e-4


def test_paired_bootstrap_interval_matches_the_normal_interval() -> None:
    rng = np.random.default_rng(9)
    a = rng.integers(0, 9, size=300) / 8
    b = np.clip(a + rng.integers(-1, 3, size=300) / 8, 0, 1)
    lo, hi = paired.paired_bootstrap(
        a, b, lambda x: x.mean(axis=-1), np.random.default_rng(1), 4000
    )
    d = b - a
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert lo == pytest.approx(d.mean() - half, abs=0.005)
    assert hi == pytest.approx(d.mean() + half, abs=0.005)


# ---------------------------------------------------------------- retry


def test_retry_matches_enumeration_of_draws_without_replacement() -> None:
    for outcomes in ([True, False, False, False], [False] * 4, [True, True, False, False, True]):
        tokens = [10 + 7 * i + (0 if p else 3) for i, p in enumerate(outcomes)]
        case = CaseOutcomes("c", list(outcomes), tokens)
        for m in range(1, len(outcomes) + 1):
            success, attempts, spent = ref_retry(outcomes, tokens, m)
            got = retry_case(case, m)
            assert got["success"] == pytest.approx(success)
            assert got["attempts"] == pytest.approx(attempts)
            # the lab prices a draw at its outcome's mean tokens: exact in expectation
            assert got["tokens"] == pytest.approx(spent)
    # by hand: k=4, c=1, m=2: 1 - C(3,2)/C(4,2) = 1/2, attempts 1 + 3/4
    got = retry_case(CaseOutcomes("c", [True, False, False, False], [1] * 4), 2)
    assert (got["success"], got["attempts"]) == (pytest.approx(0.5), pytest.approx(1.75))


def test_retry_report_overall_and_fallback_by_hand() -> None:
    run = [
        CaseOutcomes("a", [True, False, False, False], [5] * 4),
        CaseOutcomes("b", [False] * 4, [5] * 4),
    ]
    other = [
        CaseOutcomes("a", [True, True, False, False], [8] * 4),
        CaseOutcomes("b", [True, False, False, False], [8] * 4),
    ]
    report = retry_report(run, 2, other)
    one, two, fallback = report["policies"]
    assert one["success"] == pytest.approx((0.25 + 0) / 2)
    assert two["success"] == pytest.approx((0.5 + 0) / 2)
    assert two["independence_prediction"] == pytest.approx(1 - 0.875**2)
    assert two["cases_never_solved"] == 1
    # fallback: p_A + (1 - p_A) p_B per case
    assert fallback["success"] == pytest.approx((0.25 + 0.75 * 0.5 + 0.25) / 2)
    assert fallback_case(run[1], other[1])["tokens"] == pytest.approx(5 + 8)


# ---------------------------------------------------------------- plan


def _baseline_rates() -> np.ndarray:
    rng = np.random.default_rng(4)
    p = rng.beta(0.8, 1.2, size=60)
    return rng.binomial(8, p) / 8


def test_plan_independent_design_is_the_textbook_design_effect() -> None:
    """Per arm, var(case mean) = sigma^2 (1 + (k-1) ICC) / k with sigma^2 = between + within
    and ICC = between / sigma^2 (Donner & Klar); n = 2 var (z_a + z_b)^2 / delta^2."""
    base = plan.Baseline(_baseline_rates(), 8)
    sigma2 = base.between + base.within
    icc = base.between / sigma2
    delta = 1e-6  # no shift: both arms have the baseline's variance
    z = norm.ppf(0.975) + norm.ppf(0.8)
    for k in (1, 4, 32):
        design_effect = 1 + (k - 1) * icc
        per_arm = sigma2 * design_effect / k
        assert plan.unit_variance(base, delta, k, "independent") == pytest.approx(
            2 * per_arm, rel=1e-4
        )
    # with a real delta the lab's n (t test) is the normal n plus the small-sample t correction
    delta = 0.1
    for k in (1, 8, 64):
        var = plan.unit_variance(base, delta, k, "independent")
        normal_n = math.ceil(var * z * z / delta**2)
        n = plan.cases_needed(base, delta, k, 0.8, 0.05, "independent")
        assert normal_n <= n <= normal_n + 3


def test_plan_paired_design_reaches_its_power_in_simulation() -> None:
    """Simulate the paired design the planner models (cases drawn from the baseline, k
    Bernoulli samples per arm, B's probabilities shifted by delta) and run the two-sided
    paired t test: at the planned n, power is about the target; at n/2 it is clearly lower."""
    rates = _baseline_rates()
    base = plan.Baseline(rates, 8)
    delta, k = 0.08, 4
    n = plan.cases_needed(base, delta, k, 0.8, 0.05, "paired")
    # textbook normal formula with var(d) = E[pA qA]/k + E[pB qB]/k + var(pB - pA)
    p_a = np.clip(rates, 0, 1)
    p_b = plan.shifted_rates(p_a, delta)
    assert float(p_b.mean() - p_a.mean()) == pytest.approx(delta)
    z = norm.ppf(0.975) + norm.ppf(0.8)
    var_d = plan.unit_variance(base, delta, k, "paired")
    assert math.ceil(var_d * z * z / delta**2) <= n <= math.ceil(var_d * z * z / delta**2) + 3

    rng = np.random.default_rng(0)
    # true per-case probabilities: shrink observed rates towards the mean so their variance is
    # the planner's between-case estimate (the rates themselves carry binomial noise too)
    mean = rates.mean()
    scale = math.sqrt(base.between / rates.var()) if rates.var() > 0 else 0.0
    true_a = np.clip(mean + scale * (rates - mean), 0, 1)
    true_b = plan.shifted_rates(true_a, delta)

    def simulated_power(cases: int, sims: int = 3000) -> float:
        idx = rng.integers(0, len(true_a), size=(sims, cases))
        pa, pb = true_a[idx], true_b[idx]
        ra = rng.binomial(k, pa) / k
        rb = rng.binomial(k, pb) / k
        d = rb - ra
        sd = d.std(axis=1, ddof=1)
        tstat = np.where(sd > 0, d.mean(axis=1) / (sd / math.sqrt(cases)), 0.0)
        return float(np.mean(np.abs(tstat) > t_dist.ppf(0.975, cases - 1)))

    assert simulated_power(n) == pytest.approx(0.8, abs=0.06)
    assert simulated_power(max(2, n // 2)) < 0.65
