"""tools/plot_run.py: report.md and PNGs from a fake run directory with real TensorBoard events."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

from megatron_octo.cli import plot_run
from megatron_octo.training.metrics import MetricsWriter
from tests.helpers import ROOT, run, run_main


TPS = 1024  # tokens per step of the fake pretraining stages
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _checkpoint(save: str, iteration: int, *, stage: str, stage_iteration: int, tokens: int, stage_tokens: int,
                init_from=None, end_lr=None):
    d = os.path.join(save, f"iter_{iteration:07d}")
    os.makedirs(d)
    with open(os.path.join(d, "trainer_state.json"), "w") as f:
        json.dump({"iteration": iteration, "stage_iteration": stage_iteration, "tokens": tokens,
                   "stage_tokens": stage_tokens, "stage": stage, "schedule": {"lr": end_lr} if end_lr else {}}, f)
    with open(os.path.join(d, "config.yaml"), "w") as f:
        f.write(f"run_name: x\ncheckpoint:\n  save: {save}\n  init_from: {init_from or 'null'}\n")
    with open(os.path.join(save, "latest_checkpointed_iteration.txt"), "w") as f:
        f.write(str(iteration))


def _pretrain(run_dir, name, first_iter, losses, lrs, val, init_from=None, end_lr=None):
    """Log like the trainer: one point per iteration, validation at the end; then a checkpoint."""
    save = os.path.join(run_dir, name)
    w = MetricsWriter(os.path.join(save, "tensorboard"), enabled=True)
    it = first_iter
    for loss, lr in zip(losses, lrs):
        it += 1
        w.scalars({"lm loss": loss, "learning-rate": lr, "grad-norm": 1.0}, it, it * TPS)
    w.scalars({"lm loss validation": val}, it, it * TPS, vs_tokens=("lm loss validation",))
    w.close()
    _checkpoint(save, it, stage="decay" if init_from else "stable", stage_iteration=len(losses),
                tokens=it * TPS, stage_tokens=len(losses) * TPS, init_from=init_from, end_lr=end_lr)


def _rl(run_dir, name, init_from, scores, accs, lengths, val0, val_last):
    """Log like the RL trainer: val/* at step 0, step metrics at 1..N, val/* again at N."""
    save = os.path.join(run_dir, name)
    w = MetricsWriter(os.path.join(save, "tensorboard"), enabled=True)
    w.scalars({"val/gsm8k/accuracy": val0}, 0, 6 * TPS)
    n = len(scores)
    for step, (s, a, ln) in enumerate(zip(scores, accs, lengths), 1):
        vals = {"critic/score/mean": s, "critic/accuracy": a, "response_length/mean": ln, "timing/step_s": 2.0}
        if step == n:
            vals["val/gsm8k/accuracy"] = val_last
        w.scalars(vals, step, 6 * TPS)
    w.close()
    _checkpoint(save, n, stage="rl", stage_iteration=n, tokens=6 * TPS, stage_tokens=0, init_from=init_from)


def _eval(run_dir, model, accuracies, n=40):
    d = os.path.join(run_dir, "eval", model)
    os.makedirs(d)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"checkpoint": "x", "iteration": 1, "protocol": "rl", "n": 1, "temperature": 0.0,
                   "benchmarks": {b: {"name": b, "num_examples": n, "accuracy": a, "pass_at_k": {}}
                                  for b, a in accuracies.items()}}, f)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("run"))
    _pretrain(d, "stable", 0, [6.0, 5.5, 5.25, 5.5], [1e-3] * 4, 5.75, end_lr=1e-3)
    # LR at end: the checkpoint's schedule LR (after the last step), else the last logged LR (decay_hybrid)
    _pretrain(d, "decay_long", 4, [5.0, 4.75], [1e-3, 5e-4], 4.5, init_from=f"{d}/stable", end_lr=2.5e-4)
    _pretrain(d, "decay_hybrid", 4, [5.25, 5.0], [1e-3, 5e-4], 4.875, init_from=f"{d}/stable")
    # decay_hybrid keeps only metrics.jsonl: the fallback reader
    for f in os.listdir(f"{d}/decay_hybrid/tensorboard"):
        if f.startswith("events.out.tfevents"):
            os.remove(f"{d}/decay_hybrid/tensorboard/{f}")
    _rl(d, "rl_control", f"{d}/stable", [-0.5, 0.0, 0.25], [0.125, 0.25, 0.375], [30.0, 24.0, 20.5], 0.25, 0.375)
    _rl(d, "rl_long", f"{d}/decay_long", [-0.25, 0.25, 0.5], [0.25, 0.5, 0.625], [28.0, 21.0, 18.5], 0.25, 0.5)
    _eval(d, "stable", {"gsm8k": 0.1, "math500": 0.05})
    _eval(d, "rl_control", {"gsm8k": 0.3, "math500": 0.1})
    _eval(d, "rl_long", {"gsm8k": 0.45, "math500": 0.15})
    with open(os.path.join(d, "demo.json"), "w") as f:
        json.dump({"stages": {"stable": {"seconds": 42.0, "command": ["python", "-m", "megatron_octo.train"]}},
                   "synthetic": {"rl_*": "RL on the synthetic addition task", "eval/rl_*": "synthetic eval set"}}, f)
    return d


def _row(report: str, first_cell: str) -> list[str]:
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in\n{report}")


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("out"))
    res = run([sys.executable, "tools/plot_run.py", run_dir, "--out", out], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == f"wrote {out}/report.md"
    with open(os.path.join(out, "report.md")) as f:
        return out, f.read()


def test_pretraining_rows(report, run_dir):
    _, text = report
    # stage, from, steps, tokens, global tokens at end, final loss, min loss, final val loss, LR at end, wall time
    assert _row(text, "stable") == ["stable", "scratch", "4", "4,096", "4,096", "5.5000", "5.2500", "5.7500",
                                    "1.000E-03", "42 s"]
    long = _row(text, "decay_long")
    assert long[:9] == ["decay_long", "stable", "2", "2,048", "6,144", "4.7500", "4.7500", "4.5000", "2.500E-04"]
    assert long[9].startswith("≈") and long[9].endswith(" s")  # TensorBoard wall times: no demo.json entry
    hybrid = _row(text, "decay_hybrid")  # from metrics.jsonl
    assert hybrid[:9] == ["decay_hybrid", "stable", "2", "2,048", "6,144", "5.0000", "5.0000", "4.8750", "5.000E-04"]
    assert "`decay_hybrid/tensorboard/metrics.jsonl`" in text and "`stable/tensorboard/`" in text


def test_rl_eval_and_comparison(report):
    _, text = report
    rl_long = _row(text, "rl_long †")
    assert rl_long[:7] == ["rl_long †", "decay_long", "3", "-0.250 → 0.500", "25.0 → 62.5", "gsm8k 25.0 → 50.0",
                           "28.0 → 18.5"]
    assert rl_long[7].startswith("≈")
    assert _row(text, "rl_control †")[1:6] == ["stable", "3", "-0.500 → 0.250", "12.5 → 37.5",
                                               "gsm8k 25.0 → 37.5"]
    assert _row(text, "model") == ["model", "protocol", "gsm8k acc % (problems)", "math500 acc % (problems)"]
    assert "| rl_control ‡ | rl | 30.0 (40) | 10.0 (40) |" in text  # eval rows: their own note
    assert "| stable | rl | 10.0 (40) | 5.0 (40) |" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("- **rl_long** † (RL from `decay_long`) vs "
                                                                "**rl_control** †"))
    assert "held-out gsm8k 25.0 → 50.0% vs 25.0 → 37.5% (after RL +12.5 points)" in line
    assert "train accuracy at the last step 62.5% vs 37.5% (+25.0 points)" in line
    se = 100 * ((0.45 * 0.55 + 0.3 * 0.7) / 40) ** 0.5
    assert f"eval gsm8k 45.0% vs 30.0% (+15.0 points, 40 vs 40 problems, s.e. of the difference {se:.1f})" in line
    assert "† rl_control, rl_long: RL on the synthetic addition task" in text
    assert "‡ eval/rl_control, eval/rl_long: synthetic eval set" in text
    assert "Missing: decay_short, rl_short, rl_hybrid (no directory)." in text
    assert "Not exported (no `hf/`)." in text
    assert "python -m megatron_octo.train" in text


def test_pngs(report):
    out, text = report
    from PIL import Image

    for name, title in plot_run.PLOTS.items():
        path = os.path.join(out, "plots", f"{name}.png")
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC, path
        with Image.open(path) as im:
            im.verify()
        assert f"![{title}](plots/{name}.png)" in text


def test_partial_run_in_process(tmp_path):
    _pretrain(str(tmp_path), "stable", 0, [6.0, 5.0], [1e-3, 1e-3], 5.5)
    os.makedirs(tmp_path / "rl_control")  # started, nothing logged yet
    path = plot_run.render_report(str(tmp_path))
    assert path == str(tmp_path / "report.md")
    text = open(path).read()
    assert "Missing: decay_long, decay_short, decay_hybrid, rl_long, rl_short, rl_hybrid (no directory)." in text
    assert "No metrics recorded (no TensorBoard events or metrics.jsonl): rl_control." in text
    assert "No RL run from a decay branch: nothing to compare." in text
    assert "No `eval/<model>/summary.json`." in text
    assert "`plots/rl_reward.png`: not drawn (no data)." in text
    assert os.path.isfile(tmp_path / "plots" / "pretrain_loss.png")
    assert not os.path.exists(tmp_path / "plots" / "rl_reward.png")


def test_not_a_run(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (empty, tmp_path / "nope"):
        res = run_main(plot_run.main, [target], capsys)
        assert res.returncode == 2
        assert res.stderr.startswith("error: ") and str(target) in res.stderr
    assert "not a run directory" in run_main(plot_run.main, [empty], capsys).stderr
    assert not (empty / "report.md").exists()


def test_without_matplotlib(tmp_path, monkeypatch):
    _pretrain(str(tmp_path), "stable", 0, [6.0, 5.0], [1e-3, 1e-3], 5.5)
    find_spec = plot_run.importlib.util.find_spec
    monkeypatch.setattr(plot_run.importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else find_spec(name, *a))
    text = open(plot_run.render_report(str(tmp_path))).read()
    assert "Plots not drawn: matplotlib is not installed" in text
    assert _row(text, "stable")[:3] == ["stable", "scratch", "2"]
    assert not (tmp_path / "plots").exists()
