"""The count toy's closed-loop schedule (``configs/toy-adaptive.yaml``) against its cosine (``configs/toy-count.yaml``,
which it extends): one table, one plot.

    python benchmarks/toy_adaptive.py --run --out runs/toy-adaptive      # trains both configs, then reports
    python benchmarks/toy_adaptive.py --out runs/toy-adaptive            # reports on runs already in --out

Both runs have the same task, base model, rounds, batch and held-out evaluation (``siri eval``'s code at the fixed
cap, written by ``siri train`` into ``RUN/summary.json``). Writes ``OUT/adaptive.md`` (accuracy with its 95% Wilson
interval, mean length, tokens generated, wall time per checkpoint/run) and ``OUT/adaptive.png`` (per round: the
cap L and the mean response length; the training accuracy — the adaptive schedule's signal — with the adaptive
run's rolling mean and reference; the adaptive run's phase).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# Sibling scripts (benchmarks/ is sys.path[0] when this file runs): one loader of a finished toy run, one interval.
from toy_compare import load
from toy_spiral import wilson

RUNS = ("toy-count", "toy-adaptive")


def table(summaries: dict[str, dict]) -> str:
    lines = ["| run | checkpoint | acc % [95%] | mean len | vs base |", "|---|---|---|---|---|"]
    base = summaries[RUNS[0]]["results"][0]

    def row(run: str, r: dict) -> None:
        lo, hi = wilson(r["accuracy"], int(r.get("n") or 0))
        ckpt = "base" if r["step"] is None else f"{r['name']} (round {r['step']}, L={r['train_cap']})"
        vs = "—" if r is base else f"{100 * (r['mean_length'] / base['mean_length'] - 1):+.0f}%"
        lines.append(f"| {run} | {ckpt} | {100 * r['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] "
                     f"| {r['mean_length']:.1f} | {vs} |")

    row("—", base)
    for name in RUNS:
        for r in summaries[name]["results"][1:]:
            row(name, r)
    lines += ["", "| run | rounds | tokens generated | wall (s) | RL (s) | peak RSS (MB) |", "|---|---|---|---|---|---|"]
    for name in RUNS:
        s = summaries[name]
        lines.append(f"| {name} | {s['rounds']} | {s['tokens_generated']:,} | {s['wall_s']:.0f} | {s['train_s']:.0f} "
                     f"| {s['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def plot(all_rows: dict[str, list[dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"toy-count": "tab:blue", "toy-adaptive": "tab:orange"}
    fig, (ax_len, ax_acc, ax_phase) = plt.subplots(3, 1, figsize=(9, 8.5), sharex=True,
                                                   gridspec_kw={"height_ratios": [3, 3, 1]})
    for name, rows in all_rows.items():
        steps = [r["step"] for r in rows]
        c = colors[name]
        ax_len.plot(steps, [r["max_len"] for r in rows], color=c, ls="--", lw=1, label=f"{name}: cap L")
        ax_len.plot(steps, [r["completion_len_mean"] for r in rows], color=c, label=f"{name}: mean length")
        ax_acc.plot(steps, [r.get("accuracy") for r in rows], color=c, lw=0.8, alpha=0.6,
                    label=f"{name}: training accuracy")
    adaptive = all_rows.get("toy-adaptive", [])
    if adaptive:
        steps = [r["step"] for r in adaptive]
        ax_acc.plot(steps, [r.get("adaptive_signal") for r in adaptive], color="tab:orange", lw=2,
                    label="toy-adaptive: rolling accuracy (signal)")
        ax_acc.plot(steps, [r.get("adaptive_reference") for r in adaptive], color="black", lw=1, ls=":",
                    label="toy-adaptive: reference (last peak)")
        phases = ("compressing", "holding", "expanding")
        ax_phase.scatter(steps, [phases.index(r["phase"]) if r.get("phase") in phases else -1 for r in adaptive],
                         s=6, color="tab:orange")
        ax_phase.set_yticks(range(len(phases)), phases, fontsize=8)
    ax_len.set_ylabel("tokens")
    ax_len.legend(fontsize=7, ncol=2, loc="upper right")
    ax_acc.set_ylabel("accuracy under the cap")
    ax_acc.legend(fontsize=7, loc="lower right")
    ax_phase.set_xlabel("rollout round")
    ax_phase.set_ylabel("adaptive phase", fontsize=8)
    for ax in (ax_len, ax_acc, ax_phase):
        ax.grid(alpha=0.3)
    fig.suptitle("count toy: closed-loop (adaptive) vs cosine schedule, same rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/toy-adaptive"))
    ap.add_argument("--run", action="store_true", help="train both configs first")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="passed to every `siri train` of --run (e.g. training.rounds=4 for a quick check)")
    args = ap.parse_args()
    if args.run:
        for name in RUNS:
            subprocess.run([sys.executable, "-m", "siri_rl.cli", "train", "-c", name, "-o", str(args.out / name),
                            *args.overrides], check=True)
    loaded = {name: load(args.out / name) for name in RUNS}
    md = table({k: v[0] for k, v in loaded.items()})
    png = plot({k: v[1] for k, v in loaded.items()}, args.out / "adaptive.png")
    (args.out / "adaptive.md").write_text(md + "\n")
    print(md)
    print(f"wrote {args.out / 'adaptive.md'}, {png}")


if __name__ == "__main__":
    main()
