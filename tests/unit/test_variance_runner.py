"""The sampling loop with a fake engine: call grouping, seeds, resume, progress (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.backends import Backend, EngineConfig, Generation, Request, SamplingConfig
from lab.cases.loaders import load_cases
from lab.errors import LabError
from lab.rundir import SAMPLES
from lab.store import RunStore
from lab.variance.config import SampleConfig
from lab.variance.runner import open_run, sample_cases


class FakeBackend(Backend):
    """Answers "Paris" to even samples; records every call."""

    def __init__(self) -> None:
        super().__init__(EngineConfig(backend="hf"))
        self.calls: list[tuple[list[str], SamplingConfig]] = []

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
        self.calls.append(([r.id for r in requests], sampling))
        return [
            Generation(
                request_id=r.id, sample_index=i, seed=sampling.sample_seed(i, r), backend="hf",
                prompt_token_ids=[1, 2], output_token_ids=[3, 4, 5],
                token_logprobs=[-0.1] * 3, top_logprobs=[[], [], []],
                text="Paris" if i % 2 == 0 else "London", finish_reason="stop",
                timings={}, engine={}, sampling={},
            )
            for r in requests
            for i in range(sampling.n)
        ]  # fmt: skip


@pytest.fixture
def cases_file(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    rows = [{"id": f"c{i}", "prompt": f"q{i}", "checks": [{"contains": "Paris"}]} for i in range(5)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def start(cases_file: Path, tmp_path: Path, **kw: object) -> tuple[SampleConfig, RunStore]:
    settings: dict[str, object] = {
        "cases": str(cases_file), "k": 4, "backend": "hf", "seed": 50, "out": str(tmp_path / "r"),
    }  # fmt: skip
    config = SampleConfig(**(settings | kw))  # type: ignore[arg-type]
    cases = load_cases(config.cases)
    return config, open_run(config, cases, EngineConfig(backend="hf"), fresh=False)


def test_cases_are_packed_into_calls_of_rows_per_call(cases_file: Path, tmp_path: Path) -> None:
    config, store = start(cases_file, tmp_path, rows_per_call=8)  # 2 cases x k=4 per call
    fake = FakeBackend()
    messages: list[str] = []
    sampled, complete = sample_cases(config, fake, store, load_cases(config.cases), messages.append)
    assert (sampled, complete) == (5, True)
    assert [ids for ids, _ in fake.calls] == [["c0", "c1"], ["c2", "c3"], ["c4"]]
    assert all(s.n == 4 and s.seed == 50 for _, s in fake.calls)
    entries = list(store.entries(SAMPLES))
    assert [e["key"] for e in entries] == ["c0", "c1", "c2", "c3", "c4"]
    assert [g["seed"] for g in entries[0]["generations"]] == [50, 51, 52, 53]
    assert [g["seed"] for g in entries[1]["generations"]] == [54, 55, 56, 57]
    assert messages[-1].startswith("sampled 20/20 (100%)")
    assert "tok/s" in messages[-1]


def test_independent_seeds_never_repeat_and_still_share_calls(
    cases_file: Path, tmp_path: Path
) -> None:
    config, store = start(cases_file, tmp_path)  # independent seeds are the default
    fake = FakeBackend()
    sample_cases(config, fake, store, load_cases(config.cases), lambda m: None)
    assert len(fake.calls) == 1  # all 5 cases x k=4 fit one call
    seeds = [g["seed"] for e in store.entries(SAMPLES) for g in e["generations"]]
    assert seeds == list(range(50, 50 + 5 * 4))


def test_shared_seeds_repeat_across_cases(cases_file: Path, tmp_path: Path) -> None:
    config, store = start(cases_file, tmp_path, independent_seeds=False)
    sample_cases(config, FakeBackend(), store, load_cases(config.cases), lambda m: None)
    seeds = [[g["seed"] for g in e["generations"]] for e in store.entries(SAMPLES)]
    assert seeds == [[50, 51, 52, 53]] * 5


def test_stop_and_resume_never_duplicates(cases_file: Path, tmp_path: Path) -> None:
    config, store = start(cases_file, tmp_path, rows_per_call=8)
    cases = load_cases(config.cases)
    fake = FakeBackend()
    assert sample_cases(config, fake, store, cases, lambda m: None, stop_after_cases=3) == (
        3,
        False,
    )
    assert [ids for ids, _ in fake.calls] == [["c0", "c1"], ["c2"]]
    config, store = start(cases_file, tmp_path, rows_per_call=8)  # a new process, same run
    messages: list[str] = []
    assert sample_cases(config, fake, store, cases, messages.append) == (2, True)
    # the calls an uninterrupted run makes ([c2, c3], [c4]), less what is done
    assert [ids for ids, _ in fake.calls[2:]] == [["c3"], ["c4"]]
    assert messages[0].startswith("resuming: 3 of 5 cases")
    keys = [json.loads(line)["key"] for line in store.log_path(SAMPLES).read_text().splitlines()]
    assert keys == ["c0", "c1", "c2", "c3", "c4"]


def test_missing_samples_are_an_error(cases_file: Path, tmp_path: Path) -> None:
    class Short(FakeBackend):
        def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
            return super().generate(requests, sampling)[:-1]

    config, store = start(cases_file, tmp_path)
    with pytest.raises(Exception, match="returned 3 of 4 samples"):
        sample_cases(config, Short(), store, load_cases(config.cases), lambda m: None)


def test_a_case_with_failed_samples_is_not_stored(cases_file: Path, tmp_path: Path) -> None:
    """A server's error (openai backend) is not a model's output: the call's clean cases are
    stored, the failed one is not, the run stops with one line and resumes it."""

    class Flaky(FakeBackend):
        def __init__(self, fail: str | None) -> None:
            super().__init__()
            self.fail = fail

        def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
            gens = super().generate(requests, sampling)
            for g in gens:
                if g.request_id == self.fail and g.sample_index == 1:
                    g.finish_reason, g.error = "error", "503: overloaded"
            return gens

    config, store = start(cases_file, tmp_path, rows_per_call=12)  # 3 cases x k=4 per call
    cases = load_cases(config.cases)
    with pytest.raises(LabError, match=r"case 'c1': 1 of 4 samples failed \(503: overloaded\)"):
        sample_cases(config, Flaky("c1"), store, cases, lambda m: None)
    assert store.done_keys(SAMPLES) == {"c0", "c2"}
    sampled, complete = sample_cases(config, Flaky(None), store, cases, lambda m: None)
    assert complete and sampled == 3 and store.done_keys(SAMPLES) == {f"c{i}" for i in range(5)}


def _lengths_file(tmp_path: Path) -> Path:
    """Six short prompts and one long one (the 3000-word case of issue 14, shortened)."""
    path = tmp_path / "lengths.jsonl"
    rows = [{"id": f"s{i}", "prompt": f"q{i}"} for i in range(6)]
    rows.insert(2, {"id": "long", "prompt": "word " * 600})
    rows.append({"id": "mid", "prompt": "m" * 1200})
    for row in rows:
        row["checks"] = [{"contains": "Paris"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_hf_calls_group_prompts_by_length(tmp_path: Path) -> None:
    config, store = start(_lengths_file(tmp_path), tmp_path, rows_per_call=16)  # 4 cases a call
    assert json.loads((store.path / "batching.json").read_text())["grouping"] == "length"
    fake = FakeBackend()
    messages: list[str] = []
    sample_cases(config, fake, store, load_cases(config.cases), messages.append)
    # short prompts together in case order, the 1200-char one alone, the 3000-char one alone
    assert [ids for ids, _ in fake.calls] == [
        ["s0", "s1", "s2", "s3"],
        ["s4", "s5"],
        ["mid"],
        ["long"],
    ]
    starts = [m for m in messages if m.endswith("starting")]
    assert starts[0] == "call 1/4 (4 cases x k=4): prompts up to 2 chars, starting"
    assert starts[3] == "call 4/4 (1 cases x k=4): prompts up to 3000 chars, starting"
    # seeds follow the case's place in the file, not its call
    seeds = {e["key"]: e["generations"][0]["seed"] for e in store.entries(SAMPLES)}
    assert seeds["long"] == 50 + 2 * 4 and seeds["s2"] == 50 + 3 * 4


def test_a_resume_keeps_the_grouping_of_the_first_start(tmp_path: Path) -> None:
    cases_path = _lengths_file(tmp_path)
    whole = FakeBackend()
    config, store = start(cases_path, tmp_path / "a", rows_per_call=16)
    sample_cases(config, whole, store, load_cases(config.cases), lambda m: None)
    config, store = start(cases_path, tmp_path / "b", rows_per_call=16)
    resumed = FakeBackend()
    sample_cases(config, resumed, store, load_cases(config.cases), lambda m: None, 5)
    config, store = start(cases_path, tmp_path / "b", rows_per_call=16)  # a new process
    sample_cases(config, resumed, store, load_cases(config.cases), lambda m: None)
    calls = [ids for ids, _ in resumed.calls]
    assert calls == [["s0", "s1", "s2", "s3"], ["s4"], ["s5"], ["mid"], ["long"]]
    assert [c for c in calls if len(c) > 1] == [ids for ids, _ in whole.calls][:1]


def test_a_run_without_a_recorded_grouping_resumes_in_case_order(tmp_path: Path) -> None:
    cases_path = _lengths_file(tmp_path)
    config, store = start(cases_path, tmp_path, rows_per_call=16)
    (store.path / "batching.json").write_text(json.dumps({"rows_per_call": 16}))  # older lab
    config, store = start(cases_path, tmp_path, rows_per_call=16)
    assert json.loads((store.path / "batching.json").read_text())["grouping"] == "order"
    fake = FakeBackend()
    sample_cases(config, fake, store, load_cases(config.cases), lambda m: None)
    assert fake.calls[0][0] == ["s0", "s1", "long", "s2"]


def test_a_running_call_prints_periodic_lines(
    cases_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a terminal nothing else speaks while an engine call runs: the heartbeat does.
    The fake call ends only once a heartbeat line came (no timing in the assertion)."""
    import threading

    monkeypatch.setenv("LAB_PROGRESS_INTERVAL", "0.05")
    beat = threading.Event()

    class Slow(FakeBackend):
        def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
            assert beat.wait(30), "no progress line while the call ran"
            return super().generate(requests, sampling)

    messages: list[str] = []

    def emit(line: str) -> None:
        messages.append(line)
        if "running" in line:
            beat.set()

    config, store = start(cases_file, tmp_path)
    sample_cases(config, Slow(), store, load_cases(config.cases), emit)
    running = [m for m in messages if m.startswith("call 1/1 (5 cases x k=4): running ")]
    assert running and messages.index(running[0]) < len(messages) - 1
    assert messages[-1].startswith("sampled 20/20")
