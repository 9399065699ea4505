"""The checkpoint directory layout, its tracker and trainer state: what every other checkpoint module
(save/load, integrity checks, tools) reads, importing nothing else of the project.

    <save>/iter_0000010/trainer_state.json, <save>/latest_checkpointed_iteration.txt
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

TRACKER = "latest_checkpointed_iteration.txt"
STATE_FILE = "trainer_state.json"
FORMAT_VERSION = 2  # 2: manifest.json with SHA-256 digests (format 1 checkpoints have none)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, partial or does not fit this run; the message names its path."""


@dataclass
class TrainerState:
    iteration: int = 0  # global iteration (continues across stages)
    stage_iteration: int = 0  # iterations in this stage
    consumed_samples: int = 0  # this stage's data position (samples of its blend)
    tokens: int = 0  # global tokens consumed (all stages)
    stage_tokens: int = 0  # tokens consumed in this stage
    skipped_iterations: int = 0
    schedule: dict = field(default_factory=dict)  # ScheduleState.to_dict()
    layout: dict = field(default_factory=dict)  # tp, pp, cp, dp, world_size at save
    stage: str = "stable"
    run_name: str = ""
    format_version: int = FORMAT_VERSION
    # False when the checkpoint holds model weights only (a merge, an HF import): written by save_load.save.
    optimizer_state: bool = True
    # tools/merge_checkpoints.py: the inputs, their weights and how they were combined ({} otherwise).
    merge: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainerState":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def iter_dir_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def latest_checkpoint(save_dir: str) -> Optional[str]:
    """The directory the tracker names, or None if there is no tracker."""
    tracker = os.path.join(save_dir, TRACKER)
    if not os.path.isfile(tracker):
        return None
    text = open(tracker).read().strip()
    try:
        iteration = int(text)
    except ValueError:
        raise CheckpointError(f"{tracker}: expected an iteration number, found {text!r}") from None
    path = os.path.join(save_dir, iter_dir_name(iteration))
    if not os.path.isdir(path):
        raise CheckpointError(f"{tracker} names iteration {iteration} but {path} does not exist")
    return path


def resolve_checkpoint(path: str) -> str:
    """A save directory (its latest checkpoint) or one iteration directory."""
    if os.path.isfile(os.path.join(path, STATE_FILE)):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"{path}: not a checkpoint (no {TRACKER} and no {STATE_FILE})")
    return latest


def read_trainer_state(ckpt_dir: str) -> TrainerState:
    path = os.path.join(ckpt_dir, STATE_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{ckpt_dir}: missing {STATE_FILE} (partial or foreign checkpoint)")
    try:
        with open(path) as f:
            return TrainerState.from_dict(json.load(f))
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable trainer state: {exc}") from None


def resume_dir(cfg) -> Optional[str]:
    """The directory a run with this config resumes from (checkpoint.load, else .save), or None."""
    for d in (cfg.checkpoint.load, cfg.checkpoint.save):
        # With checkpoint.fallback_on_corrupt an unreadable tracker is the trainer's to handle.
        if d and (cfg.checkpoint.fallback_on_corrupt and os.path.isfile(os.path.join(d, TRACKER))
                  or latest_checkpoint(d) is not None):
            return d
    return None
