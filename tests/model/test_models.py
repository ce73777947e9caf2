"""The model registry and atomic preparation."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import models
from lab.errors import LabError


def test_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="smollm2-135m-instruct"):
        models.resolve("no-such-model", cache_dir=tmp_path)


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="config.json"):
        models.resolve(str(tmp_path), cache_dir=tmp_path)


def test_half_written_checkpoint_is_not_trusted(tmp_path: Path) -> None:
    final = tmp_path / "models" / models.DEFAULT_MODEL
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")  # weights missing, no completion marker
    assert not models.is_prepared(final)
    with pytest.raises(LabError, match="not prepared"):
        models.resolve(models.DEFAULT_MODEL, cache_dir=tmp_path, prepare=False)


def test_interrupted_preparation_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(gguf_dir: Path, gguf_file: str, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt  # killed halfway through writing

    monkeypatch.setattr(models, "_convert_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        models.prepare_bundled(models.DEFAULT_MODEL, cache_dir=tmp_path)
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


@pytest.mark.model
def test_bundled_model_prepares_into_a_loadable_checkpoint(tmp_path: Path) -> None:
    path = models.prepare_bundled(models.DEFAULT_MODEL, cache_dir=tmp_path)
    assert models.is_prepared(path)
    assert (path / "model.safetensors").stat().st_size > 100_000_000
    info = models.model_info(models.DEFAULT_MODEL, cache_dir=tmp_path)
    assert (info.num_attention_heads, info.num_key_value_heads) == (9, 3)
    assert info.architecture == "LlamaForCausalLM"
    # A second call finds it prepared and returns at once.
    assert models.prepare_bundled(models.DEFAULT_MODEL, cache_dir=tmp_path) == path
