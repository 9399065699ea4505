"""tools/plot_run.py as users run it: its own process writes the report the in-process call writes."""

from __future__ import annotations

import contextlib
import io
import sys

from megatron_octo.cli import plot_run
from tests.helpers import run
from tests.plot_run_cases import build_run_dir


def test_tool_process_writes_the_in_process_report(tmp_path):
    run_dir = build_run_dir(str(tmp_path / "run"))
    res = run([sys.executable, "tools/plot_run.py", run_dir, "--out", str(tmp_path / "tool")], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == f"wrote {tmp_path}/tool/report.md"
    with contextlib.redirect_stdout(io.StringIO()):
        assert plot_run.main([run_dir, "--out", str(tmp_path / "inproc")]) == 0
    tool = (tmp_path / "tool" / "report.md").read_text()
    assert tool == (tmp_path / "inproc" / "report.md").read_text().replace(f"{tmp_path}/inproc", f"{tmp_path}/tool")
    assert "| stable |" in tool and sorted(p.name for p in (tmp_path / "tool" / "plots").iterdir()) == \
        sorted(p.name for p in (tmp_path / "inproc" / "plots").iterdir())
