"""Experiment configs: one YAML per experiment, shared by both engines.

```yaml
name: r1-distill-1.5b-siri-cosine640
extends: base.yaml            # optional: deep-merged under this file (path relative to this file)
engine: trl                   # or verl
hardware: "8x H100 80GB"      # documentation: what the config was meant for
model:    {name_or_path: deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B, dtype: bfloat16}
data:     {train: agentica-org/DeepScaleR-Preview-Dataset}
schedule: {kind: cosine, l_max: 16384, l_min: 8192, cycle: 640}
training: {rounds: 1920, prompts_per_round: 128, group_size: 8, learning_rate: 1.0e-6}
validation: {benchmarks: [aime24], every: 40, n: 32}   # held-out validation during training
toy:  {train_problems: 4096, base: {...}, eval: {per_difficulty: 32}}   # the embedded toy (siri_rl.toy)
trl:  {...}                   # passed through to trl.GRPOConfig (validated by the TRL engine)
verl: {...}                   # Hydra overrides for veRL (validated by veRL's own composition)
```
Overrides on the command line: ``schedule.cycle=320`` or ``--schedule.cycle 320`` (values parsed as YAML).
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from siri_rl.adaptive import KIND as ADAPTIVE
from siri_rl.adaptive import AdaptiveSchedule, adaptive_from_dict
from siri_rl.data import DEFAULT_TRAIN_DATASET
from siri_rl.guard import GuardError, guard_from_dict
from siri_rl.schedule import LengthSchedule, ScheduleError, schedule_from_dict
from siri_rl.validation import KEYS as VALIDATION_KEYS
from siri_rl.validation import ValidationSection, validation_problem

ENGINES = ("trl", "verl")  # the engines `engine:` may name; siri_rl.engines dispatches to them


class ConfigError(ValueError):
    """An experiment config that cannot run as written."""


@dataclass
class ModelConfig:
    name_or_path: str = ""
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    max_context: int | None = None  # tokens; default: the model config's max_position_embeddings
    trust_remote_code: bool = False
    attn_implementation: str | None = None


@dataclass
class DataConfig:
    train: str = DEFAULT_TRAIN_DATASET  # hub id or local .jsonl/.json/.parquet
    split: str = "train"
    problem_field: str = "problem"
    answer_field: str = "answer"
    skip_invalid: bool = False
    max_problems: int | None = None
    require_think_end: bool = True  # False for models that do not think in <think> tags
    max_prompt_length: int = 1024  # tokens; longer prompts are dropped (with a warning) when the data is loaded


@dataclass
class TrainingConfig:
    rounds: int = 1  # rollout rounds (= schedule steps)
    prompts_per_round: int = 128  # SIRI §5.1
    group_size: int = 8  # rollouts per prompt (GRPO group)
    learning_rate: float = 1e-6  # SIRI §5.1
    temperature: float = 1.0
    top_p: float = 1.0
    clip_low: float = 0.2  # DAPO decoupled clipping
    clip_high: float = 0.28
    kl_coef: float = 0.0  # no KL term
    updates_per_round: int = 1  # optimizer steps per rollout batch
    seed: int = 42
    save_every: int | None = None  # periodic checkpoints, in rounds; trough/peak checkpoints are always saved
    device: str = "auto"  # auto | cpu | cuda
    # The no-learning guard (siri_rl.guard): warn | stop | off, or a mapping {mode, rounds, min_signal_frac,
    # max_clipped_frac}; on by default as a warning.
    guard: Any = "warn"


@dataclass
class ToyEvalConfig:
    """``toy.eval``: the toy's fixed-cap evaluation of the base model and every checkpoint (``siri eval``'s code)."""

    per_difficulty: int = 32  # held-out problems per difficulty
    max_len: int | None = None  # the fixed cap (tokens); default schedule.l_max
    temperature: float = 0.6
    seed: int = 20_250_925  # draws the held-out problems and seeds the sampling
    n: int = 1  # samples per problem


@dataclass
class ToyConfig:
    """``toy:``: the embedded toy (:mod:`siri_rl.toy`), read where ``model.name_or_path`` or ``data.train`` is
    ``toy``. ``base`` is the base model's spec, checked by :meth:`siri_rl.toy.model.ToyBaseSpec.from_dict`."""

    torch_threads: int | str | None = None  # CPU threads for torch: a number, auto (the idle CPUs), null (torch's)
    train_problems: int = 4096  # generated training problems (seeded by training.seed)
    base: dict[str, Any] = field(default_factory=dict)
    eval: ToyEvalConfig = field(default_factory=ToyEvalConfig)


@dataclass(kw_only=True)
class ExperimentConfig:
    # Required: a run without a length schedule is not a SIRI run. ``kind: adaptive`` gives the closed-loop
    # AdaptiveSchedule, whose cap depends on the training accuracy (the engine drives it round by round).
    schedule: LengthSchedule | AdaptiveSchedule
    name: str = "experiment"
    description: str = ""
    hardware: str = ""
    engine: str = "trl"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    validation: ValidationSection = field(default_factory=ValidationSection)
    toy: ToyConfig = field(default_factory=ToyConfig)
    trl: dict[str, Any] = field(default_factory=dict)
    verl: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the YAML file it came from

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (what ``--dry-run`` prints and the run directory keeps)."""
        out = {
            "name": self.name,
            "description": self.description,
            "hardware": self.hardware,
            "engine": self.engine,
            "model": asdict(self.model),
            "data": asdict(self.data),
            "schedule": self.schedule.to_dict(),
            "training": asdict(self.training),
        }
        # Sections most configs leave out are written only where they say something.
        for section, default in (("validation", ValidationSection()), ("toy", ToyConfig())):
            if getattr(self, section) != default:
                out[section] = asdict(getattr(self, section))
        for section in FREE_SECTIONS:
            if getattr(self, section):
                out[section] = copy.deepcopy(getattr(self, section))
        return out


TYPED_SECTIONS = {"model": ModelConfig, "data": DataConfig, "training": TrainingConfig,
                  "validation": ValidationSection, "toy": ToyConfig}
FREE_SECTIONS = ("trl", "verl")  # passed through to the engine, which validates them
TOP_LEVEL = ("name", "description", "hardware", "engine", "extends", "schedule", *TYPED_SECTIONS, *FREE_SECTIONS)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-6`` / ``2E+3`` as floats: PyYAML follows YAML 1.1, whose float
    pattern needs a dot (``1.0e-6``; yaml/resolver.py, the ``tag:yaml.org,2002:float`` resolver), so a learning rate
    written ``1e-6`` would be the string "1e-6"."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config {path} extends itself (cycle: {' -> '.join(map(str, seen + (path,)))})")
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = _load_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start + 1}); save the config as UTF-8") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent:
        base = _read_yaml(path.parent / parent, seen + (path,))
        # A schedule of another kind is a new schedule, not a patch: a constant baseline must not inherit the
        # parent's l_min/cycle.
        sched, base_sched = data.get("schedule"), base.get("schedule")
        if isinstance(sched, dict) and isinstance(base_sched, dict) and sched.get("kind", base_sched.get("kind")) != base_sched.get("kind"):
            base = {k: v for k, v in base.items() if k != "schedule"}
        data = _merge(base, data)
    return data


def parse_overrides(args: list[str]) -> list[str]:
    """Normalise CLI overrides to ``dotted.key=value``: accepts ``a.b=1`` and ``--a.b 1`` / ``--a.b=1``
    (in the ``--`` forms, dashes in the key become underscores: ``--training.group-size 8``)."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if not eq:
                if i + 1 < len(args) and not args[i + 1].startswith("--"):
                    value, i = args[i + 1], i + 1
                else:
                    value = "true"
            out.append(f"{key.replace('-', '_')}={value}")
        elif "=" in arg:
            out.append(arg)
        else:
            raise ConfigError(f"cannot read override {arg!r}: write key=value, e.g. schedule.cycle=320")
        i += 1
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for item in parse_overrides(overrides):
        key, _, raw = item.partition("=")
        try:
            value = _load_yaml(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a section")
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


def _typed(section: str, cls: type, values: Any) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"section {section!r} must be a mapping, got {values!r}")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}; allowed: {', '.join(sorted(allowed))}")
    values = dict(values)
    for f in fields(cls):  # nested sections (toy.eval) are typed too
        if is_dataclass(f.default_factory):
            values[f.name] = _typed(f"{section}.{f.name}", f.default_factory, values.get(f.name))
    return cls(**values)


def config_from_dict(data: dict[str, Any], source: str | None = None) -> ExperimentConfig:
    """Validate a config mapping and build an :class:`ExperimentConfig` (raises :class:`ConfigError`)."""
    where = f"{source}: " if source else ""
    if "eval" in data:
        raise ConfigError(f"{where}the eval: section is now validation: (both engines), with the keys "
                          f"{', '.join(VALIDATION_KEYS)}; rename eval: to validation:")
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{where}unknown top-level key(s) {', '.join(unknown)}; allowed: {', '.join(TOP_LEVEL)}")
    try:
        if data.get("schedule") is None:
            raise ConfigError("a config needs a 'schedule' section (kind, l_max, l_min, cycle ...)")
        if not isinstance(data["schedule"], dict):
            raise ConfigError(f"section 'schedule' must be a mapping, got {data['schedule']!r}")
        cfg = ExperimentConfig(
            name=str(data.get("name") or (Path(source).stem if source else "experiment")),
            description=str(data.get("description") or ""),
            hardware=str(data.get("hardware") or ""),
            engine=str(data.get("engine") or "trl"),
            source=source,
            schedule=_schedule(data["schedule"]),
            **{name: _typed(name, cls, data.get(name)) for name, cls in TYPED_SECTIONS.items()},
            **{name: dict(data.get(name) or {}) for name in FREE_SECTIONS},
        )
    except ScheduleError as err:
        raise ConfigError(f"{where}schedule: {err}") from None
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None
    except TypeError as err:
        raise ConfigError(f"{where}{err}") from None
    _validate(cfg, where)
    return cfg


def _schedule(section: dict[str, Any]) -> LengthSchedule | AdaptiveSchedule:
    """The open-loop schedule of ``schedule:``, or the closed-loop one for ``kind: adaptive``."""
    if str(section.get("kind", "")).strip().lower() == ADAPTIVE:
        return adaptive_from_dict(section)
    return schedule_from_dict(section)


def _is_number(value: Any) -> bool:  # a finite int or float (YAML's .inf/.nan and booleans are not)
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _validate(cfg: ExperimentConfig, where: str) -> None:
    t = cfg.training
    try:
        guard_from_dict(t.guard)
    except GuardError as err:
        raise ConfigError(f"{where}training.guard: {err}") from None
    if cfg.engine not in ENGINES:
        raise ConfigError(f"{where}engine must be one of {', '.join(ENGINES)}, got {cfg.engine!r}")
    if not cfg.model.name_or_path:
        raise ConfigError(f"{where}model.name_or_path is required (a hub id or a local model directory)")
    for name in ("rounds", "prompts_per_round", "group_size", "updates_per_round"):
        value = getattr(t, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}training.{name} must be a positive integer, got {value!r}")
    if t.group_size < 2:
        raise ConfigError(f"{where}training.group_size must be >= 2: GRPO normalises rewards within a group")
    if not 0 <= t.clip_low < 1 or not 0 <= t.clip_high < 10:
        raise ConfigError(f"{where}training.clip_low/clip_high out of range: {t.clip_low}, {t.clip_high}")
    for name in ("learning_rate", "temperature"):
        value = getattr(t, name)
        if not _is_number(value) or value <= 0:
            raise ConfigError(f"{where}training.{name} must be a positive number, got {value!r}")
    if not _is_number(t.top_p) or not 0 < t.top_p <= 1:
        raise ConfigError(f"{where}training.top_p must be in (0, 1] (1: no nucleus cut), got {t.top_p!r}")
    if not _is_number(t.kl_coef) or t.kl_coef < 0:
        raise ConfigError(f"{where}training.kl_coef must be a number >= 0 (0: no KL term), got {t.kl_coef!r}")
    if t.save_every is not None and (type(t.save_every) is not int or t.save_every < 1):  # a bool is no count
        raise ConfigError(f"{where}training.save_every must be a positive number of rounds, or null for none, got "
                          f"{t.save_every!r}")
    mpl = cfg.data.max_prompt_length
    if type(mpl) is not int or mpl < 1:
        raise ConfigError(f"{where}data.max_prompt_length must be a positive number of tokens, got {mpl!r}")
    toy, ev = cfg.toy, cfg.toy.eval
    for name, value in (("toy.train_problems", toy.train_problems), ("toy.eval.per_difficulty", ev.per_difficulty),
                        ("toy.eval.n", ev.n), ("toy.eval.max_len", ev.max_len)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{where}{name} must be a positive integer, got {value!r}")
    if (t := toy.torch_threads) not in (None, "auto") and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
        raise ConfigError(f"{where}toy.torch_threads must be a positive integer, auto (the idle CPUs) or null, got {t!r}")
    if isinstance(ev.temperature, bool) or not isinstance(ev.temperature, (int, float)) or ev.temperature < 0:
        raise ConfigError(f"{where}toy.eval.temperature must be a number >= 0, got {ev.temperature!r}")
    if not isinstance(toy.base, dict):
        raise ConfigError(f"{where}toy.base must be a mapping of the base model's spec, got {toy.base!r}")
    problem = validation_problem(cfg.validation)
    if problem:
        raise ConfigError(f"{where}{problem}")
    try:
        check_context(cfg, local_config=False)  # the model may not be on this machine yet: the engine checks it
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None


def check_context(cfg: ExperimentConfig, model_context: int | None = None, *, local_config: bool = True) -> None:
    """The context budget: the longest prompt (``data.max_prompt_length``) plus the largest cap L_max (or the
    validation's ``max_tokens``, if larger) must fit the model's context, in tokens. The context is ``model.max_context`` if set, else ``model_context`` (a loaded
    model's ``max_position_embeddings``), else, with ``local_config``, the ``max_position_embeddings`` of a local
    ``config.json`` in ``model.name_or_path`` (never downloads). No known context: nothing to check.
    The one check of this rule: the config loader (``model.max_context`` only) and the engines call it."""
    limit, source = cfg.model.max_context, "model.max_context"
    if limit is None:
        limit, source = model_context, "max_position_embeddings of the model"
    if limit is None and local_config:
        local = Path(cfg.model.name_or_path) / "config.json"
        if local.is_file():
            try:
                limit = json.loads(local.read_text()).get("max_position_embeddings")
            except (OSError, ValueError, AttributeError):
                limit = None  # unreadable here: transformers' own loading says what is wrong
            source = f"max_position_embeddings of {local}"
    if limit is None:
        return
    key, longest = max((("schedule.l_max", cfg.schedule.l_max), ("validation.max_tokens", cfg.validation.max_tokens
                                                                     or 0)), key=lambda kv: kv[1])
    need = longest + cfg.data.max_prompt_length
    if need > limit:
        raise ConfigError(f"{key} ({longest}) + data.max_prompt_length ({cfg.data.max_prompt_length}) = {need} tokens "
                          f"exceeds the model's context ({limit}, {source}); lower {key} or data.max_prompt_length")


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment config (following ``extends``), apply ``key=value`` overrides, and validate it."""
    path = Path(path)
    data = _read_yaml(path)
    try:
        return config_from_dict(apply_overrides(data, overrides or []), source=str(path))
    except ConfigError as err:
        if not overrides:
            raise
        try:  # the file alone is valid: the override is what is wrong, and the message says so
            config_from_dict(data, source=str(path))
        except ConfigError:
            raise err from None
        shown = " ".join(parse_overrides(overrides))
        raise ConfigError(str(err).replace(f"{path}: ", f"{path} with the override {shown}: ", 1)) from None
