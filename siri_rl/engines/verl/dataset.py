"""Problems -> veRL's RL parquet format (the layout ``verl.utils.dataset.RLHFDataset`` reads).

One row per problem::

    data_source   "siri_math" for training, the benchmark name (aime24, ...) for validation
    prompt        chat messages, [{"role": "user", "content": "<problem> Let's think step by step ..."}]
    ability       "math"
    reward_model  {"style": "rule", "ground_truth": "<answer>"}
    extra_info    {"index", "split", "id", "problem", "answer"}

The prompt is the same single user turn the TRL engine and ``siri eval`` use (:func:`siri_rl.data.build_messages`);
veRL applies the model's chat template itself when it builds the prompt tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siri_rl.data import benchmark_name, load_benchmark, load_problems
from siri_rl.errors import DataError
from siri_rl.prompts import INSTRUCTION, build_messages

if TYPE_CHECKING:
    from siri_rl.config import ExperimentConfig

TRAIN_DATA_SOURCE = "siri_math"


def to_verl_rows(
    problems: Sequence[dict[str, Any]],
    *,
    split: str = "train",
    data_source: str = TRAIN_DATA_SOURCE,
    instruction: str = INSTRUCTION,
) -> list[dict[str, Any]]:
    """Convert ``{"id", "problem", "answer"}`` dicts (from :func:`siri_rl.data.load_problems` or
    :func:`siri_rl.data.load_benchmark`) to veRL RL rows. A row's own ``benchmark`` field, when present, is its
    ``data_source`` (so veRL's validation metrics come out per benchmark)."""
    rows = []
    for index, item in enumerate(problems):
        problem, answer = item.get("problem"), item.get("answer")
        if not problem or answer is None or not str(answer).strip():
            raise DataError(
                f"problem {index} (id {item.get('id')!r}) has no problem text or answer; fix or drop it"
            )
        rows.append(
            {
                "data_source": str(item.get("benchmark") or data_source),
                "prompt": build_messages(str(problem), instruction),
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": str(answer)},
                "extra_info": {
                    "index": index,
                    "split": split,
                    "id": str(item.get("id", index)),
                    "problem": str(problem),
                    "answer": str(answer),
                },
            }
        )
    if not rows:
        raise DataError("no problems to write: the dataset is empty")
    return rows


def write_verl_parquet(
    problems: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    split: str = "train",
    data_source: str = TRAIN_DATA_SOURCE,
    instruction: str = INSTRUCTION,
) -> Path:
    """Write ``problems`` as a veRL RL parquet file at ``path`` (parents created); returns the path."""
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = to_verl_rows(problems, split=split, data_source=data_source, instruction=instruction)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def load_run_problems(cfg: ExperimentConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The training and validation problems of a veRL run: training from ``data.train`` (the first
    ``data.max_problems``), validation from ``validation.benchmarks`` (the first ``validation.limit`` of each; each row tagged with its benchmark, veRL's
    ``data_source``), else the first 64 training problems (veRL needs a validation file; validation stays off)."""
    d = cfg.data
    problems = load_problems(
        d.train,
        split=d.split,
        problem_field=d.problem_field,
        answer_field=d.answer_field,
        skip_invalid=d.skip_invalid,
    )
    if d.max_problems:
        problems = problems[: d.max_problems]
    v = cfg.validation
    if v.benchmarks:
        val = [{**row, "benchmark": benchmark_name(name)} for name in v.benchmarks
               for row in load_benchmark(name, v.data_dir)[: v.limit]]
    else:
        val = problems[:64]
    return problems, val
