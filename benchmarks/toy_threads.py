"""The toy's speed with one or two torch threads (and torch's default), on an idle machine and beside one busy process.

    python benchmarks/toy_threads.py --out runs/toy-threads                 # SFT steps and RL rounds, 2 repeats
    python benchmarks/toy_threads.py --out runs/toy-threads --sft-steps 20 --rounds 2 --repeats 1   # smoke

Two pieces of the embedded default (``configs/toy.yaml``) are timed, each in a fresh process so that the thread
count is the process's own: the base model's supervised build (``--sft-steps`` steps of the shipped spec; seconds
per step) and the RL rounds of ``siri train`` on the cached base model (``--rounds`` rounds; seconds per round,
after the first, from the rows of ``metrics.jsonl``). Each runs with ``torch.set_num_threads`` 1, 2 and torch's default, idle and while
one ordinary CPU-bound process (a Python busy loop, one core) runs beside it; the cells are interleaved over
``--repeats`` so that drift in the machine's speed spreads over all of them. Writes ``OUT/threads.json`` and
``OUT/threads.md`` (min and median per cell, and each cell against two threads idle).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

THREADS = ("1", "2", "default")
LOADS = ("idle", "busy")
SFT_SNIPPET = """
import sys, time, torch
threads = sys.argv[1]
if threads != "default":
    torch.set_num_threads(int(threads))
from siri_rl.config import load_config
from siri_rl.toy import toy_spec
from siri_rl.toy.model import build_toy_base
import dataclasses, json, tempfile
spec = dataclasses.replace(toy_spec(load_config(sys.argv[2], json.loads(sys.argv[4]))), sft_steps=int(sys.argv[3]))
t0 = time.time()
with tempfile.TemporaryDirectory() as d:
    build_toy_base(spec, d + "/base", progress=False)
    print(torch.get_num_threads(), (time.time() - t0) / spec.sft_steps)
"""


def config_path(name: str = "toy") -> str:
    return str(Path(__file__).resolve().parents[1] / "siri_rl" / "configs" / f"{name}.yaml")


def time_sft(threads: str, steps: int, overrides: list[str]) -> float:
    """Seconds per SFT step of the toy base model's build (the whole build over ``steps``, save included)."""
    proc = subprocess.run([sys.executable, "-c", SFT_SNIPPET, threads, config_path(), str(steps), json.dumps(overrides)],
                          capture_output=True, text=True, check=True)
    return float(proc.stdout.split()[-1])


def time_rounds(threads: str, rounds: int, out: Path, overrides: list[str]) -> float:
    """Seconds per RL round of ``siri train`` (the toy default, cached base model) over ``rounds`` rounds."""
    shutil.rmtree(out, ignore_errors=True)
    override = ["toy.torch_threads=null" if threads == "default" else f"toy.torch_threads={threads}"]
    # The smallest evaluation the config allows keeps the timed part the RL rounds (summary's train_s).
    siri = [sys.executable, "-m", "siri_rl.cli"]  # this interpreter's install, whether or not it is on PATH
    subprocess.run([*siri, "train", "-o", str(out), f"training.rounds={rounds}", "toy.eval.per_difficulty=1",
                    *overrides, *override], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    # the rounds after the first (setup, model load and the first round's warm-up left out), from each row's wall_s
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return (rows[-1]["wall_s"] - rows[0]["wall_s"]) / (len(rows) - 1)


def busy_process() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(out: Path, sft_steps: int, rounds: int, repeats: int, overrides: list[str]) -> dict:
    cells: dict[str, list[float]] = {}
    out.mkdir(parents=True, exist_ok=True)
    total = repeats * len(LOADS) * len(THREADS) * 2
    done = 0
    for _ in range(repeats):
        for load in LOADS:
            for threads in THREADS:
                hog = busy_process() if load == "busy" else None
                try:
                    for piece in ("sft", "rl"):
                        t = (time_sft(threads, sft_steps, overrides) if piece == "sft"
                             else time_rounds(threads, rounds, out / "run", overrides))
                        cells.setdefault(f"{piece}|{load}|{threads}", []).append(t)
                        done += 1
                        print(f"[{done}/{total}] {piece:3s} {load:4s} threads={threads:7s} {t:.3f} s", flush=True)
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
    shutil.rmtree(out / "run", ignore_errors=True)
    return {"cells": cells, "sft_steps": sft_steps, "rounds": rounds, "repeats": repeats, "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d"), "torch_default_threads": _torch_default()}


def _torch_default() -> int:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def render(result: dict) -> str:
    cells = result["cells"]
    lines = [f"torch's default on this machine: {result['torch_default_threads']} threads "
             f"({result['cpus']} CPUs); {result['repeats']} repeats; SFT: {result['sft_steps']} steps of the shipped "
             f"base spec; RL: {result['rounds']} rounds of `siri train`", "",
             "| piece | load | threads | min (s) | median (s) | vs 2 threads idle |", "|---|---|---|---|---|---|"]
    for piece in ("sft", "rl"):
        ref = statistics.median(cells[f"{piece}|idle|2"])
        for load in LOADS:
            for threads in THREADS:
                v = cells[f"{piece}|{load}|{threads}"]
                med = statistics.median(v)
                lines.append(f"| {'SFT step' if piece == 'sft' else 'RL round'} | {load} | {threads} | "
                             f"{min(v):.3f} | {med:.3f} | {med / ref:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/toy-threads"))
    ap.add_argument("--sft-steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for both pieces")
    args = ap.parse_args()
    result = measure(args.out, args.sft_steps, args.rounds, args.repeats, args.overrides)
    md = render(result)
    (args.out / "threads.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "threads.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
