"""A hub id that is neither cached nor downloadable: the error says why (offline mode, a gated
or missing repo, no network), not only "unknown model". The hub itself is replaced by a stub
(no network here); the resolution logic around it is the lab's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import huggingface_hub
import pytest

from lab import models, settings
from lab.errors import LabError


def test_an_uncached_hub_id_in_offline_mode_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_cached(repo_id: str, **kwargs: Any) -> str:
        assert kwargs.get("local_files_only"), "offline: never asks the hub"
        raise FileNotFoundError(repo_id)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_cached)
    monkeypatch.setattr(settings, "hf_offline", lambda: True)
    with pytest.raises(LabError, match=r"org/model'.*\(HF_HUB_OFFLINE is set"):
        models.resolve("org/model", cache_dir=tmp_path)


def test_a_failed_download_names_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gated(repo_id: str, **kwargs: Any) -> str:
        if kwargs.get("local_files_only"):
            raise FileNotFoundError(repo_id)
        raise PermissionError("401 Client Error: access to this gated repo is restricted\nmore")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    monkeypatch.setattr(settings, "hf_offline", lambda: False)
    with pytest.raises(LabError) as error:
        models.resolve("org/gated-model", cache_dir=tmp_path)
    message = str(error.value)
    assert "downloading it failed: PermissionError: 401 Client Error: access" in message
    assert "\n" not in message


def test_a_cached_hub_id_resolves_to_its_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(tmp_path))
    assert models.resolve("org/model", cache_dir=tmp_path) == tmp_path
