"""Cohort buckets: which cases form each cohort of the n-of-k report (tags and buckets).

Every tag is a cohort. A `cohorts:` section in the `lab sample` YAML config adds buckets, each
case falling in exactly one bucket per dimension, so a rollout can watch them from day one:

    cohorts:
      locale: true                  # langid.py language of the prompt: locale=en, locale=de, ...
      length_bands: [0, 20, 50, inf]   # input tokens: length=[0,20), length=[20,50), ...
      schema_shape: true            # the set of metadata keys and prompt-JSON keys
      intent: "intent:"             # a tag prefix (tag intent:refund -> intent=refund), or
      # intent: {field: intent}     # a metadata field
      tokenizer: model              # length in the run model's tokens ("model", the default;
                                    # whitespace words when it is not available), "whitespace",
                                    # or a model name

Cohort definitions are analysis settings: they do not change a run's identity, so a finished
run can be re-reported with new buckets (`lab sample-report RUN_DIR --cohorts cohorts.yaml`).

The report's statistics per cohort (number of cases, mean, p5, p10, p50, p90 of per-case
success, worst tail first) are lab.variance.analyze.cohort_tails over these groups.

    from lab.cases.cohorts import cohort_groups, parse_cohorts
    groups, info = cohort_groups(cases, parse_cohorts(config.cohorts), config.model)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cases import textinfo
from lab.cases.model import Case
from lab.errors import LabError
from lab.yamlio import load_yaml_file

KEYS = ("locale", "length_bands", "schema_shape", "intent", "tokenizer")


@dataclass
class CohortSpec:
    locale: bool = False
    #: increasing band edges in tokens; the last may be inf
    length_bands: list[float] | None = None
    schema_shape: bool = False
    intent_tag_prefix: str | None = None
    intent_field: str | None = None
    tokenizer: str = "model"

    @property
    def active(self) -> bool:
        return bool(
            self.locale
            or self.length_bands
            or self.schema_shape
            or self.intent_tag_prefix
            or self.intent_field
        )

    def to_dict(self) -> dict[str, Any]:
        """The YAML form again (inf as the string "inf", so the JSON stays standard)."""
        out: dict[str, Any] = {}
        if self.locale:
            out["locale"] = True
        if self.length_bands:
            out["length_bands"] = [
                "inf" if math.isinf(b) else (int(b) if float(b).is_integer() else b)
                for b in self.length_bands
            ]
        if self.schema_shape:
            out["schema_shape"] = True
        if self.intent_tag_prefix is not None:
            out["intent"] = self.intent_tag_prefix
        if self.intent_field is not None:
            out["intent"] = {"field": self.intent_field}
        if self.tokenizer != "model":
            out["tokenizer"] = self.tokenizer
        return out


def _band_edge(value: Any, where: str) -> float:
    if isinstance(value, str) and value.strip().lower() in ("inf", ".inf", "infinity"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise LabError(f"{where}: must be a number or inf, got {value!r}")
    return float(value)


def parse_cohorts(value: Any) -> CohortSpec:
    """The `cohorts:` mapping -> CohortSpec; a LabError names the field."""
    if value is None or value == {}:
        return CohortSpec()
    if isinstance(value, CohortSpec):
        return value
    if not isinstance(value, dict):
        raise LabError("setting 'cohorts' must be a mapping (locale, length_bands, ...)")
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise LabError(f"cohorts.{unknown[0]}: unknown key; use {', '.join(KEYS)}")
    spec = CohortSpec()
    for key in ("locale", "schema_shape"):
        if key in value:
            if not isinstance(value[key], bool):
                raise LabError(f"cohorts.{key}: must be true or false, got {value[key]!r}")
            setattr(spec, key, value[key])
    if value.get("length_bands") is not None:
        bands = value["length_bands"]
        if not isinstance(bands, list) or len(bands) < 2:
            raise LabError("cohorts.length_bands: give at least two edges, e.g. [0, 20, 50, inf]")
        edges = [_band_edge(b, f"cohorts.length_bands[{i}]") for i, b in enumerate(bands)]
        if edges[0] < 0:
            raise LabError("cohorts.length_bands[0]: must be >= 0")
        for i in range(1, len(edges)):
            if edges[i] <= edges[i - 1]:
                raise LabError(f"cohorts.length_bands[{i}]: edges must increase")
        spec.length_bands = edges
    intent = value.get("intent")
    if isinstance(intent, str) and intent:
        spec.intent_tag_prefix = intent
    elif isinstance(intent, dict):
        if set(intent) == {"tag_prefix"} and isinstance(intent["tag_prefix"], str):
            spec.intent_tag_prefix = intent["tag_prefix"]
        elif set(intent) == {"field"} and isinstance(intent["field"], str):
            spec.intent_field = intent["field"]
        else:
            raise LabError("cohorts.intent: use a tag prefix string, {tag_prefix: P} or {field: F}")
    elif intent is not None:
        raise LabError(f"cohorts.intent: must be a tag prefix or {{field: NAME}}, got {intent!r}")
    tokenizer = value.get("tokenizer", "model")
    if not isinstance(tokenizer, str) or not tokenizer:
        raise LabError("cohorts.tokenizer: must be model, whitespace or a model name")
    spec.tokenizer = tokenizer
    return spec


def load_cohorts_file(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a `cohorts:` mapping (or the mapping itself), validated."""
    data = load_yaml_file(path)
    if isinstance(data, dict) and "cohorts" in data:
        data = data["cohorts"]
    try:
        return parse_cohorts(data).to_dict()
    except LabError as exc:
        raise LabError(f"{path}: {exc}") from None


def band_label(count: int, edges: list[float]) -> str:
    def edge(x: float) -> str:
        return "inf" if math.isinf(x) else f"{x:g}"

    if count < edges[0]:
        return f"length=<{edge(edges[0])}"
    for lo, hi in zip(edges, edges[1:], strict=False):
        if lo <= count < hi:
            return f"length=[{edge(lo)},{edge(hi)})"
    return f"length=>={edge(edges[-1])}"


def intent_label(case: Case, spec: CohortSpec) -> str:
    if spec.intent_field is not None:
        value = case.metadata.get(spec.intent_field)
        return f"intent={value}" if value not in (None, "") else "intent=(none)"
    prefix = spec.intent_tag_prefix or ""
    value = next((t[len(prefix) :] for t in case.tags if t.startswith(prefix)), None)
    return f"intent={value}" if value else "intent=(none)"


def bucket_cases(
    cases: list[Case], spec: CohortSpec, model: str
) -> tuple[dict[str, tuple[str, list[int]]], dict[str, Any]]:
    """{bucket name: (kind, case indices)} for the configured dimensions, and how they were made."""
    buckets: dict[str, tuple[str, list[int]]] = {}
    info: dict[str, Any] = {"definition": spec.to_dict()}

    def add(kind: str, labels: list[str]) -> None:
        for i, label in enumerate(labels):
            buckets.setdefault(label, (kind, []))[1].append(i)

    texts = [textinfo.case_text(c) for c in cases]
    if spec.locale:
        add("locale", [f"locale={lang}" for lang, _ in textinfo.languages(texts)])
    if spec.length_bands:
        counter = textinfo.TokenCounter(model if spec.tokenizer == "model" else spec.tokenizer)
        info["length_tokens"] = counter.kind
        add("length", [band_label(n, spec.length_bands) for n in counter.count(texts)])
    if spec.schema_shape:
        shapes = []
        for case in cases:
            keys = sorted(textinfo.structured_fields(case))
            shapes.append("schema={" + ",".join(keys) + "}" if keys else "schema=(none)")
        add("schema", shapes)
    if spec.intent_tag_prefix or spec.intent_field:
        add("intent", [intent_label(c, spec) for c in cases])
    return buckets, info


def cohort_groups(
    cases: list[Case], spec: CohortSpec | dict[str, Any] | None, model: str
) -> tuple[dict[str, tuple[str, list[int]]], dict[str, Any]]:
    """{cohort name: (kind, case indices)}: every tag (kind "tag"), then each configured
    bucket; and how the buckets were made."""
    spec = parse_cohorts(spec) if not isinstance(spec, CohortSpec) else spec
    groups: dict[str, tuple[str, list[int]]] = {}
    for tag in sorted({t for c in cases for t in c.tags}):
        groups[tag] = ("tag", [i for i, c in enumerate(cases) if tag in c.tags])
    info: dict[str, Any] = {"definition": {}}
    if spec.active:
        buckets, info = bucket_cases(cases, spec, model)
        groups |= buckets
    return groups, info
