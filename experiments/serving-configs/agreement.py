"""Token- and logprob-level agreement of each arm's samples with vllm-default (same seeds).

.venv/bin/python experiments/serving-configs/agreement.py runs/serving-configs-k4
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

Sample = tuple[list[int], list[float], str]


def load(run: Path) -> dict[tuple[str, int], Sample]:
    out = {}
    for line in (run / "samples.jsonl").read_text().splitlines():
        entry = json.loads(line)
        for g in entry["generations"]:
            key = (entry["case_id"], g["sample_index"])
            out[key] = (g["output_token_ids"], g["token_logprobs"], g["text"])
    return out


def prefix_delta(a: Sample, b: Sample) -> float:
    """Largest |delta logprob| of the chosen tokens over the common prefix."""
    worst = 0.0
    for ta, tb, la, lb in zip(a[0], b[0], a[1], b[1], strict=False):
        if ta != tb:
            break
        worst = max(worst, abs(la - lb))
    return worst


def main(root: Path) -> None:
    base = load(root / "vllm-default")
    print("arm                  samples  token seqs differ  texts differ  logprob seqs differ  "
          "max |dlogprob| (common prefix)")  # fmt: skip
    for arm in ("vllm-tp3", "vllm-prefix-caching", "hf"):
        other = load(root / arm)
        tokens = sum(base[k][0] != other[k][0] for k in base)
        texts = sum(base[k][2] != other[k][2] for k in base)
        logprobs = sum(base[k][1] != other[k][1] for k in base)
        worst = max(prefix_delta(base[k], other[k]) for k in base)
        print(f"{arm:20s} {len(base):7d}  {tokens:17d}  {texts:12d}  {logprobs:19d}  {worst:.3g}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/serving-configs-k4"))
