"""The embedded default's headline (README's default-run paragraph, docs/benchmarks.md "The toy over seeds") is a
distribution measured over training seeds and base models by ``benchmarks/toy_seeds.py`` on exactly these settings.
An edit that changes what a toy run computes changes a key here: re-measure, then update the docs and the keys."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from siri_rl.config import load_config
from siri_rl.toy import toy_spec
from siri_rl.toy.run import settings_key

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
# settings_key of each config the seed table measured (everything but training.seed, toy.base.seed, the threads)
MEASURED = {"toy": "672539f9966e", "toy-constant": "f1a2575abb72", "toy-constant-min": "65b0ccc9e520"}
# the toy base model's cache key (siri_rl.toy.model.ToyBaseSpec.key) for each base-model seed measured
BASE_KEYS = {0: "f3d410f1338f", 1: "3919547e8cfe"}
TRAINING_SEEDS = range(5)


def config(name: str, *overrides: str):
    return load_config(files("siri_rl") / "configs" / f"{name}.yaml", list(overrides))


def test_the_default_runs_the_settings_the_seed_table_measured():
    changed = {name: settings_key(config(name)) for name, key in MEASURED.items() if settings_key(config(name)) != key}
    assert not changed, (f"{sorted(changed)} no longer run the settings docs/benchmarks.md's seed table measured "
                         f"(keys now {changed}): re-run `python benchmarks/toy_seeds.py run`, update the table, the "
                         "README's default-run paragraph and MEASURED")
    toy = config("toy")
    assert toy.training.seed in TRAINING_SEEDS and toy_spec(toy).seed in BASE_KEYS


def test_the_base_models_are_the_ones_measured():
    for seed, key in BASE_KEYS.items():
        assert toy_spec(config("toy", f"toy.base.seed={seed}")).key() == key
    for name in ("toy-constant", "toy-constant-min"):  # the constants start from the same base model
        assert toy_spec(config(name)).key() == BASE_KEYS[0]


def test_the_seed_table_names_the_settings_it_measured():
    text = DOCS.read_text(encoding="utf-8")
    missing = [key for key in [*MEASURED.values(), *BASE_KEYS.values()] if key not in text]
    assert not missing, f"docs/benchmarks.md's seed table does not name {missing}"


def test_the_default_run_prints_the_measured_spread_under_its_table():
    from siri_rl.toy.run import TYPICAL, typical_line

    assert list(TYPICAL) == [MEASURED["toy"]]
    assert "vary by seed and machine" in typical_line(config("toy")) and "SIRI-high" in typical_line(config("toy"))
    assert "SIRI-high" not in typical_line(config("toy", "training.group_size=4"))  # not what was measured
