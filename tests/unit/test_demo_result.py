"""`make demo`'s answer to the paper's question: the per-model numbers read from the runs' metrics, each
claim and the value that decides it, the seeds table (mean ± sd), the headline of report.md, and the
stage plan (probes, merge, seeds)."""

from __future__ import annotations

import json
import os

import pytest

from megatron_octo import demo
from megatron_octo.cli import plot_run
from megatron_octo.training.metrics import MetricsWriter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CAP = 128


def _rl(out, model, val, lengths, rollout_len, clip, scores):
    """An RL run's events as the trainer logs them: val/* at step 0 and at the last step, rollout metrics per step."""
    w = MetricsWriter(os.path.join(out, f"rl_{model}", "tensorboard"), enabled=True)
    (a0, a1), (l0, l1) = val, lengths
    w.scalars({"val/arith_heldout/accuracy": a0, "val/arith_heldout/response_length/mean": l0}, 0, 0)
    n = len(scores)
    for step, s in enumerate(scores, 1):
        vals = {"critic/score/mean": s, "response_length/mean": rollout_len, "response_length/clip_ratio": clip,
                "response_length/cap": float(CAP)}
        if step == n:
            vals.update({"val/arith_heldout/accuracy": a1, "val/arith_heldout/response_length/mean": l1})
        w.scalars(vals, step, 0)
    w.close()


def _probe(out, name, acc, n=200, length=30.0):
    d = os.path.join(out, "eval", name)
    os.makedirs(d)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"benchmarks": {"arith_heldout": {"accuracy": acc, "num_examples": n,
                                                    "mean_response_tokens": length}}}, f)


def _run(out, control_after=0.0, long_=(0.30, 0.50), short=(0.35, 0.48), hybrid=(0.32, 0.45),
         lengths=((80.0, 75.0), (30.0, 28.0)), control_len=126.0, control_clip=0.9375, control_scores=None):
    out = str(out)
    _rl(out, "control", (0.0, control_after), (127.0, 127.0), control_len, control_clip,
        control_scores or [-1.0] * 20)
    _rl(out, "long", long_, lengths[0], 70.0, 0.05, [-0.4 + 0.02 * i for i in range(20)])
    _rl(out, "short", short, lengths[1], 29.0, 0.0, [-0.3 + 0.02 * i for i in range(20)])
    _rl(out, "hybrid", hybrid, (50.0, 45.0), 45.0, 0.0, [-0.35 + 0.02 * i for i in range(20)])
    for m, acc in (("control", 0.0), ("long", 0.2), ("short", 0.25), ("hybrid", 0.22), ("merged", 0.3)):
        _probe(out, f"fewshot_{m}", acc)
    _probe(out, "zeroshot_merged", 0.33, length=40.0)
    return out


def test_summary_reads_every_number_from_the_runs(tmp_path):
    res = demo.summarize(_run(tmp_path), 200)
    m = res["models"]
    assert (m["long"]["before"], m["long"]["after"], m["long"]["n"]) == (0.30, 0.50, 200)
    assert (m["long"]["length_before"], m["long"]["length_after"]) == (80.0, 75.0)
    assert (m["long"]["fewshot"], m["control"]["fewshot"]) == (0.2, 0.0)
    # the merge has no RL run: its zero-shot eval is its before-RL number
    assert (m["merged"]["before"], m["merged"]["fewshot"], "after" in m["merged"]) == (0.33, 0.3, False)
    c = m["control"]
    assert (c["rollout_length"], c["clip_ratio"], c["cap"], c["reward_first"], c["reward_last"]) == \
        (126.0, 0.9375, CAP, -1.0, -1.0)
    assert all(v["holds"] is True for v in res["conclusions"].values()), res["conclusions"]


@pytest.mark.parametrize("change, claim", [
    (dict(control_after=0.06), "control_fails"),
    (dict(control_len=90.0), "control_signature"),  # 90 < 0.8 x 128
    (dict(control_clip=0.3), "control_signature"),
    (dict(control_scores=[-1.0] * 10 + [-0.5] * 10), "control_signature"),  # reward not flat
    (dict(hybrid=(0.32, 0.395)), "branches_reach"),
    (dict(long_=(0.45, 0.50), short=(0.40, 0.48)), "rl_gains"),  # only hybrid gains >= 10
    (dict(lengths=((80.0, 25.0), (30.0, 28.0))), "long_longer"),  # long shorter than short after RL
])
def test_each_claim_fails_when_its_number_crosses_the_line(tmp_path, change, claim):
    concl = demo.summarize(_run(tmp_path, **change), 200)["conclusions"]
    assert concl[claim]["holds"] is False, concl
    assert all(v["holds"] for k, v in concl.items() if k != claim), concl


def test_gain_of_exactly_ten_points_counts(tmp_path):
    concl = demo.summarize(_run(tmp_path, long_=(0.30, 0.40), short=(0.35, 0.45), hybrid=(0.40, 0.41)),
                           200)["conclusions"]
    assert concl["rl_gains"]["holds"] is True


def test_headline_sentence_states_the_numbers(tmp_path):
    res = demo.summarize(_run(tmp_path), 200)
    text = demo.headline_sentence(res["models"], res["conclusions"])
    assert text.startswith("Mid-training makes RL work here")
    assert "50.0 / 48.0 / 45.0%" in text and "+20.0 / +13.0 / +13.0 points" in text
    assert "ends at 0.0%" in text and "126 of 128 tokens" in text
    res = demo.summarize(_run(tmp_path / "b", control_after=0.2), 200)
    assert "does not show the paper's effect" in demo.headline_sentence(res["models"], res["conclusions"])


def test_seeds_mean_sd_and_claims_in_every_seed(tmp_path):
    runs = {0: _run(tmp_path / "0"), 1: _run(tmp_path / "1", long_=(0.30, 0.60)),
            2: _run(tmp_path / "2", long_=(0.30, 0.70), control_after=0.1)}
    agg = demo.aggregate_seeds({s: demo.summarize(d, 200) for s, d in runs.items()})
    after = agg["models"]["long"]["after"]
    assert after["values"] == [0.5, 0.6, 0.7] and after["mean"] == pytest.approx(0.6)
    assert after["sd"] == pytest.approx(0.1)  # sample sd of 0.5, 0.6, 0.7
    c = agg["conclusions"]
    assert c["control_fails"]["per_seed"] == {0: True, 1: True, 2: False} and c["control_fails"]["holds"] is False
    assert c["branches_reach"]["holds"] is True
    assert c["seed_spread"]["holds"] is False  # long's sd 10 points > 8
    md = demo.seeds_markdown(agg, {0: 600.0, 1: 610.0, 2: 620.0})
    assert "| long | 20.0 ± 0.0% (20.0, 20.0, 20.0) | 30.0 ± 0.0% (30.0, 30.0, 30.0) | 60.0 ± 10.0% (50.0, 60.0, 70.0) " \
           "| +30.0 ± 10.0 (+20.0, +30.0, +40.0) | 80 → 75 |" in md
    assert "| RL from the stable checkpoint ends at <= 5% | no | 0: yes, 1: yes, 2: no |" in md
    assert "seed 2: 10.3 min" in md and "± " in agg["sentence"]


def test_report_opens_with_the_answer_and_its_figure(tmp_path):
    out = _run(tmp_path)
    res = demo.summarize(out, 200)
    res.update(seed=0, sentence=demo.headline_sentence(res["models"], res["conclusions"]))
    demo.write_result(out, res)
    report = open(plot_run.render_report(out)).read()
    head = report.split("## Pretraining", 1)[0]
    assert "## The answer" in head and res["sentence"] in head
    assert "![accuracy before and after RL](plots/headline.png)" in head and "plots/rl_response_length.png" in head
    assert "| long | 20.0 ± 2.8 | 30.0 ± 3.2 | 50.0 ± 3.5 | +20.0 | 80 → 75 |" in head
    assert "- [x] every decay branch reaches >= 40% after RL" in head
    assert open(os.path.join(out, "plots", "headline.png"), "rb").read(8) == PNG_MAGIC


def test_headline_bars_error_bars():
    one = plot_run.headline_bars({"long": {"before": 0.5, "n": 200, "after": 0.6}})
    assert one == [("long", [("before RL", 0.5, pytest.approx(0.03535534)), ("after RL", 0.6, pytest.approx(0.034641))])]
    seeds = plot_run.headline_bars({"long": {"after": {"mean": 0.6, "sd": 0.1, "values": [0.5, 0.6, 0.7]}}})
    assert seeds == [("long", [("after RL", 0.6, 0.1)])]


def test_plan_probes_merges_and_seeds(tmp_path):
    out = str(tmp_path)
    stages = demo.plan(out, 2, list(demo.BRANCHES), demo.FULL, seed=2)
    names = [s.name for s in stages]
    assert names == ["task", "tokenizer", "tokenize", "stable", "decay_long", "decay_short", "decay_hybrid", "merged",
                     "zeroshot_merged", "fewshot_control", "fewshot_long", "fewshot_short", "fewshot_hybrid",
                     "fewshot_merged", "rl_control", "rl_long", "rl_short", "rl_hybrid"]
    by = {s.name: s.cmd for s in stages}
    assert by["task"][by["task"].index("--seed") + 1] == "2"
    assert "train.seed=1236" in by["stable"] and "train.seed=1236" in by["decay_long"] and "rl.seed=1236" in by["rl_long"]
    assert by["merged"][by["merged"].index("megatron_octo.cli.merge_checkpoints") + 1:][:4] == [
        f"{out}/decay_long", f"{out}/decay_short", f"{out}/decay_hybrid", "--out"]
    fs = by["fewshot_control"]
    assert fs[fs.index("--checkpoint") + 1] == f"{out}/stable" and fs[fs.index("--shots") + 1] == str(demo.SHOTS)
    assert fs[fs.index("--shots-from") + 1].endswith("arith_shots.jsonl")  # worked QA-split problems: not held out
    assert "checkpoint.init_from=" + f"{out}/stable" in by["rl_control"]
    with_merged = [s.name for s in demo.plan(out, 2, ["long", "short"], demo.FULL, rl_merged=True)]
    assert with_merged[-1] == "rl_merged" and "decay_hybrid" not in with_merged
    assert "merged" not in [s.name for s in demo.plan(out, 2, ["long"], demo.FULL)]  # nothing to merge


@pytest.mark.parametrize("text", ["0,x", "1,1", "-1", ""])
def test_bad_seeds_are_refused(text, capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--seeds", text, "--out", "/nonexistent/never"])
    assert exc.value.code == 2 and "--seeds" in capsys.readouterr().err


def test_resume_reuses_only_a_finished_seed_of_this_clean_commit(tmp_path, capsys):
    # code_version() itself runs git: tests/process/test_demo_version.py
    clean = "a" * 40
    (tmp_path / "result.json").write_text(json.dumps({"commit": clean, "seed": 1, "smoke": False, "seconds": 5}))
    assert demo.finished_seed(str(tmp_path), 1, False, clean)["seconds"] == 5
    assert demo.finished_seed(str(tmp_path), 1, False, "b" * 40) is None        # another commit
    assert demo.finished_seed(str(tmp_path), 1, False, clean + "+dirty") is None  # uncommitted changes
    assert demo.finished_seed(str(tmp_path), 2, False, clean) is None           # another seed
    assert demo.finished_seed(str(tmp_path), 1, True, clean) is None            # smoke vs full
    assert demo.finished_seed(str(tmp_path), 1, False, None) is None            # not a git checkout
    assert demo.finished_seed(str(tmp_path / "none"), 1, False, clean) is None  # never finished
    with pytest.raises(SystemExit) as exc:
        demo.main(["--resume", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2 and "--resume keeps finished seeds of a --seeds run" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
