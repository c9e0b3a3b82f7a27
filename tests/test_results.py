"""The results directory (siri_rl.results): a core module that the readers of results (compare, analysis) use
without the evaluation driver, and the resume point a rerun of `siri eval` starts from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from siri_rl.results import ARGS_FILE, SAMPLES_FILE, EvalError, finished_samples, write_args

REPO = Path(__file__).resolve().parents[1]


def _siri_modules_after(statement: str) -> set[str]:
    """The siri_rl modules a fresh interpreter has loaded after ``statement`` (this checkout first on the path)."""
    code = f"{statement}; import json, sys; print(json.dumps([m for m in sys.modules if m.startswith('siri_rl')]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout))


def test_results_is_core_and_evaluate_reexports_its_error():
    assert _siri_modules_after("import siri_rl.results") == {"siri_rl", "siri_rl.results"}
    import siri_rl.evaluate
    import siri_rl.results

    assert siri_rl.evaluate.EvalError is siri_rl.results.EvalError


def test_readers_of_results_do_not_load_the_evaluation_driver():
    """`siri analyze` reads results directories with the core alone; `siri compare` also uses the summary
    statistics and the paper's benchmark order, and loads no more of the evaluate package than those."""
    def evaluate_modules(module: str) -> set[str]:
        loaded = _siri_modules_after(f"import {module}")
        assert module in loaded
        return {m for m in loaded if m.startswith("siri_rl.evaluate")}

    assert evaluate_modules("siri_rl.analysis") == set()
    assert evaluate_modules("siri_rl.compare") == {"siri_rl.evaluate", "siri_rl.evaluate.config",
                                                   "siri_rl.evaluate.stats"}


def test_finished_samples_checks_the_arguments_then_cuts_a_half_written_line(tmp_path):
    """The resume point: keys of the samples on disk; samples of other arguments are refused before anything in the
    directory changes; a half-written last line (a kill mid-write) is cut so that appends start on a new line."""
    ident = {"model": "m", "n": 2}
    rows = [{"benchmark": "amc", "problem_id": 1, "sample_index": i} for i in range(2)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    samples = tmp_path / SAMPLES_FILE
    samples.write_text(text + '{"benchmark": "amc", "prob')
    write_args(tmp_path, ident)
    with pytest.raises(EvalError, match=r"other arguments \(n: 2 -> 3\).*new --out"):
        finished_samples(tmp_path, {**ident, "n": 3})
    assert samples.read_text().endswith('"prob')  # refused: left as it was
    assert finished_samples(tmp_path, ident) == {("amc", "1", 0), ("amc", "1", 1)}
    assert samples.read_text() == text
    # no samples: the arguments do not bind yet (a failed start leaves nothing that refuses a retry)
    samples.write_text('{"half')
    assert finished_samples(tmp_path, {**ident, "n": 3}) == set() and samples.read_text() == ""
    (tmp_path / ARGS_FILE).unlink()
    samples.write_text(text)
    with pytest.raises(EvalError, match=f"{ARGS_FILE} does not; use a new --out"):
        finished_samples(tmp_path, ident)
    with pytest.raises(EvalError, match="is a file, not a directory"):
        finished_samples(samples, ident)
