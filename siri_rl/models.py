"""Where a model comes from, checked before anything loads: a local model directory or a hub id that the cache or
the hub can answer (one line naming the fix otherwise), and transformers' per-file weight bars kept quiet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from siri_rl.errors import DataError


def _looks_local(text: str) -> bool:
    """Whether a model name can only mean a local path: absolute, ``~``, ``./`` or ``../``, more than two parts (a
    hub id is ``org/name``), or ``a/b`` where ``a`` is a local directory (``runs/my-run``)."""
    if text.startswith(("~", "./", "../", ".\\", "..\\")) or text in (".", "..") or os.path.isabs(text):
        return True
    parts = Path(text).parts
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir())


def check_model_source(name_or_path: str | os.PathLike, *, option: str = "--model") -> None:
    """Fail at once, with one line, where a model cannot be loaded, before minutes of loading anything else.

    A name that can only be a local path (:func:`_looks_local`) must be an existing directory ("no such local
    directory", not the hub's repo-id format error). A hub id must be in the local cache, or the hub must answer
    one metadata request: huggingface_hub retries an unreachable hub with backoff for ~25 s per file before
    transformers gives up (huggingface_hub/file_download.py:1170-1189, utils/_http.py:459-559), while a cached file
    is used without retries (file_download.py:1142-1168). Offline mode (``HF_HUB_OFFLINE=1``,
    huggingface_hub/constants.py:194) only checks the cache. ``option`` names the setting in messages. URLs
    (``hdfs://...``) are left to the engine.
    """
    text = str(name_or_path)
    if "://" in text:
        return
    path = Path(text).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise DataError(f"{option} {text} is a file; give a model directory (config.json and weights) or a hub id")
    if _looks_local(text):
        raise DataError(f"no such local directory: {text} ({option}); give a model directory (config.json and "
                        "weights), e.g. RUN/checkpoints/<name>, or a hub id such as org/name")
    _check_hub_model(text, option)


def _check_hub_model(repo_id: str, option: str) -> None:
    import httpx
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return
    except HFValidationError as err:
        raise DataError(f"{option} {repo_id!r} is neither a local directory nor a hub id (org/name): {err}") from None
    if constants.HF_HUB_OFFLINE:
        raise DataError(f"{option} {repo_id} is not in the local cache and HF_HUB_OFFLINE=1 forbids downloading it; "
                        "download it once online, or give a local model directory")
    try:
        # One request: retry_on_errors defaults to False here (file_download.py:1617-1670).
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except (httpx.TimeoutException, httpx.NetworkError) as err:
        raise DataError(
            f"cannot reach the hub at {constants.ENDPOINT} to download {option} {repo_id} ({type(err).__name__}), "
            "and it is not in the local cache; check the network (or HF_ENDPOINT), give a local model directory, or "
            "set HF_HUB_OFFLINE=1 to use only the cache") from None
    except GatedRepoError:
        raise DataError(f"{option} {repo_id} is gated on the hub: accept its terms on the model page, then log in "
                        "(hf auth login)") from None
    except RepositoryNotFoundError:
        raise DataError(f"{option} {repo_id}: no such local directory, and no such model on the hub (or it is "
                        "private: log in with hf auth login)") from None
    # Anything else (e.g. a repo without config.json) is left to transformers' own message.


_QUIET_BARS = ("Loading weights", "Writing model shards")
_bars_hooked = False


def quiet_weight_bars() -> None:
    """Hide transformers' "Loading weights" and "Writing model shards" bars, which every load and save of a model
    prints (a training run saves many times; they bury siri's own progress), and keep every other bar (the hub's
    downloads). Through transformers' hook on its tqdm (transformers/utils/logging.py:424 ``set_tqdm_hook``; the
    bars: transformers/core_model_loading.py:1460, modeling_utils.py:3537). Idempotent."""
    global _bars_hooked
    from transformers.utils import logging as hf_logging

    if _bars_hooked or not hasattr(hf_logging, "set_tqdm_hook"):
        return
    previous = None

    def hook(factory: Any, args: tuple, kwargs: dict) -> Any:
        if kwargs.get("desc") in _QUIET_BARS:
            return hf_logging.EmptyTqdm(*args, **kwargs)
        return previous(factory, args, kwargs) if previous else factory(*args, **kwargs)

    previous = hf_logging.set_tqdm_hook(hook)
    _bars_hooked = True
