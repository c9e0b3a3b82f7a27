"""The embedded default's headline over seeds: SIRI and both constant caps, several training seeds and base models.

    python benchmarks/toy_seeds.py run --out runs/toy-seeds                # 5 training seeds x 2 base models x 3 configs
    python benchmarks/toy_seeds.py run --out runs/toy-seeds --seeds 0,1 --base-seeds 0 training.group_size=16
    python benchmarks/toy_seeds.py report runs/toy-seeds                   # seeds.md, seeds.json, seeds.png

``run`` trains every (base seed, config, training seed) with ``siri train -c CONFIG -o OUT/baseB/CONFIG/seedS
training.seed=S toy.base.seed=B [overrides]``, one run at a time (each uses the config's torch threads), skipping
runs whose ``summary.json`` is complete; base models are built once per base seed and shared through the usual
cache. ``report`` reads every finished run and writes, per base seed and over all runs:

- per checkpoint: mean held-out accuracy and length over training seeds, the min-max range and a 95% interval
  (Student t over seeds: the spread between runs, not the sampling error of one evaluation);
- the share of seeds in which each claim of the README holds (definitions in :data:`CLAIMS`);
- ``seeds.png``: every seed's SIRI checkpoints (accuracy and length, at the fixed evaluation cap) with both constants'
  final models, one panel per base model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SIRI, CONSTANT_MAX, CONSTANT_MIN = "toy", "toy-constant", "toy-constant-min"
CONFIGS = (SIRI, CONSTANT_MAX, CONSTANT_MIN)
# 97.5% Student t quantiles by degrees of freedom (n - 1), for the 95% interval of a mean over seeds.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 19: 2.093, 24: 2.064, 29: 2.045}

CLAIMS = {
    "high_beats_constant": "SIRI-high (the last expanded checkpoint) more accurate than the constant L_max's final model",
    "high_close_and_shorter": "SIRI-high within 3 points of the constant L_max's final model (or above it) and shorter",
    "expanded_rise": "the expanded checkpoints rise from cycle 1 to the last cycle (last > first)",
    "expanded_monotone": "each expanded checkpoint at least as accurate as the one before, within 2 points",
    "compressed_short": "every compressed checkpoint >= 40% shorter than the base model",
    "compressed_accurate": "every compressed checkpoint at least as accurate as the base model",
    "compressed_both": "every compressed checkpoint >= 40% shorter than the base and at least as accurate",
    "beats_constant_min_hard": "SIRI-high more accurate than the constant L_min on the hardest problems",
    "length_oscillates": "training mean length at each peak >= 1.5x that at the trough before it (3-round means)",
}


def run_dir(out: Path, base_seed: int, config: str, seed: int) -> Path:
    return out / f"base{base_seed}" / config / f"seed{seed}"


def train_all(out: Path, seeds: list[int], base_seeds: list[int], configs: list[str], overrides: list[str],
              lock: Path | None = None, jobs: int = 1) -> None:
    """Every (base seed, config, training seed); finished runs are skipped. ``jobs`` runs at once (the first run of
    each base seed alone: it builds the base model the others share). ``lock``: a file each run holds (``flock``)
    while it trains, so that other CPU-heavy jobs on the machine wait between runs (one run at a time then)."""
    todo = [(b, c, s) for b in base_seeds for c in configs for s in seeds]
    log = out / "runs.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    write = threading.Lock()

    def one(i: int, b: int, config: str, s: int) -> None:
        rd = run_dir(out, b, config, s)
        if (rd / "summary.json").is_file():
            print(f"[{i}/{len(todo)}] {rd}: done, skipped", flush=True)
            return
        cmd = ["siri", "train", "-c", config, "-o", str(rd), f"training.seed={s}", f"toy.base.seed={b}", *overrides]
        if rd.exists():
            cmd.append("--resume")
        print(f"[{i}/{len(todo)}] {' '.join(cmd)}", flush=True)
        t0 = time.time()
        # with several jobs the runs share the lock with each other (flock -s), and hold out exclusive holders
        held = ["flock", *(["-s"] if jobs > 1 else []), str(lock)] if lock else []
        # `siri` of this interpreter's install, whether or not its environment is on PATH
        proc = subprocess.run([*held, sys.executable, "-m", "siri_rl.cli", *cmd[1:]], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        wall = time.time() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}): "
                             f"{proc.stderr.strip().splitlines()[-1:]}")
        entry = {"base_seed": b, "config": config, "seed": s, "cmd": cmd, "wall_s": round(wall, 1), "jobs": jobs,
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with write, log.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        print(f"    {rd}: {wall:.0f} s", flush=True)

    numbered = list(enumerate(todo, 1))
    for b in base_seeds:
        mine = [(i, *item) for i, item in numbered if item[0] == b]
        one(*mine[0])  # builds (or finds) this base seed's model
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [pool.submit(one, *item) for item in mine[1:]]:
                future.result()


def load_runs(out: Path) -> dict[tuple[int, str, int], dict]:
    """{(base seed, config, seed): summary.json} for every finished run under ``out``."""
    runs = {}
    for path in sorted(out.glob("base*/*/seed*/summary.json")):
        rd = path.parent
        try:
            key = (int(rd.parent.parent.name.removeprefix("base")), rd.parent.name, int(rd.name.removeprefix("seed")))
        except ValueError:
            continue
        summary = json.loads(path.read_text())
        summary["metrics"] = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines() if line]
        runs[key] = summary
    return runs


def _by_name(summary: dict) -> dict[str, dict]:
    return {r["name"]: r for r in summary["results"]}


def _hard(r: dict) -> float:
    """Accuracy on the hardest difficulty (most steps): the problems a constant L_min never fits."""
    return r["by_difficulty"][max(r["by_difficulty"], key=int)]


def peaks_and_troughs(metrics: list[dict]) -> list[tuple[int, int]]:
    """(trough round, next peak round) pairs of the run's cap schedule (from the ``max_len`` column)."""
    caps = [m["max_len"] for m in metrics]
    lo, hi = min(caps), max(caps)
    troughs = [i for i, c in enumerate(caps) if c == lo and (i == 0 or caps[i - 1] != lo)]
    pairs = []
    for t in troughs:
        peak = next((i for i in range(t, len(caps)) if caps[i] == hi), None)
        if peak is not None:
            pairs.append((t, peak))
    return pairs


def claims_for(siri: dict, const_max: dict | None, const_min: dict | None) -> dict[str, bool | None]:
    """Which of :data:`CLAIMS` hold for one SIRI run (and the constants trained from the same seeds)."""
    res = siri["results"]
    base = res[0]
    expanded = [r for r in res if "expanded" in r["name"]] or res[-1:]  # a run shorter than a cycle: its last model
    compressed = [r for r in res if "compressed" in r["name"]]
    high = expanded[-1]
    cmax = None if const_max is None else const_max["results"][-1]
    c = {
        "high_beats_constant": None if cmax is None else high["accuracy"] > cmax["accuracy"],
        "high_close_and_shorter": None if cmax is None else (high["accuracy"] >= cmax["accuracy"] - 0.03
                                                             and high["mean_length"] < cmax["mean_length"]),
        "expanded_rise": expanded[-1]["accuracy"] > expanded[0]["accuracy"],
        "expanded_monotone": all(b["accuracy"] >= a["accuracy"] - 0.02 for a, b in zip(expanded, expanded[1:])),
        "compressed_short": all(r["mean_length"] <= 0.6 * base["mean_length"] for r in compressed),
        "compressed_accurate": all(r["accuracy"] >= base["accuracy"] for r in compressed),
        "beats_constant_min_hard": None if const_min is None else _hard(high) > _hard(const_min["results"][-1]),
    }
    c["compressed_both"] = c["compressed_short"] and c["compressed_accurate"]
    lens = [m["completion_len_mean"] for m in siri["metrics"]]

    def window(i: int) -> float:
        return statistics.mean(lens[max(0, i - 2): i + 1])

    pairs = peaks_and_troughs(siri["metrics"])
    c["length_oscillates"] = bool(pairs) and all(window(p) >= 1.5 * window(t) for t, p in pairs)
    return {k: c[k] for k in CLAIMS}


def spread(values: list[float]) -> dict[str, float]:
    """Mean, min, max and the 95% Student-t interval of the mean over seeds."""
    n = len(values)
    mean = statistics.mean(values)
    half = 0.0
    if n > 1:
        t = T975.get(n - 1) or T975[max(k for k in T975 if k <= n - 1)]
        half = t * statistics.stdev(values) / math.sqrt(n)
    return {"n": n, "mean": mean, "min": min(values), "max": max(values), "ci_lo": mean - half, "ci_hi": mean + half}


def summarize(runs: dict[tuple[int, str, int], dict]) -> dict:
    """Per base seed and over all: each SIRI checkpoint's and each constant's spread; claim counts; run table."""
    base_seeds = sorted({b for b, _, _ in runs})
    groups: dict[str, list[tuple[int, int]]] = {f"base{b}": [(b, s) for (bb, c, s) in runs if bb == b and c == SIRI]
                                                for b in base_seeds}
    groups["all"] = [(b, s) for (b, c, s) in runs if c == SIRI]
    out: dict = {"groups": {}, "runs": []}
    for label, pairs in groups.items():
        pairs = sorted(pairs)
        if not pairs:
            continue
        rows: dict[str, dict[str, list[float]]] = {}

        def add(name: str, r: dict, rows: dict = rows) -> None:
            d = rows.setdefault(name, {"acc": [], "len": [], "hard": []})
            d["acc"].append(100 * r["accuracy"])
            d["len"].append(r["mean_length"])
            d["hard"].append(100 * _hard(r))

        claims: dict[str, list[bool]] = {k: [] for k in CLAIMS}
        for b, s in pairs:
            siri = runs[(b, SIRI, s)]
            for r in siri["results"]:
                add(r["name"], r)
            cmax, cmin = runs.get((b, CONSTANT_MAX, s)), runs.get((b, CONSTANT_MIN, s))
            if cmax:
                add("constant L_max (final)", cmax["results"][-1])
            if cmin:
                add("constant L_min (final)", cmin["results"][-1])
            for k, v in claims_for(siri, cmax, cmin).items():
                if v is not None:
                    claims[k].append(v)
        out["groups"][label] = {
            "runs": len(pairs),
            "checkpoints": {name: {k: spread(v) for k, v in d.items()} for name, d in rows.items()},
            "claims": {k: {"held": sum(v), "of": len(v)} for k, v in claims.items()},
        }
    for (b, c, s), summary in sorted(runs.items()):
        res = summary["results"]
        out["runs"].append({"base_seed": b, "config": c, "seed": s, "threads": summary.get("torch_threads"),
                            "settings_key": summary.get("settings_key"), "wall_s": summary["wall_s"],
                            "base_build_s": summary["base_build_s"], "peak_rss_mb": summary["peak_rss_mb"],
                            "acc": [round(100 * r["accuracy"], 1) for r in res],
                            "len": [round(r["mean_length"], 1) for r in res]})
    return out


def render(summary: dict) -> str:
    lines = []
    for label, g in summary["groups"].items():
        lines += [f"### {'all base models' if label == 'all' else 'base model seed ' + label[4:]} "
                  f"({g['runs']} SIRI runs)", "",
                  "| checkpoint | acc % mean | acc range | acc 95% CI | len mean | len range | "
                  "hardest acc % mean | hardest range |", "|---|---|---|---|---|---|---|---|"]
        for name, d in g["checkpoints"].items():
            a, ln, h = d["acc"], d["len"], d["hard"]
            lines.append(f"| {name} | {a['mean']:.1f} | {a['min']:.1f}–{a['max']:.1f} | "
                         f"{max(0.0, a['ci_lo']):.1f}–{min(100.0, a['ci_hi']):.1f} | {ln['mean']:.1f} | {ln['min']:.1f}–{ln['max']:.1f} | "
                         f"{h['mean']:.0f} | {h['min']:.0f}–{h['max']:.0f} |")
        lines += ["", "| claim | seeds where it holds |", "|---|---|"]
        for k, v in g["claims"].items():
            lines.append(f"| {CLAIMS[k]} | {v['held']} of {v['of']} |")
        lines.append("")
    lines += ["### Every run", "", "| base seed | config | seed | threads | wall (s) | base build (s) | peak RSS (MB) | "
              "held-out acc % by checkpoint | mean length by checkpoint |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["runs"]:
        lines.append(f"| {r['base_seed']} | {r['config']} | {r['seed']} | {r['threads'] or '-'} | {r['wall_s']:.0f} "
                     f"| {r['base_build_s']:.0f} "
                     f"| {r['peak_rss_mb']:.0f} | {' / '.join(f'{a:.1f}' for a in r['acc'])} | "
                     f"{' / '.join(f'{x:.0f}' for x in r['len'])} |")
    return "\n".join(lines) + "\n"


def plot(runs: dict[tuple[int, str, int], dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base_seeds = sorted({b for b, _, _ in runs})
    fig, axes = plt.subplots(2, len(base_seeds), figsize=(6.5 * len(base_seeds), 7.5), squeeze=False, sharey="row",
                             sharex="col")
    for col, b in enumerate(base_seeds):
        ax_acc, ax_len = axes[0][col], axes[1][col]
        seeds = sorted(s for bb, c, s in runs if bb == b and c == SIRI)
        names = None
        for s in seeds:
            res = runs[(b, SIRI, s)]["results"]
            names = [r["name"].replace("cycle", "c").replace("-compressed", " low").replace("-expanded", " high")
                     for r in res]
            x = range(len(res))
            ax_acc.plot(x, [100 * r["accuracy"] for r in res], marker="o", lw=1, label=f"SIRI seed {s}")
            ax_len.plot(x, [r["mean_length"] for r in res], marker="o", lw=1, label=f"SIRI seed {s}")
        last = len(names or []) - 1
        for config, color, marker in ((CONSTANT_MAX, "tab:red", "s"), (CONSTANT_MIN, "tab:green", "^")):
            finals = [runs[(b, config, s)]["results"][-1] for s in seeds if (b, config, s) in runs]
            if finals:
                label = "constant L_max" if config == CONSTANT_MAX else "constant L_min"
                ax_acc.scatter([last + 0.25] * len(finals), [100 * r["accuracy"] for r in finals], color=color,
                               marker=marker, label=f"{label}, final (each seed)", zorder=3)
                ax_len.scatter([last + 0.25] * len(finals), [r["mean_length"] for r in finals], color=color,
                               marker=marker, label=f"{label}, final (each seed)", zorder=3)
        ax_acc.set_title(f"base model seed {b}: {len(seeds)} training seeds")
        ax_acc.set_ylabel("held-out accuracy % (fixed cap)")
        ax_len.set_ylabel("held-out mean length (tokens)")
        if names:
            ax_len.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        ax_acc.grid(alpha=0.3)
        ax_len.grid(alpha=0.3)
        ax_len.legend(fontsize=7, loc="upper center")  # the free corner of the length panel
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(out: Path) -> None:
    runs = load_runs(out)
    if not any(c == SIRI for _, c, _ in runs):
        sys.exit(f"no finished SIRI run under {out} (expected {out}/baseB/{SIRI}/seedS/summary.json)")
    summary = summarize(runs)
    md = render(summary)
    for name, text in (("seeds.md", md), ("seeds.json", json.dumps(summary, indent=2) + "\n")):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / name)
    png = plot(runs, out / "seeds.png")
    print(md)
    print(f"wrote {out / 'seeds.md'}, {out / 'seeds.json'}, {png}")


def _ints(text: str) -> list[int]:
    values: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        values += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train every (base seed, config, seed), then report")
    r.add_argument("--out", type=Path, default=Path("runs/toy-seeds"))
    r.add_argument("--seeds", type=_ints, default=_ints("0-4"), help="training seeds, e.g. 0-4 or 0,2")
    r.add_argument("--base-seeds", type=_ints, default=_ints("0,1"), help="toy.base.seed values")
    r.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    r.add_argument("--lock", type=Path, help="hold this file (flock) during each run")
    r.add_argument("--jobs", type=int, default=1, help="runs at once (with toy.torch_threads=1 each on 2 cores)")
    r.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for every run")
    p = sub.add_parser("report", help="tables and plot from finished runs")
    p.add_argument("out", type=Path)
    args = ap.parse_args()
    if args.cmd == "run":
        train_all(args.out, args.seeds, args.base_seeds, args.configs.split(","), args.overrides, args.lock, args.jobs)
        report(args.out)
    else:
        report(args.out)


if __name__ == "__main__":
    main()
