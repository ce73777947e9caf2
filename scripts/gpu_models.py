"""Build the models the GPU check needs on a machine that cannot download or carry the bundled
ones (scripts/gpu_check.sh runs this first).

- OUT/smollm2-shaped: a random-weight Llama with SmolLM2-135M's shape and a byte-level
  tokenizer (lab.tinymodels.build_causal_lm), for the batch-invariant mode's end-to-end cost.
- OUT/minilm: the real all-MiniLM-L6-v2 when its fp16 copy travelled in .gpu_carry/ (upcast
  to fp32 here, as the lab runs it), otherwise a random-weight MiniLM-shaped encoder.

    python3 scripts/gpu_models.py /tmp/gpu_models
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRIED_MINILM = ROOT / ".gpu_carry" / "all-MiniLM-L6-v2-fp16"


def real_minilm(out: Path) -> bool:
    """Copy the carried fp16 MiniLM to `out` with fp32 weights; False when it did not travel."""
    if not (CARRIED_MINILM / "model.safetensors").is_file():
        return False
    from safetensors.torch import load_file, save_file

    shutil.copytree(CARRIED_MINILM, out, dirs_exist_ok=True)
    weights = load_file(str(CARRIED_MINILM / "model.safetensors"))
    upcast = {k: v.float().contiguous() for k, v in weights.items()}
    save_file(upcast, str(out / "model.safetensors"))
    return True


def main() -> None:
    from lab.bench.embeddings import synthetic_outputs
    from lab.tinymodels import build_causal_lm, build_sentence_encoder

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu_models")
    build_causal_lm(out / "smollm2-shaped")
    if real_minilm(out / "minilm"):
        kind = "real all-MiniLM-L6-v2 (carried in fp16, upcast to fp32)"
    else:
        texts = [t for case in synthetic_outputs(50, 32) for t in case]
        build_sentence_encoder(out / "minilm", texts=texts)
        kind = "random-weight MiniLM-shaped encoder"
    print(json.dumps({"causal_lm": str(out / "smollm2-shaped"), "embedder": kind}))


if __name__ == "__main__":
    main()
