"""The multi-node launch templates in examples/: valid bash, and with ``DRY_RUN=1`` they print their plan and run
their own ``siri train --engine verl`` command line with ``--dry-run`` (veRL's command for N nodes), starting
neither Slurm nor Ray."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = [EXAMPLES / "slurm-verl.sbatch", EXAMPLES / "ray-verl.sh"]


def _run(args, tmp_path, **env):
    siri = shutil.which("siri")
    if siri is None:
        pytest.skip("the siri command is not on PATH (pip install -e .)")
    full = {**os.environ, "DRY_RUN": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True, env=full, cwd=tmp_path,
                          timeout=300)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_scripts_are_valid_bash(script):
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_the_ray_script_refuses_an_unknown_role_and_plans_a_worker(tmp_path):
    res = _run([EXAMPLES / "ray-verl.sh", "nope"], tmp_path)
    assert res.returncode == 2 and res.stderr.strip() == "error: the first argument is head or worker, got 'nope'"
    res = _run([EXAMPLES / "ray-verl.sh", "worker", "10.1.2.3"], tmp_path, GPUS_PER_NODE="4")
    assert res.returncode == 0 and res.stdout.strip() == "plan: ray start --address=10.1.2.3:6379 --num-gpus=4 --block"


@pytest.mark.slow
@pytest.mark.parametrize("script,args,env", [
    ("slurm-verl.sbatch", [], {"SLURM_JOB_NUM_NODES": "3"}),
    ("ray-verl.sh", ["head"], {"NNODES": "3"}),
], ids=["slurm", "ray"])
def test_the_dry_run_prints_veRLs_command_for_n_nodes(tmp_path, script, args, env):
    """~20 s each: ``siri train --dry-run`` imports veRL to resolve its config."""
    run = tmp_path / "run"
    res = _run([EXAMPLES / script, *args, "r1-distill-7b-siri-cosine640", run, "training.rounds=640"], tmp_path, **env)
    assert res.returncode == 0, res.stdout + res.stderr
    plan = [line for line in res.stdout.splitlines() if line.startswith("plan:")]
    assert plan and "3" in plan[0]
    assert (f"siri train --config r1-distill-7b-siri-cosine640 --engine verl -o {run} verl.trainer.nnodes=3 "
            "verl.trainer.n_gpus_per_node=8 training.rounds=640") in plan[-1]
    command = res.stdout[res.stdout.index("command:"):]
    assert "verl.trainer.main_ppo" in command and "trainer.nnodes=3" in command
    assert "trainer.n_gpus_per_node=8" in command and "trainer.total_training_steps=640" in command
    assert not run.exists()  # a dry run writes nothing
