"""Untrusted files and model output run no code: a checkpoint whose pickles would call anything (in
common.pt, torch's .metadata, or a byte object inside a .distcp) is refused before megatron reads
it, even with a matching manifest; model output reaches the grader only as text, in workers with
bounded time and memory."""

from __future__ import annotations

import io
import json
import os
import pickle

import pytest
import torch

from megatron_octo.checkpoint import integrity
from tests.reliability.faultlib import copy_run, train_in_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


class _Payload:
    """Pickles as a call of os.system: what a booby-trapped checkpoint would run on load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _reseal(ck) -> None:
    """Rewrite the manifest as an attacker would, so only the pickle check stands in the way."""
    manifest, err = integrity.build_manifest(str(ck))
    assert err is None
    (ck / integrity.MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture()
def ck(rel, tmp_path):
    return copy_run(rel["ref"], tmp_path / "run", upto=2) / "iter_0000002"


def test_malicious_common_pt_is_refused(ck, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Payload(marker)}, ck / "common.pt")
    _reseal(ck)
    integrity.verify(str(ck))  # the manifest matches: integrity is not the security boundary
    with pytest.raises(integrity.UnsafeCheckpointError, match=f"{ck / 'common.pt'}: refusing to load"):
        integrity.check_pickles(str(ck))
    assert not marker.exists()
    # The payload is real: an unrestricted load (what torch.load(weights_only=False) does) runs it.
    torch.load(ck / "common.pt", weights_only=False)
    assert marker.exists()


def test_malicious_dcp_metadata_is_refused(ck, tmp_path):
    marker = tmp_path / "pwned"
    (ck / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    _reseal(ck)
    with pytest.raises(integrity.UnsafeCheckpointError, match=r"global 'posix\.system' is not allowed"):
        integrity.check_pickles(str(ck))
    from megatron_octo.models.hf_io import DistCheckpointReader  # the HF exporter's reader

    with pytest.raises(integrity.UnsafeCheckpointError):
        DistCheckpointReader(str(ck))
    assert not marker.exists()


def test_malicious_byte_object_in_distcp_is_refused(ck, tmp_path):
    from torch.distributed.checkpoint.filesystem import _StorageInfo

    marker = tmp_path / "pwned"
    md = integrity.read_dcp_metadata(str(ck))
    index = next(i for i in md.storage_data if i.fqn.startswith("rng_state"))
    blob = io.BytesIO()
    torch.save([{"random": _Payload(marker)}], blob)
    (ck / "evil.distcp").write_bytes(blob.getvalue())
    md.storage_data[index] = _StorageInfo(relative_path="evil.distcp", offset=0, length=len(blob.getvalue()))
    (ck / ".metadata").write_bytes(pickle.dumps(md))
    _reseal(ck)
    with pytest.raises(integrity.UnsafeCheckpointError, match=r"evil\.distcp \(object 'rng_state"):
        integrity.check_pickles(str(ck))
    assert not marker.exists()


def test_trainer_refuses_a_booby_trapped_checkpoint(rel, ck, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Payload(marker)}, ck / "common.pt")
    _reseal(ck)
    res = train_in_process(rel["recipe"], [f"checkpoint.init_from={ck}", f"checkpoint.save={tmp_path / 'out'}"],
                           expect_rc=2)
    assert f"{ck / 'common.pt'}: refusing to load a pickle that is not plain data" in res.stderr
    assert not marker.exists() and not (tmp_path / "out" / "latest_checkpointed_iteration.txt").exists()


@pytest.mark.timeout(120)
def test_model_output_is_graded_as_text_in_bounded_workers(tmp_path):
    from megatron_octo.eval import grader

    marker = tmp_path / "pwned"
    attacks = [f"\\boxed{{__import__('os').system('touch {marker}')}}",
               f"The answer is __import__('os').system('touch {marker}')",
               f"\\boxed{{exec(\"open('{marker}', 'w')\")}}",
               "\\boxed{9^{9^{9^{9}}}}"]  # never finishes in sympy: cut off by the time limit
    verdicts = grader.grade_detailed(attacks, ["0"] * len(attacks), timeout=2)
    assert [v.correct for v in verdicts] == [False] * len(attacks)
    assert not marker.exists()
    # Each worker runs under the configured address-space limit (RLIMIT_AS).
    grader.configure_grader(workers=1, memory_mb=700)
    try:
        assert grader.grade("\\boxed{2.0}", "2")  # not identical strings: compared in a worker
        limits = open(f"/proc/{grader._WORKERS[0].proc.pid}/limits").read()
        line = next(ln for ln in limits.splitlines() if ln.startswith("Max address space"))
        assert str(700 * 2**20) in line, line
    finally:
        grader.configure_grader(workers=2, memory_mb=grader.DEFAULT_MEMORY_MB)
