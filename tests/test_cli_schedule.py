"""`siri schedule` as a user runs it: JSON, table, plot, and one-line errors."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from siri_rl.cli import app

runner = CliRunner()


def test_schedule_json_matches_library():
    result = runner.invoke(app, ["schedule", "--kind", "cosine", "--cycle", "640", "--steps", "1920", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 1920 and rows[0] == {"step": 0, "max_len": 16384, "phase": "compressing"}
    assert rows[320]["max_len"] == 8192 and rows[320]["checkpoint"] == "cycle1-compressed"


def test_schedule_all_plot(tmp_path):
    png = tmp_path / "fig3.png"
    result = runner.invoke(app, ["schedule", "--kind", "all", "--steps", "1920", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "stair-cosine" in result.output and "cycle3-compressed" in result.output


def test_schedule_error_is_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "siri_rl.cli", "schedule", "--l-min", "20000"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "l_min (20000) must not exceed l_max (16384)" in result.stderr and not result.stdout
    assert "Traceback" not in result.stdout + result.stderr
