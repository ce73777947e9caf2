"""First-divergence and logprob-delta logic, checked on hand-made records."""

from __future__ import annotations

from lab.backends.base import TopLogprob
from lab.determinism.divergence import compare, min_top_gap
from tests.unit.test_base import make_generation


def test_identical_generations() -> None:
    a = make_generation([1, 2, 3], [-0.1, -0.2, -0.3])
    d = compare(a, make_generation([1, 2, 3], [-0.1, -0.2, -0.3]))
    assert d.tokens_equal and d.first_divergence is None
    assert d.max_abs_logprob_delta == 0.0 and d.positions_logprob_differs == 0


def test_divergence_index_tokens_and_deltas() -> None:
    a = make_generation([1, 2, 3, 4], [-0.1, -0.2, -0.3, -0.4])
    b = make_generation([1, 2, 9], [-0.1, -0.25, -0.7])
    a.top_logprobs[2] = [TopLogprob(3, -0.3, "a"), TopLogprob(9, -0.35, "b")]
    d = compare(a, b)
    assert not d.tokens_equal
    assert d.first_divergence == 2 and d.common_prefix == 2
    assert (d.reference_token, d.other_token) == (3, 9)
    assert (d.reference_logprob, d.other_logprob) == (-0.3, -0.7)
    assert abs(d.reference_top_gap - 0.05) < 1e-12  # type: ignore[operator]
    assert abs(d.max_abs_logprob_delta - 0.05) < 1e-12
    assert d.positions_logprob_differs == 1


def test_prefix_output_diverges_where_the_shorter_ends() -> None:
    d = compare(make_generation([1, 2], [-0.1, -0.2]), make_generation([1, 2, 3], [-0.1, -0.2, -1]))
    assert d.first_divergence == 2 and d.reference_token is None and d.other_token == 3


def test_min_top_gap() -> None:
    g = make_generation([1, 2], [-0.1, -0.2])
    g.top_logprobs = [
        [TopLogprob(1, -0.1, "a"), TopLogprob(5, -2.0, "b")],
        [TopLogprob(2, -0.2, "a"), TopLogprob(6, -0.25, "b")],
    ]
    assert abs(min_top_gap(g) - 0.05) < 1e-12  # type: ignore[operator]
