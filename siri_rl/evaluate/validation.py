"""Held-out validation during training with ``siri eval``'s code: which samples a validation draws (the same plan,
seeds and batches as ``siri eval``), and its records once an engine has generated them: a ``siri eval`` results
directory ``RUN/validation/round-RRRRR/`` and one ``RUN/validation.jsonl`` row per benchmark (:mod:`siri_rl.run_dir`).

The engines sample with their own model or rollout engine and sit below this package: ``siri train`` (and the toy)
build a :class:`Validator` and hand it to the engine, whose callback calls :meth:`Validator.plan` on every process,
generates its share of the calls, and gives the gathered completions to :meth:`Validator.write` on the main one.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from siri_rl.config import ExperimentConfig
from siri_rl.evaluate.config import EvalConfig
from siri_rl.evaluate.driver import load_eval_problems, run_eval
from siri_rl.evaluate.plan import Unit, plan_units
from siri_rl.run_dir import (
    append_validation_rows,
    read_validation_rows,
    truncate_validation,
    validation_results_dir,
)
from siri_rl.sampling import Completion
from siri_rl.validation import validation_due

Calls = list[tuple[int, list[Unit]]]  # (seed, units) of each generate call, as plan_units gives them


class _Replay:
    """The completions an engine generated for a validation's calls, served to :func:`run_eval` in its order."""

    def __init__(self, completions: dict[int, list[list[Completion]]], calls: Calls):
        self.by_seed = {(seed, units[0].problem_id, units[0].sample_indices[0]): completions[i]
                        for i, (seed, units) in enumerate(calls)}

    def generate(self, units: list[Unit], seed: int) -> list[list[Completion]]:
        return self.by_seed[(seed, units[0].problem_id, units[0].sample_indices[0])]

    def close(self) -> None:
        """Nothing to stop: the engine belongs to the trainer."""


class Validator:
    """The ``validation:`` section of ``cfg`` for one run directory.

    Args:
        cfg: the run's config (``validation``, ``schedule.l_max``, ``data.require_think_end``, ``training.rounds``).
        run_dir: the run directory.
        tokenizer: the tokenizer the engine trains with (prompts are its chat template's ids, as in ``siri eval``);
            the engine sets it when None, else it is loaded from ``model`` at the first validation.
        model: what ``eval_args.json`` names as the model (where the run's tokenizer loads from, for ``siri eval
            --report-only``); default ``cfg.model.name_or_path``.
        benchmarks: the benchmarks as resolved paths or names, for a caller that resolves names of its own (the toy:
            ``toy`` -> its held-out file); default ``validation.benchmarks``.
    """

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, *, tokenizer: Any = None,
                 model: str | Path | None = None, benchmarks: list[str] | None = None):
        v = cfg.validation
        self.section, self.rounds, self.run_dir, self.tokenizer = v, cfg.training.rounds, Path(run_dir), tokenizer
        self.base = EvalConfig(
            model=str(model or cfg.model.name_or_path), out=self.run_dir, benchmarks=list(benchmarks or v.benchmarks),
            n=v.n, temperature=v.temperature, top_p=v.top_p, max_tokens=v.max_tokens or cfg.schedule.l_max,
            data_dir=v.data_dir, seed=v.seed, limit=v.limit, require_think_end=cfg.data.require_think_end,
            batch_size=v.batch_size, progress=False,
            # the accuracy-vs-budget curve regrades every response at each shorter budget: one point here (the
            # fixed cap) keeps a validation at its generation's cost; `siri eval --report-only --budgets` adds it
            budgets=[v.max_tokens or cfg.schedule.l_max])
        self._problems: dict[str, list[dict]] | None = None
        self._prompt_ids: dict[tuple[str, str], list[int]] = {}

    @property
    def max_tokens(self) -> int:
        """The fixed cap of every validation (tokens)."""
        return self.base.max_tokens

    def due(self, done_rounds: int) -> bool:
        """Whether the policy after ``done_rounds`` rounds is validated (:func:`siri_rl.validation.validation_due`)."""
        return validation_due(done_rounds, self.section, self.rounds)

    def done(self, done_rounds: int) -> bool:
        """Whether ``RUN/validation.jsonl`` already holds the validation after ``done_rounds`` rounds."""
        return any(row["round"] == done_rounds for row in read_validation_rows(self.run_dir))

    def resume(self, done_rounds: int) -> None:
        """The resume policy (:func:`siri_rl.run_dir.truncate_validation`); main process only."""
        truncate_validation(self.run_dir, done_rounds)

    def eval_config(self, round_: int, backend: str) -> EvalConfig:
        """The ``siri eval`` arguments of the validation after ``round_`` rounds, sampled by the rule of ``backend``
        (``transformers``: one seeded batch per call; ``vllm``: one seeded request per sample)."""
        return replace(self.base, out=validation_results_dir(self.run_dir, round_), backend=backend)

    def plan(self, round_: int, backend: str) -> Calls:
        """The generate calls of a validation, exactly those ``siri eval`` of the same arguments makes."""
        cfg = self.eval_config(round_, backend)
        if self._problems is None:
            from siri_rl.prompts import load_tokenizer, prompt_token_ids

            self.tokenizer = self.tokenizer if self.tokenizer is not None else load_tokenizer(self.base.model)
            self._problems = load_eval_problems(cfg)
            self._prompt_ids = {(b, str(p["id"])): prompt_token_ids(p["problem"], self.tokenizer)
                                for b, rows in self._problems.items() for p in rows}
        return plan_units(self._problems, self._prompt_ids, cfg, set())

    @property
    def max_prompt_tokens(self) -> int:
        """The longest validation prompt (tokens); known after the first :meth:`plan`."""
        return max((len(p) for p in self._prompt_ids.values()), default=0)

    def write(self, round_: int, backend: str, calls: Calls, completions: dict[int, list[list[Completion]]]
              ) -> list[dict[str, Any]]:
        """Grade and summarise one validation's completions (``{call index: completions}``) into its results
        directory (written afresh), then append its ``validation.jsonl`` rows; returns the rows."""
        cfg = self.eval_config(round_, backend)
        shutil.rmtree(cfg.out, ignore_errors=True)  # a validation a kill cut short is redone whole
        summary = run_eval(cfg, backend=_Replay(completions, calls), tokenizer=self.tokenizer)
        rows = [{"round": round_, "benchmark": name, "acc": b["acc"], "acc_ci": b["acc_ci"], "mean_len": b["length"],
                 "truncated_frac": round(b["truncated"] / 100, 6), "n": cfg.n, "problems": b["n_problems"],
                 "max_tokens": cfg.max_tokens, "temperature": cfg.temperature}
                for name, b in summary["benchmarks"].items()]
        append_validation_rows(self.run_dir, rows)
        return rows
