"""`lab quickstart`: the lab's main job on the bundled model, in a few minutes on a 2-core CPU.

Three steps, each resumable (run the same command again after a kill and it finishes):

1. A small temperature-zero determinism sweep: eight checked arithmetic prompts mixed with
   fillers, fp32 against bf16 and batch 8 against batch 16, through vLLM. It answers "which
   axis changes the output, and by how much" (unique completions, first divergence, logprob
   deltas, accuracy per cell).
2. The fix: the same prompts in a batch of 8 and of 16 through the transformers backend, with
   the lab's batch-invariant kernels off and on. Off, the batch moves the logprobs; on, every
   logprob is bitwise the same.
3. An n-of-k variance report: the 50 bundled cases sampled k=8 times each at temperature 0.7,
   checked, with the expected success rate beside the worst-case (p5) user experience, pass@k
   beside pass^k, and the semantic diversity of the k outputs.

It ends with `index.html`: one self-contained page with the headline numbers of all three,
linking the full reports.

    lab quickstart [--out runs/quickstart] [--k 8] [--backend vllm|hf] [--fresh]

--fresh deletes the step directories under --out: it refuses a directory that is not a
quickstart's output (check_fresh_target).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cases.model import Case
from lab.determinism.config import parse_sweep_config
from lab.determinism.summary import summary_lines
from lab.errors import LabError
from lab.report.page import page
from lab.rundir import CONFIG, INDEX, REPORT, STEP_DIRS, run_kind_of
from lab.safetext import inline, scrub
from lab.store import prepare_run_dir, write_atomic
from lab.variance.render_decompose import decomposition_lines

# The arithmetic prompts of experiments/tar-at-n: short checked answers, so a flip shows up as
# an accuracy change, not only as different text.
_ARITHMETIC = [
    ("add-1", "What is 17 + 25?", "42"),
    ("add-2", "What is 134 + 289?", "423"),
    ("sub-1", "What is 90 - 37?", "53"),
    ("mul-1", "What is 7 times 8?", "56"),
    ("mul-2", "What is 12 times 12?", "144"),
    ("div-1", "What is 81 divided by 9?", "9"),
    ("word-1", "Tom has 3 apples and buys 5 more. How many apples does he have?", "8"),
    ("word-2", "A box holds 6 eggs. How many eggs are in 4 boxes?", "24"),
]


def sweep_spec(backend: str, max_tokens: int) -> dict[str, Any]:
    """The quickstart sweep as a config mapping (the same schema as `lab sweep` YAML)."""
    return {
        "name": "quickstart-sweep",
        "mode": "mixed",
        "answer_regex": r"(-?\d+)(?!.*\d)",  # the last number in the answer
        "prompts": [
            {
                "id": pid,
                "messages": [
                    {"role": "user", "content": f"{question} Reply with the number only."}
                ],
                "expected": answer,
            }
            for pid, question, answer in _ARITHMETIC
        ],
        "sampling": {"max_tokens": max_tokens, "temperature": 0.0, "logprobs": 2},
        "axes": {"backend": [backend], "dtype": ["fp32", "bf16"], "batch_size": [8, 16]},
    }


def kernels_spec(batch_invariant: bool, max_tokens: int) -> dict[str, Any]:
    """Step 2: the quickstart prompts in a batch of 8 and of 16 (hf), kernels off or on."""
    spec = sweep_spec("hf", max_tokens)
    spec["name"] = f"quickstart-kernels-{'on' if batch_invariant else 'off'}"
    spec["axes"] = {
        "backend": ["hf"],
        "dtype": ["fp32"],
        "batch_invariant": [batch_invariant],
        "batch_size": [8, 16],
    }
    return spec


# What a quickstart writes into --out (STEP_DIRS): --fresh deletes (and rewrites) the step
# directories.


def _is_lab_run(path: Path) -> bool:
    """An empty directory, or one a lab run opened (its config.json holds a JSON object)."""
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    try:
        return isinstance(json.loads((path / CONFIG).read_text()), dict)
    except (OSError, ValueError):
        return False


def check_fresh_target(root: Path) -> None:
    """Refuse --fresh on a directory that is not a quickstart's output (it deletes step dirs).

    A quickstart output: every step directory present is a lab run (or empty), and the
    directory holds index.html or nothing but the quickstart's own entries (a run killed
    before its index).
    """
    if not root.is_dir() or not any(root.iterdir()):
        return
    kind = run_kind_of(root)
    if kind not in (None, "quickstart"):
        raise LabError(
            f"--out {root}: holds a {kind} run, not a quickstart's; choose another --out"
        )
    entries = sorted(p.name for p in root.iterdir())
    foreign_steps = [n for n in STEP_DIRS if (root / n).exists() and not _is_lab_run(root / n)]
    own = set(STEP_DIRS) | {INDEX}
    others = [n for n in entries if n not in own and not n.startswith(".index.")]
    if foreign_steps or (others and not (root / INDEX).is_file()):
        shown = ", ".join(foreign_steps or others)
        raise LabError(
            f"--out {root}: not a quickstart output (holds {shown}); --fresh would delete its "
            f"{', '.join(STEP_DIRS)} directories; choose another --out"
        )


@dataclass
class QuickstartResult:
    index: Path
    sweep_report: Path
    sample_report: Path
    sweep_summary: dict[str, Any]
    headline: dict[str, Any]
    #: step 2's sweep summaries, by whether the batch-invariant kernels were on
    kernels: dict[bool, dict[str, Any]]


def run_quickstart(
    out: str | Path = "runs/quickstart",
    k: int = 8,
    backend: str = "vllm",
    cases: str = "bundled:basic",
    max_tokens: int = 48,
    fresh: bool = False,
    cache_dir: str | None = None,
    progress: bool = True,
    emit: Callable[[str], None] = print,
    engine: dict[str, Any] | None = None,
    parsed_cases: list[Case] | None = None,
) -> QuickstartResult:
    """Run (or resume) both steps into `out` and write `out/index.html`. `engine`: settings of
    step 3's engine (SampleConfig keys: tensor_parallel_size, prefix_caching, engine_args...).
    `parsed_cases`: `cases` already parsed (lab quickstart checks them before step 1), so that
    the case source is read once."""
    from lab.determinism.report import write_sweep_report
    from lab.determinism.sweep import run_sweep
    from lab.variance.config import SampleConfig
    from lab.variance.runner import run_sample

    root = Path(out)
    sweep_dir, sample_dir = root / "sweep", root / "variance"
    if fresh:
        check_fresh_target(root)  # before any step deletes its directory
    prepare_run_dir(root, "quickstart")  # its marker; each step starts its own over

    emit("== 1/3 determinism sweep: fp32 vs bf16 x batch 8 vs 16, greedy, 8 checked prompts ==")
    config = parse_sweep_config(sweep_spec(backend, max_tokens), "quickstart")
    run_sweep(config, sweep_dir, fresh=fresh, cache_dir=cache_dir, progress=progress)
    sweep = write_sweep_report(sweep_dir)
    sweep_metrics = sweep.metrics
    for line in sweep_lines(sweep_metrics):
        emit(line)

    emit("== 2/3 batch-invariant kernels: hf, batch 8 vs 16, the lab's kernels off and on ==")
    kernels: dict[bool, dict[str, Any]] = {}
    for on in (False, True):
        kernels_dir = root / f"kernels-{'on' if on else 'off'}"
        spec = parse_sweep_config(kernels_spec(on, max_tokens), "quickstart")
        run_sweep(spec, kernels_dir, fresh=fresh, cache_dir=cache_dir, progress=progress)
        kernels[on] = write_sweep_report(kernels_dir).summary
    for line in kernel_lines(kernels):
        emit(line)

    emit(f"== 3/3 n-of-k variance: {cases}, k={k}, temperature 0.7 ==")
    sample_config = SampleConfig(
        cases=cases, k=k, backend=backend, max_tokens=max_tokens, out=str(sample_dir),
        **(engine or {}),
    )  # fmt: skip
    outcome = run_sample(
        sample_config, fresh=fresh, emit=emit, cache_dir=cache_dir, cases=parsed_cases
    )
    assert outcome.report is not None  # complete: run_sample stops early only when asked
    for line in variance_lines(outcome.report.metrics):
        emit(line)

    index = write_index(root, sweep_metrics, kernels, outcome.report.metrics)
    return QuickstartResult(
        index=index,
        sweep_report=sweep.html,
        sample_report=sample_dir / REPORT,
        sweep_summary=sweep_metrics["summary"],
        headline=outcome.report.headline,
        kernels=kernels,
    )


def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"
    return "n/a" if value is None else str(value)


def sweep_lines(metrics: dict[str, Any], value: Callable[[Any], str] = str) -> list[str]:
    """The sweep's answer in a few lines (lab.determinism.summary, as `lab sweep` prints it).
    `value` formats the run's own values (prompt ids, cells): `inline` gives HTML lines."""
    return summary_lines(metrics, value)


def kernel_lines(kernels: dict[bool, dict[str, Any]]) -> list[str]:
    """Step 2 in two lines: how many prompts' logprobs the batch moved, kernels off and on."""
    lines = []
    for on in (False, True):
        s = kernels[on]
        lines.append(
            f"kernels {'on ' if on else 'off'}: batch 16 vs 8 moved the logprobs of "
            f"{s['outputs_with_logprob_differences']} of {s['targets']} prompts "
            f"(max |delta| {_num(s['max_abs_logprob_delta'])}), the tokens of "
            f"{s['divergent_outputs']}"
        )
    return lines


def variance_lines(metrics: dict[str, Any]) -> list[str]:
    h, run = metrics["headline"], metrics["run"]
    return [
        f"{run['cases']} cases x k={run['k']}: expected success {_num(h['mean'])}, "
        f"worst-case (p5) {_num(h['p5'])}, p50 {_num(h['p50'])}; "
        f"pass@k {_num(h['pass@k'])} vs pass^k {_num(h['pass^k'])}; "
        f"high-variance feature: {'yes' if h['high_variance'] else 'no'}",
        *decomposition_lines(metrics),
    ]


def write_index(
    root: Path,
    sweep: dict[str, Any],
    kernels: dict[bool, dict[str, Any]],
    variance: dict[str, Any],
) -> Path:
    """One self-contained page: both headlines and links to the full reports (atomic write)."""

    def items(lines: list[str]) -> str:
        return "".join(f"<li>{html.escape(line)}</li>" for line in lines)

    # sweep_lines(..., inline) is HTML: its values escaped and bidi-isolated (a U+202E in a
    # prompt id would reverse the rest of the bullet), the rest numbers and markup-free words.

    parts = [
        "<h1>determinism and variance lab: quickstart</h1>",
        "<h2>1. Temperature-zero determinism sweep</h2>",
        f"<ul>{''.join(f'<li>{line}</li>' for line in sweep_lines(sweep, inline))}</ul>",
        f'<p><a href="sweep/{REPORT}">full sweep report</a></p>',
        "<h2>2. Batch-invariant kernels</h2>",
        f"<ul>{items(kernel_lines(kernels))}</ul>",
        f'<p><a href="kernels-off/{REPORT}">kernels off</a> &middot;',
        f'<a href="kernels-on/{REPORT}">kernels on</a></p>',
        "<h2>3. n-of-k variance</h2>",
        f"<ul>{items(variance_lines(variance))}</ul>",
        f'<p><a href="variance/{REPORT}">full variance report</a></p>',
    ]
    root.mkdir(parents=True, exist_ok=True)
    # scrub: a lone surrogate (JSON "\\ud800" in a prompt id) cannot be encoded
    return write_atomic(root / INDEX, scrub(page("determinism lab quickstart", parts)))
