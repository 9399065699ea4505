"""The distributed bucket's outer side: ``rank_bucket`` runs tests/distributed/bucket.py once per test run
under one ``torchrun --nproc-per-node 2`` and hands each outer test the results of its inner test, or fails it
with the inner test's own failure (per rank, from the ranks' junit reports)."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import shared_dir
from tests.helpers import run
from tests.rl_cases import RL_RECIPE, write_validation_problems

WORLD = 2


class RankBucket:
    def __init__(self, out: Path, launch: str):
        self.out, self.launch = out, launch
        self.outcomes = {}  # inner test name -> {rank: failure text or None}
        for rank in range(WORLD):
            path = out / f"junit-rank{rank}.xml"
            if not path.is_file():
                continue
            for case in ET.parse(path).getroot().iter("testcase"):
                # a failure, an error or a skip: anything but a pass fails the outer test
                bad = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
                text = None if bad is None else f"{bad.tag}: {bad.get('message', '')}\n{bad.text or ''}"
                self.outcomes.setdefault(case.get("name"), {})[rank] = text

    def result(self, test: str, name: str | None = None) -> list:
        """Every rank's result of inner test ``test`` (``save(name, ...)``; ``name`` defaults to ``test``
        without its ``test_`` prefix and parameters), in rank order; fails with the inner failure."""
        outcome = self.outcomes.get(test)
        if outcome is None or len(outcome) < WORLD:
            raise AssertionError(f"the distributed bucket did not report {test} on every rank:\n{self.launch}")
        failed = {r: text for r, text in outcome.items() if text is not None}
        if failed:
            raise AssertionError("\n".join(f"--- {test} failed on rank {r} of the distributed bucket:\n{text[-4000:]}"
                                           for r, text in sorted(failed.items())))
        name = name or test.removeprefix("test_").split("[")[0]
        return [json.loads((self.out / name / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="session")
def rank_bucket(tiny_text_checkpoint, hf_imported, tmp_path_factory) -> RankBucket:
    """tests/distributed/bucket.py run once per test run (whatever the xdist worker count) under torchrun."""
    def build(out: Path):
        (out / "inputs.json").write_text(json.dumps({
            "ckpt": str(tiny_text_checkpoint / "ckpt"), "rl_recipe": RL_RECIPE,
            "val": write_validation_problems(out / "val.jsonl"),
            "hf": str(hf_imported["hf"]), "hf_tp2": str(hf_imported["tp2"])}))
        res = run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
                   "-m", "tests.distributed.bucket", str(out)], timeout=1200)
        (out / "launch.txt").write_text(f"exit {res.returncode}\n--- stdout\n{res.stdout[-6000:]}\n"
                                        f"--- stderr\n{res.stderr[-6000:]}")

    out = shared_dir(tmp_path_factory, "rank-bucket", build)
    return RankBucket(out, (out / "launch.txt").read_text())
