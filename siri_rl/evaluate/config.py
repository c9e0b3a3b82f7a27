"""Arguments of one ``siri eval`` run and the paper's evaluation settings (§5.1): AIME24, AIME25, AMC and MATH500,
64 samples per problem at temperature 0.6, top-p 0.95, at most 16384 new tokens."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siri_rl.data import benchmark_name
from siri_rl.results import EvalError

# Paper §5.1 evaluation settings.
PAPER_BENCHMARKS = ("aime24", "aime25", "amc", "math500")
PAPER_N = 64
PAPER_TEMPERATURE = 0.6
PAPER_TOP_P = 0.95
PAPER_MAX_TOKENS = 16384

BACKENDS = ("vllm", "transformers")
DTYPES = ("auto", "bfloat16", "float16", "float32")  # what both backends take (torch dtype names)

# Display names used in tables (Table 1 of the paper).
BENCHMARK_TITLES = {"aime24": "AIME24", "aime25": "AIME25", "amc": "AMC", "math500": "MATH500"}


@dataclass
class EvalConfig:
    """Arguments of one ``siri eval`` run. Lengths are in tokens of the model's tokenizer."""

    model: str
    out: Path
    benchmarks: Sequence[str] = PAPER_BENCHMARKS
    n: int = PAPER_N
    temperature: float = PAPER_TEMPERATURE
    top_p: float = PAPER_TOP_P
    max_tokens: int = PAPER_MAX_TOKENS
    backend: str = "vllm"
    data_dir: str | None = None
    seed: int = 0
    limit: int | None = None  # first K problems per benchmark (smoke runs)
    require_think_end: bool = True  # grade only a \boxed{} after </think>, as the reward does (§4.1)
    budgets: Sequence[int] | None = None  # default: powers of two from 2048 up to max_tokens
    batch_size: int = 64  # transformers: rows per generate call; vllm: problems per engine call (x n samples)
    tensor_parallel_size: int = 1
    dtype: str = "auto"  # transformers: bf16 on GPU, fp32 on CPU; vllm: the engine's own choice (bf16 on CPU too)
    enforce_eager: bool = False  # vllm: skip torch.compile / CUDA graphs (faster start, slower decoding)
    device: str | None = None  # transformers only; default cuda if available
    grade_workers: int | None = None
    grade_timeout: float = 5.0
    progress: bool = True
    group_by: Sequence[str] = ()  # problem fields to break accuracy and length down by (summary only)
    data_parallel_size: int = 1  # vllm: independent engines, each on its own tensor_parallel_size GPUs

    def __post_init__(self) -> None:
        """Every argument checked here, before any model or data is loaded (``siri eval``, ``siri select`` and the
        toy build one); a bad one is :class:`EvalError` naming the option."""
        self.out = Path(self.out)
        # A local model folder is kept as an absolute path: eval_args.json must name what resolves again from any
        # directory (`siri eval --report-only` loads the tokenizer from it). A hub id stays as typed.
        if self.model and self.model != "-" and Path(self.model).expanduser().exists():
            self.model = str(Path(self.model).expanduser().absolute())
        if isinstance(self.benchmarks, str):
            raise EvalError(f"benchmarks must be a list of names, got {self.benchmarks!r}")
        self.benchmarks = [b.strip() for b in self.benchmarks if b.strip()]
        if not self.benchmarks:
            raise EvalError("no benchmarks given; pass e.g. --benchmarks aime24,aime25,amc,math500")
        if len(set(self.benchmarks)) != len(self.benchmarks):
            raise EvalError(f"benchmark listed twice in {self.benchmarks}")
        names = [benchmark_name(b) for b in self.benchmarks]
        clash = [b for b in self.benchmarks if names.count(benchmark_name(b)) > 1]
        if clash:
            raise EvalError(f"benchmarks {', '.join(clash)} have the same name {benchmark_name(clash[0])!r} in "
                            "samples and tables (a file is named by its stem); rename one")
        if self.backend not in BACKENDS:
            raise EvalError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.n < 1 or self.max_tokens < 1 or self.batch_size < 1:
            raise EvalError("--n, --max-tokens and --batch-size must be positive integers")
        if self.limit is not None and self.limit < 1:
            raise EvalError("--limit must be a positive number of problems per benchmark")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise EvalError(f"--temperature must be a finite number >= 0 (paper: {PAPER_TEMPERATURE}), got "
                            f"{self.temperature}")
        if not 0 < self.top_p <= 1:
            raise EvalError(f"--top-p must be in (0, 1] (paper: {PAPER_TOP_P}), got {self.top_p}")
        if self.dtype not in DTYPES:
            raise EvalError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.grade_workers is not None and self.grade_workers < 1:
            raise EvalError(f"--grade-workers must be a positive number of processes (default: the CPUs), got "
                            f"{self.grade_workers}")
        if not (math.isfinite(self.grade_timeout) and self.grade_timeout > 0):
            raise EvalError(f"--grade-timeout must be a positive number of seconds per answer, got {self.grade_timeout}")
        self.budgets = resolve_budgets(self.budgets, self.max_tokens)
        self.group_by = [g.strip() for g in self.group_by if g.strip()]
        if self.data_parallel_size < 1:
            raise EvalError("--data-parallel-size must be a positive number of engines")
        if self.data_parallel_size > 1 and self.backend != "vllm":
            raise EvalError("--data-parallel-size needs --backend vllm (a transformers batch is seeded as a whole, "
                            "so splitting it between engines would change its samples)")

    def identity(self) -> dict[str, Any]:
        """The arguments that determine which samples exist and how they are graded (checked on resume)."""
        return {
            "model": self.model,
            "benchmarks": list(self.benchmarks),
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "backend": self.backend,
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "seed": self.seed,
            "limit": self.limit,
            "require_think_end": self.require_think_end,
        }


def resolve_budgets(budgets: Sequence[int] | None, max_tokens: int) -> list[int]:
    """Sorted budgets (tokens) <= max_tokens, always ending at max_tokens.

    Default: powers of two from 2048 (or max_tokens/8 for small max_tokens) up to max_tokens.
    """
    if budgets is None:
        start = 2048 if max_tokens > 2048 else max(1, max_tokens // 8)
        budgets = []
        b = start
        while b < max_tokens:
            budgets.append(b)
            b *= 2
    bad = [b for b in budgets if int(b) < 1]
    if bad:
        raise EvalError(f"budgets must be positive token counts, got {bad}")
    return sorted({int(b) for b in budgets if int(b) < max_tokens} | {max_tokens})
