"""The embedded default: a tiny "overthinking" reasoner on which SIRI's effect shows in minutes on a CPU.

``model.name_or_path: toy`` means "the toy base model described by the config's ``toy.base`` section" (built by
supervised training on first use and cached, see :mod:`siri_rl.toy.model`); ``data.train: toy`` means generated
problems of the task ``toy.base.task`` (:mod:`siri_rl.toy.task`). Everything else about a toy run is an ordinary
SIRI run on TRL.

The toy sits above the engines: ``siri train`` resolves these names to a model directory and problems (rows, or a
JSONL file for an engine that reads ``data.train`` from disk) before it calls one; no engine knows them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

TOY = "toy"


def is_toy_model(cfg: Any) -> bool:
    return cfg.model.name_or_path == TOY


def is_toy_data(cfg: Any) -> bool:
    return cfg.data.train == TOY


def toy_spec(cfg: Any):
    from siri_rl.toy.model import ToyBaseSpec

    try:
        return ToyBaseSpec.from_dict(cfg.toy.base)
    except (TypeError, ValueError) as err:
        from siri_rl.config import ConfigError

        raise ConfigError(f"toy.base: {err}") from None


def toy_model_path(cfg: Any, *, force: bool = False) -> Path:
    """The cached toy base model of ``cfg`` (built now if missing)."""
    from siri_rl.toy.model import ensure_toy_base

    return ensure_toy_base(toy_spec(cfg), force=force)


def toy_train_rows(cfg: Any) -> list[dict]:
    """Training problems for a toy run: ``toy.train_problems`` problems (seeded by ``training.seed``)."""
    from siri_rl.toy.task import make_problems

    spec = toy_spec(cfg)
    n = cfg.toy.train_problems
    return [p.to_dict() for p in make_problems(n, seed=cfg.training.seed, min_terms=spec.min_terms,
                                               max_terms=spec.max_terms, prefix="train", task=spec.task,
                                               functions=spec.functions, difficulties=spec.difficulties)]


def toy_train_file(cfg: Any) -> Path:
    """:func:`toy_train_rows` as a JSONL file, for an engine that reads ``data.train`` from disk (veRL). Cached
    beside the base models, named by what determines the rows (count, seed, difficulty range), written atomically
    on first use: a resumed run names the same file."""
    from siri_rl.toy.model import cache_root

    spec = toy_spec(cfg)
    ident = {"n": cfg.toy.train_problems, "seed": cfg.training.seed, "min_terms": spec.min_terms,
             "max_terms": spec.max_terms}
    if spec.task != "count":  # the count task's files keep their names
        ident["task"] = spec.task
    if spec.functions != 1:
        ident["functions"] = spec.functions
    if spec.difficulties:
        ident["difficulties"] = list(spec.difficulties)
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / f"train-{key}.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in toy_train_rows(cfg)))
        tmp.replace(path)
    return path


def with_toy_train_file(cfg: Any) -> Any:
    """``cfg`` with ``data.train: toy`` replaced by :func:`toy_train_file` (a copy; ``cfg`` is left as it is)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train=str(toy_train_file(cfg))))
