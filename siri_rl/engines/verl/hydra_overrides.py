"""Hydra's command-line override grammar, for the per-experiment values ``siri train --engine verl`` passes to
``verl.trainer.main_ppo`` (the constant settings are in ``config/siri_trainer.yaml``).

``key=value`` with ``value`` rendered so that Hydra reads back the same Python value, and an ordered set with one
override per key (Hydra rejects a key given twice). Whether a string can go unquoted is asked of Hydra's own
parser; a quoted one escapes a quote and the backslashes right before a quote or at the end, the only escapes
Hydra's quoted strings have (hydra/core/override_parser/overrides_visitor.py:311-356).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z0-9_\-+./:@]+$")


@lru_cache(maxsize=1)
def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _reads_back(text: str) -> bool:
    try:
        return _parser().parse_override(f"k={text}").value() == text
    except Exception:  # Hydra's grammar errors (e.g. a leading '~' or '@')
        return False


def hydra_value(value: Any) -> str:
    """Render a Python value in Hydra's override grammar: strings are quoted unless Hydra reads them back as the
    same string unquoted (so ``'true'``, ``'1e-6'``, ``'~/data'`` and paths with spaces stay strings)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.match(text) and _reads_back(text):
        return text
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)  # \' -> \\\', ' -> \'
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + "'"  # before the closing quote


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, name)
        else:
            yield name, value


def _split_prefix(key: str) -> tuple[str, str]:
    match = re.match(r"^(\+\+|\+|~)?(.*)$", key)
    assert match is not None
    return match.group(1) or "", match.group(2)


@dataclass
class Overrides:
    """An ordered set of Hydra overrides, one per key: a later setting of a key replaces the earlier one. Keys may
    carry Hydra's ``+`` (add), ``++`` (add or replace) or ``~`` (delete) prefix; nested mappings are dotted."""

    items: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def set(self, key: str, value: Any) -> None:
        prefix, name = _split_prefix(key)
        old_prefix = self.items.get(name, ("", None))[0]
        self.items[name] = (prefix or old_prefix, value)

    def update(self, mapping: Mapping[str, Any]) -> None:
        for key, value in _flatten(mapping):
            self.set(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return self.items.get(_split_prefix(key)[1], ("", default))[1]

    def to_list(self) -> list[str]:
        return [f"{p}{k}" if p == "~" else f"{p}{k}={hydra_value(v)}" for k, (p, v) in self.items.items()]
