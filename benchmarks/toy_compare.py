"""The toy's SIRI run against the same rounds at a constant L_max and at a constant L_min: one table, one plot.

    python benchmarks/toy_compare.py --run --out runs/toy-compare        # runs the three configs, then reports
    python benchmarks/toy_compare.py --out runs/toy-compare              # reports on runs already in --out

``--run`` trains ``toy``, ``toy-constant`` and ``toy-constant-min`` one after the other (``siri train -c NAME -o
OUT/NAME``; the base model is built once and cached). The report reads each run's ``summary.json`` (the fixed-cap
held-out evaluation written by ``siri train``) and ``metrics.jsonl`` and writes ``OUT/compare.md`` (accuracy,
length and accuracy per difficulty of the base, every SIRI checkpoint and the two constant runs' final models,
tokens generated, wall time, peak memory) and ``OUT/compare.png`` (mean response length and training accuracy
against the round for the three runs, caps dashed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RUNS = ("toy", "toy-constant", "toy-constant-min")


def load(run: Path) -> tuple[dict, list[dict]]:
    summary_file = run / "summary.json"
    if not summary_file.exists():
        sys.exit(f"{summary_file} not found: run with --run first (or point --out at finished toy runs)")
    from siri_rl.run_dir import read_metric_rows  # the one reader: a resumed run's repeated rounds once each

    return json.loads(summary_file.read_text()), read_metric_rows(run)


def table(summaries: dict[str, dict]) -> str:
    first = summaries[RUNS[0]]["results"]
    diffs = sorted(int(k) for k in first[0]["by_difficulty"])
    base = first[0]
    head = ["run", "checkpoint", "acc %", "mean len", "vs base", "checks/resp", *[f"k={d}" for d in diffs]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(run: str, r: dict) -> None:
        ckpt = "base" if r["step"] is None else f"{r['name']} (round {r['step']}, L={r['train_cap']})"
        vs = "—" if r is base else f"{100 * (r['mean_length'] / base['mean_length'] - 1):+.0f}%"
        cells = [run, ckpt, f"{100 * r['accuracy']:.1f}", f"{r['mean_length']:.1f}", vs,
                 f"{r['wait_per_response']:.2f}",
                 *[f"{100 * r['by_difficulty'].get(str(d), r['by_difficulty'].get(d, 0.0)):.0f}" for d in diffs]]
        lines.append("| " + " | ".join(cells) + " |")

    row("—", base)
    for name in RUNS:
        for r in summaries[name]["results"][1:]:
            row(name, r)
    lines += ["", "| run | rounds | tokens generated | wall (s) | base build (s) | RL (s) | eval (s) | peak RSS (MB) |",
              "|---|---|---|---|---|---|---|---|"]
    for name in RUNS:
        s = summaries[name]
        lines.append(f"| {name} | {s['rounds']} | {s['tokens_generated']:,} | {s['wall_s']:.0f} | {s['base_build_s']:.0f} "
                     f"| {s['train_s']:.0f} | {s['eval_s']:.0f} | {s['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def plot(all_rows: dict[str, list[dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"toy": "tab:blue", "toy-constant": "tab:red", "toy-constant-min": "tab:green"}
    fig, (ax_len, ax_acc) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for name, rows in all_rows.items():
        steps = [r["step"] for r in rows]
        c = colors[name]
        ax_len.plot(steps, [r["completion_len_mean"] for r in rows], color=c, label=f"{name}: mean length")
        ax_len.plot(steps, [r["max_len"] for r in rows], color=c, ls="--", lw=0.8, alpha=0.7, label=f"{name}: cap L")
        ax_acc.plot(steps, [r["accuracy"] for r in rows], color=c, label=name)
    ax_len.set_ylabel("tokens")
    ax_len.legend(fontsize=7, ncol=3, loc="upper right")
    ax_acc.set_ylabel("training accuracy (mean reward under the cap)")
    ax_acc.set_xlabel("rollout round")
    ax_acc.legend(fontsize=8, loc="lower right")
    for ax in (ax_len, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle("toy: SIRI cosine vs constant L_max vs constant L_min (same rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/toy-compare"))
    ap.add_argument("--run", action="store_true", help="train the three configs first")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="passed to every `siri train` of --run (e.g. training.rounds=4 for a quick check)")
    args = ap.parse_args()
    if args.run:
        for name in RUNS:
            subprocess.run([sys.executable, "-m", "siri_rl.cli", "train", "-c", name, "-o", str(args.out / name),
                            *args.overrides], check=True)
    loaded = {name: load(args.out / name) for name in RUNS}
    md = table({k: v[0] for k, v in loaded.items()})
    png = plot({k: v[1] for k, v in loaded.items()}, args.out / "compare.png")
    (args.out / "compare.md").write_text(md + "\n")
    print(md)
    print(f"wrote {args.out / 'compare.md'}, {png}")


if __name__ == "__main__":
    main()
