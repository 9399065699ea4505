"""megatron_octo.pipeline: the DAG and each stage's command, planned in-process. The Slurm dry run and a
failing stage stopping its dependants (the pipeline CLI): tests/process/test_pipeline_launch.py; the whole tiny
pipeline end to end on nemo-run's local executor: tests/e2e/test_pipeline_cli.py."""

from __future__ import annotations

import pytest

from tests.helpers import ROOT


from megatron_octo import pipeline  # noqa: E402


def _args(*argv):
    p_args = ["--out", "/tmp/x", *argv]
    # parse the same way main() does, without running anything
    import argparse

    captured = {}

    def fake_plan(args):
        captured["args"] = args
        raise SystemExit(0)

    orig = pipeline.plan
    pipeline.plan = fake_plan
    try:
        with pytest.raises(SystemExit):
            pipeline.main(p_args)
    finally:
        pipeline.plan = orig
    assert isinstance(captured["args"], argparse.Namespace)
    return captured["args"]


def test_dag_tiny_profile():
    stages, notes = pipeline.plan(_args("--rl", "no"))
    deps = {s.name: s.deps for s in stages}
    assert deps["tokenize"] == [] and deps["stable"] == ["tokenize"]
    for b in ("long", "short", "hybrid"):
        assert deps[f"decay_{b}"] == ["stable"]
        assert deps[f"eval_{b}"] == [f"decay_{b}"]
        if pipeline.hf_export_available():
            assert deps[f"hf_{b}"] == [f"decay_{b}"]
        assert f"rl_{b}" not in deps
    assert any("rl_* left out" in n for n in notes)
    stable = next(s for s in stages if s.name == "stable")
    assert "recipes/tiny/stable.yaml" in stable.command and "--nproc-per-node=2" in stable.command
    decay = next(s for s in stages if s.name == "decay_long")
    assert "checkpoint.init_from=/tmp/x/stable" in decay.command


@pytest.mark.skipif(not (pipeline.rl_available() and (ROOT / "recipes/tiny/rl_grpo.yaml").exists()),
                    reason="RL CLI or recipes/tiny/rl_grpo.yaml not in this checkout")
def test_dag_with_rl_puts_rl_between_decay_and_eval():
    stages, _ = pipeline.plan(_args("--rl", "yes", "--branches", "long"))
    deps = {s.name: s.deps for s in stages}
    assert deps["rl_long"] == ["decay_long"] and deps["eval_long"] == ["rl_long"]
    ev = next(s for s in stages if s.name == "eval_long")
    assert "/tmp/x/rl_long" in ev.command and "rl" in ev.command


def test_rl_stage_uses_the_branch_recipe_where_one_exists():
    stages, _ = pipeline.plan(_args("--profile", "paper", "--rl", "yes", "--no-hf"))
    recipes = {s.name: s.command[s.command.index("--config") + 1] for s in stages if s.name.startswith("rl_")}
    assert recipes == {"rl_long": "recipes/octothinker/llama3.2-3b/rl_grpo.yaml",
                       "rl_short": "recipes/octothinker/llama3.2-3b/rl_grpo.yaml",
                       "rl_hybrid": "recipes/octothinker/llama3.2-3b/rl_grpo_hybrid.yaml"}
