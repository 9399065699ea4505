"""Shared test helpers: synthetic indexed datasets, bounded subprocess runs, TensorBoard readers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def write_indexed_dataset(prefix: str, num_docs: int = 200, vocab: int = 511, seed: int = 0,
                          min_len: int = 8, max_len: int = 80, eod: int = 511) -> str:
    """A megatron IndexedDataset of learnable documents (arithmetic runs mod vocab), EOD appended."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(seed)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for _ in range(num_docs):
        n = int(rng.integers(min_len, max_len))
        start, stride = int(rng.integers(0, vocab)), int(rng.integers(1, 4))
        ids = [(start + stride * i) % vocab for i in range(n)] + [eod]
        builder.add_document(torch.tensor(ids, dtype=torch.int64), [len(ids)])
    builder.finalize(prefix + ".idx")
    return prefix


def env_for_subprocess() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONWARNINGS", "ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(key, None)
    return env


def run(cmd: list[str], timeout: float, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on time-out kill that group (and only that group)."""
    proc = subprocess.Popen(cmd, cwd=cwd or ROOT, env=env or env_for_subprocess(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout}s: {' '.join(cmd)}\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_main(main, argv: list) -> subprocess.CompletedProcess:
    """A CLI's ``main(argv) -> int`` in this process, what it prints to ``sys.stdout`` / ``sys.stderr``
    captured: what ``run`` returns for the same command, without an interpreter start (for CLIs that leave
    no global state behind; megatron's CLIs go through ``tests.megatron_state.run_cli_in_process``)."""
    argv = [str(a) for a in argv]
    # Files rather than StringIO: they have a fileno, as a process's streams do (megatron's inference
    # package calls faulthandler.enable() on sys.stderr when first imported).
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as exc:  # argparse errors and explicit exits
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read())
    return subprocess.CompletedProcess(argv, rc, *texts)


def train_cmd(config: str, overrides: list[str], nproc: int = 1, module: str = "megatron_octo.train") -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", module, "--config", config, *overrides]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", module, "--config", config, *overrides]


def run_train(config: str, overrides: list[str], nproc: int = 1, timeout: float = 240,
              expect_rc: int = 0, module: str = "megatron_octo.train",
              in_process: bool = False) -> subprocess.CompletedProcess:
    """The training (or RL: ``module``) CLI with ``expect_rc`` asserted: in a process of its own (under torchrun
    when ``nproc`` > 1), or with ``in_process`` its main in this interpreter (tests/megatron_state.run_cli_in_process,
    where the process is not what is tested; ``timeout`` is then the test's own)."""
    if in_process:
        from tests.megatron_state import cli_main, run_cli_in_process

        assert nproc == 1, "in_process runs one process"
        res = run_cli_in_process(cli_main(module), ["--config", config, *overrides])
    else:
        res = run(train_cmd(config, overrides, nproc, module=module), timeout=timeout)
    if res.returncode != expect_rc:
        raise AssertionError(f"exit {res.returncode} (expected {expect_rc}) for {' '.join(res.args)}\n"
                             f"--- stdout\n{res.stdout[-4000:]}\n--- stderr\n{res.stderr[-6000:]}")
    return res


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """All scalars of every event file under logdir: name -> [(step, value)] in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list] = {}
    for root, _, files in os.walk(logdir):
        if not any(f.startswith("events.out.tfevents") for f in files):
            continue
        acc = EventAccumulator(root, size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {k: sorted(v) for k, v in out.items()}


def tiny_recipe(tmp: Path, data_prefix: str, **sections) -> str:
    """A tiny stable recipe on a synthetic dataset, written to tmp/recipe.yaml."""
    import yaml

    recipe = {
        "run_name": "test",
        "model": {"preset": "tiny", "seq_length": 32},
        "tokenizer": {"library": "null"},
        "data": {"blend": [{"prefix": data_prefix, "weight": 1.0}], "split": "90,10,0"},
        "train": {"tokens": 3 * 8 * 32, "micro_batch_size": 2, "global_batch_size": 8, "log_interval": 1},
        "schedule": {"stage": "stable", "lr": 1e-3, "warmup_tokens": 0},
        "checkpoint": {"save": str(tmp / "ckpt")},
    }
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def read_metrics(logdir) -> list[dict]:
    """metrics.jsonl records (full precision) of a run's TensorBoard directory, in order."""
    import json

    with open(os.path.join(str(logdir), "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def checkpoint_tensors(ckpt_dir, prefixes: tuple = ("",)) -> dict:
    """Every global tensor of a dist checkpoint whose key starts with one of ``prefixes``, whatever
    the parallel layout it was saved at."""
    from megatron_octo.models.hf_io import DistCheckpointReader

    reader = DistCheckpointReader(str(ckpt_dir))
    return {k: reader.read(k) for k in reader.tensor_keys() if k.startswith(prefixes)}


def tiny_rl_overrides(init_from) -> list[str]:
    """A tiny RL run from a tiny checkpoint: 4 prompts x 4 samples of <= 24 tokens, 2 mini-batches, and a
    dense test reward (digit share) so an untrained model's samples score differently."""
    return ["model.preset=tiny", f"checkpoint.init_from={init_from}",
            f"rl.reward_fn={ROOT}/tests/scripts/rl_test_reward.py:digit_share", "rl.val_interval=0",
            "rl.max_response_length={0: 24}", "rl.lr=1e-3", "rl.prompts_per_step=4", "rl.samples_per_prompt=4",
            "rl.mini_batch_prompts=2"]
