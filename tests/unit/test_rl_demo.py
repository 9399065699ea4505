"""`make rl-demo`'s result: held-out gain, and when it first reached 10 points, read from the runs'
metrics; the stage plan (recipes, checkpoints, the --data reuse)."""

from __future__ import annotations

import json
import os

import pytest

from megatron_octo import rl_demo
from megatron_octo.rl.checks import validate_rl


def _write_run(out, name, val, step_s):
    tb = out / name / "tensorboard"
    tb.mkdir(parents=True)
    with open(tb / "metrics.jsonl", "w") as f:
        for step, acc in val:
            f.write(json.dumps({"iteration": step, "tokens": 0, "val/arith_heldout/accuracy": acc}) + "\n")
        for step, s in step_s:
            f.write(json.dumps({"iteration": step, "tokens": 0, "timing/step_s": s}) + "\n")


def test_summary_gain_and_time_to_target(tmp_path):
    _write_run(tmp_path, "rl_grpo", [(0, 0.30), (20, 0.39), (40, 0.405), (60, 0.55)],
               [(s, 1.5) for s in range(1, 61)])
    _write_run(tmp_path, "rl_ppo", [(0, 0.30), (20, 0.35), (40, 0.32)], [(s, 2.0) for s in range(1, 41)])
    res = rl_demo.summarize(str(tmp_path))
    g, p = res["rl_grpo"], res["rl_ppo"]
    assert (g["accuracy_before"], g["accuracy_after"], g["gain_points"]) == (0.30, 0.55, 25.0)
    # 0.405 - 0.30 is 10.5 points: step 40, after 40 steps of 1.5 s.
    assert (g["reached_target_at_step"], g["reached_target_rl_seconds"], g["rl_seconds"]) == (40, 60.0, 90.0)
    assert p["gain_points"] == 2.0 and p["reached_target_at_step"] is None
    table = rl_demo.render(res)
    assert "| GRPO | 30.0% | 55.0% (60) | +25.0 | 90 s | step 40 (60 s) |" in table
    assert "| PPO | 30.0% | 32.0% (40) | +2.0 | 80 s | not reached |" in table
    res["rl_ppo"]["stage_seconds"] = 95.04
    assert "| +2.0 | 80 s (stage 95 s) | not reached |" in rl_demo.render(res)


def test_summary_names_a_run_without_validation(tmp_path):
    _write_run(tmp_path, "rl_grpo", [(0, 0.3), (20, 0.5)], [(1, 1.0)])
    (tmp_path / "rl_ppo").mkdir()
    res = rl_demo.summarize(str(tmp_path))
    assert "no held-out accuracy" in res["rl_ppo"]["error"] and str(tmp_path / "rl_ppo") in res["rl_ppo"]["error"]
    assert "no held-out accuracy" in rl_demo.render(res)


def test_plan_builds_data_or_reuses_it(tmp_path):
    out = str(tmp_path / "run")
    full = rl_demo.plan(out, None, 2, rl_demo.FULL)
    assert [s.name for s in full] == ["task", "tokenizer", "tokenize", "sft", "rl_grpo", "rl_ppo"]
    assert "--qa" in full[0].cmd and "3100" in full[0].cmd
    reuse = rl_demo.plan(out, "/d", 2, rl_demo.FULL)
    assert [s.name for s in reuse] == ["sft", "rl_grpo", "rl_ppo"]
    sft, grpo, ppo = reuse
    assert "recipes/demo/sft.yaml" in sft.cmd and f"checkpoint.save={out}/sft" in sft.cmd
    assert "data.mixture=/d/mixture.yaml" in sft.cmd
    for st, recipe in ((grpo, "rl_grpo_sft.yaml"), (ppo, "rl_ppo_sft.yaml")):
        assert f"recipes/demo/{recipe}" in st.cmd and f"checkpoint.init_from={out}/sft" in st.cmd
        assert "rl.val_benchmarks=/d/arith/arith_heldout.jsonl" in st.cmd


def test_recipes_load_and_validate(tmp_path):
    from megatron_octo import config as cfgmod

    prompts = tmp_path / "rl.jsonl"
    prompts.write_text(json.dumps({"question": "Compute (1 + 2) * 3.", "answer": "9"}) + "\n")
    paths = [f"rl.prompts={prompts}", f"rl.val_benchmarks={prompts}", f"checkpoint.init_from={tmp_path}"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sft = cfgmod.load(os.path.join(root, "recipes/demo/sft.yaml"), [])
    assert (sft.data.stage, sft.schedule.stage, sft.checkpoint.init_from) == ("sft", "stable", None)
    for name, algo in (("rl_grpo_sft.yaml", "grpo"), ("rl_ppo_sft.yaml", "ppo")):
        cfg = cfgmod.load(os.path.join(root, "recipes/demo", name), paths)
        validate_rl(cfg, 2, have_gpu=False, have_te=False)
        assert (cfg.rl.algorithm, cfg.rl.template, cfg.rl.val_interval) == (algo, "simple", 20)


def test_bad_data_dir_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        rl_demo.main(["--out", str(tmp_path / "o"), "--data", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"--data {tmp_path}: missing mixture.yaml" in err and not (tmp_path / "o").exists()


def _data_dir(tmp_path, stages=("stable", "sft")):
    d = tmp_path / "data"
    for name in ("tokenizer/demo_sp2k.model", "arith/arith_rl.jsonl.gz", "arith/arith_heldout.jsonl"):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text("")
    (d / "mixture.yaml").write_text("stages:\n" + "".join(
        f"  {s}:\n    - {{name: a, prefix: arith_qa_short, weight: 1.0}}\n" for s in stages))
    return d


def test_data_dir_without_the_sft_stage_is_named(tmp_path, capsys):
    data = _data_dir(tmp_path, stages=("stable",))
    with pytest.raises(SystemExit) as e:
        rl_demo.main(["--out", str(tmp_path / "o"), "--data", str(data)])
    assert e.value.code == 2
    assert f"{data}/mixture.yaml has no 'sft' stage" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("ppo_validated", [True, False])
def test_main_writes_the_result_and_fails_without_one(tmp_path, monkeypatch, capsys, ppo_validated):
    out = tmp_path / "out"

    def fake_stages(stages, total, out_dir, env, t0, weights_total, facts):
        assert [s.name for s in stages] == ["sft", "rl_grpo", "rl_ppo"]
        for s in stages:
            facts["stages"][s.name] = {"seconds": 1.0, "command": s.cmd}
        _write_run(out, "rl_grpo", [(0, 0.3), (20, 0.5)], [(s, 1.0) for s in range(1, 21)])
        _write_run(out, "rl_ppo", [(0, 0.3), (20, 0.45)] if ppo_validated else [], [(1, 1.0)])
        return 0

    monkeypatch.setattr(rl_demo.demo, "run_stages", fake_stages)
    rc = rl_demo.main(["--out", str(out), "--data", str(_data_dir(tmp_path))])
    captured = capsys.readouterr()
    summary = json.loads((out / "rl_demo.json").read_text())
    assert summary["result"]["rl_grpo"]["gain_points"] == 20.0
    assert "| GRPO | 30.0% | 50.0% (20) | +20.0 | 20 s (stage 1 s) | step 20 (20 s) |" in captured.out
    if ppo_validated:
        assert rc == 0 and summary["result"]["rl_ppo"]["gain_points"] == 15.0
    else:
        assert rc == 1 and "no result for PPO: no held-out accuracy" in captured.err
