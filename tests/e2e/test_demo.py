"""`make demo-smoke` (python -m megatron_octo.demo --smoke): every stage of the miniature OctoThinker
pipeline runs and leaves its checkpoint, TensorBoard events and report rows; the export loads in
`transformers`."""

from __future__ import annotations

import json
import sys

import pytest

from megatron_octo.demo import SHOTS, SMOKE
from megatron_octo.checkpoint.save_load import latest_checkpoint, read_trainer_state
from tests.helpers import read_scalars, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PRETRAIN = ("stable", "decay_long", "decay_short", "decay_hybrid")
RL = ("rl_control", "rl_long", "rl_short", "rl_hybrid")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    res = run([sys.executable, "-m", "megatron_octo.demo", "--out", str(out), "--smoke"], timeout=850)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out, res.stdout


def test_every_stage_reports_progress(smoke_run):
    out, stdout = smoke_run
    for i in range(1, 21):
        assert f"=== [{i}/20]" in stdout, stdout[-3000:]
    assert "Report: " + str(out / "report.md") in stdout and f"tensorboard --logdir {out}" in stdout


def test_stage_checkpoints_and_events(smoke_run):
    out, _ = smoke_run
    stable = read_trainer_state(latest_checkpoint(str(out / "stable")))
    assert (stable.stage, stable.tokens) == ("stable", 65536)
    for b in ("long", "short", "hybrid"):
        st = read_trainer_state(latest_checkpoint(str(out / f"decay_{b}")))
        assert (st.stage, st.stage_tokens, st.tokens) == ("decay", 32768, 65536 + 32768)
        assert st.schedule["start_tokens"] == 65536
    for name in PRETRAIN:
        scalars = read_scalars(str(out / name / "tensorboard"))
        assert {"lm loss", "learning-rate", "lm loss vs tokens"} <= set(scalars), name
    for name in RL:
        st = read_trainer_state(latest_checkpoint(str(out / name)))
        assert (st.stage, st.stage_iteration) == ("rl", 2)
        scalars = read_scalars(str(out / name / "tensorboard"))
        assert {"critic/score/mean", "critic/accuracy", "response_length/mean",
                "val/arith_heldout/accuracy"} <= set(scalars), name
        assert [s for s, _ in scalars["val/arith_heldout/accuracy"]] == [0, 2]  # before and after RL


def test_probes_and_the_merged_branch(smoke_run):
    """Every model is probed few-shot before RL (exemplars in its prompts), the merge of the three branches
    is their weight average and is evaluated zero-shot as well."""
    out, _ = smoke_run
    sources = {"control": "stable", "long": "decay_long", "short": "decay_short", "hybrid": "decay_hybrid",
               "merged": "merged"}
    for model, src in sources.items():
        summary = json.loads((out / "eval" / f"fewshot_{model}" / "summary.json").read_text())
        held = summary["benchmarks"]["arith_heldout"]
        assert held["num_examples"] == SMOKE.eval_limit and held["protocol"] == f"simple+{SHOTS}shot", held
        assert summary["checkpoint"].startswith(str(out / src)), (model, summary["checkpoint"])
        first = json.loads((out / "eval" / f"fewshot_{model}" / "arith_heldout.jsonl").read_text().splitlines()[0])
        assert first["prompt"].count("Question:\n") == SHOTS + 1 and "\\boxed{" in first["prompt"]
    zs = json.loads((out / "eval" / "zeroshot_merged" / "summary.json").read_text())
    assert zs["benchmarks"]["arith_heldout"]["protocol"] == "simple"
    result = json.loads((out / "result.json").read_text())
    assert set(result["models"]) == set(sources) and set(result["conclusions"]) == {
        "control_fails", "control_signature", "branches_reach", "rl_gains", "long_longer"}
    assert "before" in result["models"]["merged"] and "after" in result["models"]["long"]


def test_report_rows_and_plots(smoke_run):
    out, _ = smoke_run
    report = (out / "report.md").read_text()
    for name in PRETRAIN:
        assert f"| {name} | " in report, name
    for name in RL:
        assert f"| {name} † | " in report, name
    for name in ("control", "long", "short", "hybrid", "merged"):
        assert f"| fewshot_{name} ‡ | base |" in report, name
    assert "| zeroshot_merged ‡ | rl |" in report
    assert "## Does mid-training help RL?" in report and "synthetic arithmetic" in report
    assert report.index("## The answer") < report.index("## Pretraining") and "plots/headline.png" in report
    for png in ("headline", "pretrain_loss", "pretrain_lr", "rl_reward", "rl_accuracy", "rl_response_length"):
        data = (out / "plots" / f"{png}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and f"plots/{png}.png" in report
    facts = json.loads((out / "demo.json").read_text())
    assert set(PRETRAIN) | set(RL) <= set(facts["stages"]) and facts["smoke"] is True


def test_export_loads_in_transformers(smoke_run):
    out, _ = smoke_run
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(out / "hf"), torch_dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(out / "hf"))
    ids = tok("Compute 12 + 7.", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape[:2] == ids.shape and torch.isfinite(logits).all()


def test_rl_demo_smoke_on_the_demo_data(smoke_run, tmp_path):
    """`make rl-demo`'s stages (supervised stage, GRPO and PPO from it) on the demo's data (--data):
    both RL runs start from the supervised checkpoint, validate before and after, and the result
    table and rl_demo.json are written."""
    out, _ = smoke_run
    rl_out = tmp_path / "rl-demo"
    res = run([sys.executable, "-m", "megatron_octo.rl_demo", "--smoke", "--data", str(out / "data"),
               "--out", str(rl_out)], timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    sft = read_trainer_state(latest_checkpoint(str(rl_out / "sft")))
    assert sft.stage == "stable" and sft.tokens == 32768
    summary = json.loads((rl_out / "rl_demo.json").read_text())
    for name, algo in (("rl_grpo", "GRPO"), ("rl_ppo", "PPO")):
        st = read_trainer_state(latest_checkpoint(str(rl_out / name)))
        assert (st.stage, st.stage_iteration) == ("rl", 2)
        r = summary["result"][name]
        assert r["algorithm"] == algo and [s for s, _ in r["curve"]] == [0, 2] and r["rl_seconds"] > 0, r
        assert f"| {algo} | {100 * r['accuracy_before']:.1f}% |" in res.stdout
    scalars = read_scalars(str(rl_out / "rl_ppo" / "tensorboard"))
    assert {"critic/vf_loss", "critic/vf_explained_var"} <= set(scalars)
    assert (rl_out / "report.md").exists() and summary["smoke"] is True
