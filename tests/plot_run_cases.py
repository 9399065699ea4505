"""A fake run directory with real TensorBoard events, for tools/plot_run.py's tests (in-process in
tests/unit/test_plot_run.py, the tool's own process in tests/e2e/test_plot_run_tool.py)."""

from __future__ import annotations

import json
import os

from megatron_octo.training.metrics import MetricsWriter

TPS = 1024  # tokens per step of the fake pretraining stages
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_checkpoint(save: str, iteration: int, *, stage: str, stage_iteration: int, tokens: int, stage_tokens: int,
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


def write_pretrain(run_dir, name, first_iter, losses, lrs, val, init_from=None, end_lr=None):
    """Log like the trainer: one point per iteration, validation at the end; then a checkpoint."""
    save = os.path.join(run_dir, name)
    w = MetricsWriter(os.path.join(save, "tensorboard"), enabled=True)
    it = first_iter
    for loss, lr in zip(losses, lrs):
        it += 1
        w.scalars({"lm loss": loss, "learning-rate": lr, "grad-norm": 1.0}, it, it * TPS)
    w.scalars({"lm loss validation": val}, it, it * TPS, vs_tokens=("lm loss validation",))
    w.close()
    write_checkpoint(save, it, stage="decay" if init_from else "stable", stage_iteration=len(losses),
                tokens=it * TPS, stage_tokens=len(losses) * TPS, init_from=init_from, end_lr=end_lr)


def write_rl(run_dir, name, init_from, scores, accs, lengths, val0, val_last):
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
    write_checkpoint(save, n, stage="rl", stage_iteration=n, tokens=6 * TPS, stage_tokens=0, init_from=init_from)


def write_eval(run_dir, model, accuracies, n=40):
    d = os.path.join(run_dir, "eval", model)
    os.makedirs(d)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"checkpoint": "x", "iteration": 1, "protocol": "rl", "n": 1, "temperature": 0.0,
                   "benchmarks": {b: {"name": b, "num_examples": n, "accuracy": a, "pass_at_k": {}}
                                  for b, a in accuracies.items()}}, f)


def build_run_dir(d: str) -> str:
    """A fake run directory: pretraining and decay stages, RL runs, evals and demo.json."""
    write_pretrain(d, "stable", 0, [6.0, 5.5, 5.25, 5.5], [1e-3] * 4, 5.75, end_lr=1e-3)
    # LR at end: the checkpoint's schedule LR (after the last step), else the last logged LR (decay_hybrid)
    write_pretrain(d, "decay_long", 4, [5.0, 4.75], [1e-3, 5e-4], 4.5, init_from=f"{d}/stable", end_lr=2.5e-4)
    write_pretrain(d, "decay_hybrid", 4, [5.25, 5.0], [1e-3, 5e-4], 4.875, init_from=f"{d}/stable")
    # decay_hybrid keeps only metrics.jsonl: the fallback reader
    for f in os.listdir(f"{d}/decay_hybrid/tensorboard"):
        if f.startswith("events.out.tfevents"):
            os.remove(f"{d}/decay_hybrid/tensorboard/{f}")
    write_rl(d, "rl_control", f"{d}/stable", [-0.5, 0.0, 0.25], [0.125, 0.25, 0.375], [30.0, 24.0, 20.5], 0.25, 0.375)
    write_rl(d, "rl_long", f"{d}/decay_long", [-0.25, 0.25, 0.5], [0.25, 0.5, 0.625], [28.0, 21.0, 18.5], 0.25, 0.5)
    write_eval(d, "stable", {"gsm8k": 0.1, "math500": 0.05})
    write_eval(d, "rl_control", {"gsm8k": 0.3, "math500": 0.1})
    write_eval(d, "rl_long", {"gsm8k": 0.45, "math500": 0.15})
    with open(os.path.join(d, "demo.json"), "w") as f:
        json.dump({"stages": {"stable": {"seconds": 42.0, "command": ["python", "-m", "megatron_octo.train"]}},
                   "synthetic": {"rl_*": "RL on the synthetic addition task", "eval/rl_*": "synthetic eval set"}}, f)
    return d
