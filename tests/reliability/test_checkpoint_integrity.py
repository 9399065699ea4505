"""A corrupt or truncated checkpoint is caught at load (manifest of sizes and SHA-256), named, and
either stops the run or — with checkpoint.fallback_on_corrupt — the run resumes from the previous
intact one; a save that fails (disk full) names the path and leaves the previous checkpoint and the
tracker as they were."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from megatron_octo.checkpoint import integrity
from megatron_octo.checkpoint.save_load import CheckpointError, read_trainer_state
from tests.reliability.faultlib import (STEPS, TOKENS, assert_same_tensors, checkpoint_tensors, copy_run, lineage,
                                       tracker, train_in_process)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _truncate(path, keep: float = 0.5) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


def test_corrupt_latest_is_named_then_fallback_resumes_the_same_run(rel):
    save = copy_run(rel["ref"], rel["tmp"] / "corrupt", upto=6)
    bad = save / "iter_0000006" / "__0_0.distcp"
    _truncate(bad)
    res = train_in_process(rel["recipe"], [f"checkpoint.save={save}"], expect_rc=2)
    assert f"{bad}: " in res.stderr and "truncated" in res.stderr
    assert "checkpoint.fallback_on_corrupt=true" in res.stderr
    assert tracker(save) == 6 and bad.exists(), "a failed resume must not change the save directory"

    res = train_in_process(rel["recipe"], [f"checkpoint.save={save}", "checkpoint.fallback_on_corrupt=true"])
    assert "falling back to an older checkpoint" in res.stdout
    assert f"resumed from {save}/iter_0000004" in res.stdout
    got, ref = lineage(save), lineage(rel["ref"])
    assert sorted(got) == [5, 6, 7, 8]
    assert all(got[it]["lm loss"] == ref[it]["lm loss"] for it in got)
    assert read_trainer_state(str(save / f"iter_{STEPS:07d}")).tokens == TOKENS
    integrity.verify(str(save / "iter_0000006"))  # rewritten intact
    assert_same_tensors(checkpoint_tensors(save / f"iter_{STEPS:07d}"),
                        checkpoint_tensors(rel["ref"] / f"iter_{STEPS:07d}"))


@pytest.fixture()
def good_copy(rel, tmp_path):
    return copy_run(rel["ref"], tmp_path / "run", upto=4)


def test_verify_names_every_kind_of_damage(good_copy):
    ck = good_copy / "iter_0000004"
    integrity.verify(str(ck))
    integrity.check_pickles(str(ck))
    # One flipped byte, same size: only the checksum sees it.
    blob = ck / "__0_1.distcp"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(integrity.CorruptCheckpointError, match=f"{blob}: SHA-256 differs"):
        integrity.verify(str(ck))
    integrity.verify(str(ck), "size")
    integrity.verify(str(ck), "off")
    (ck / "common.pt").unlink()
    with pytest.raises(integrity.CorruptCheckpointError, match=f"{ck / 'common.pt'}: missing"):
        integrity.verify(str(ck), "size")
    manifest = ck / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(integrity.CorruptCheckpointError, match=f"{manifest}: unreadable manifest"):
        integrity.verify(str(ck))
    manifest.unlink()  # a format-2 checkpoint without its manifest did not finish saving
    with pytest.raises(integrity.CorruptCheckpointError, match="missing manifest.json"):
        integrity.verify(str(ck))
    state = ck / "trainer_state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "format_version": 1}))
    integrity.verify(str(ck))  # a format-1 checkpoint (before manifests) still loads


def test_resume_candidates(good_copy):
    ck2, ck4 = str(good_copy / "iter_0000002"), str(good_copy / "iter_0000004")
    assert integrity.resume_candidates(str(good_copy), fallback=False) == [ck4]
    assert integrity.resume_candidates(str(good_copy), fallback=True) == [ck4, ck2]
    (good_copy / "iter_0000006.tmp").mkdir()  # a killed save is never a candidate
    (good_copy / "latest_checkpointed_iteration.txt").write_text("garb")
    with pytest.raises(CheckpointError, match="latest_checkpointed_iteration.txt: expected an iteration number"):
        integrity.resume_candidates(str(good_copy), fallback=False)
    assert integrity.resume_candidates(str(good_copy), fallback=True) == [ck4, ck2]


def test_disk_full_while_saving_keeps_the_previous_checkpoint(rel):
    save = copy_run(rel["ref"], rel["tmp"] / "enospc", upto=4)
    res = train_in_process(rel["recipe"], [f"checkpoint.save={save}"], fault="save:write:6=enospc", expect_rc=4)
    path = save / "iter_0000006.tmp" / "trainer_state.json"
    assert f"could not save checkpoint {save / 'iter_0000006'}" in res.stderr
    assert "No space left on device" in res.stderr and str(path) in res.stderr
    assert f"the previous checkpoint ({save / 'iter_0000004'})" in res.stderr and "are unchanged" in res.stderr
    assert tracker(save) == 4
    integrity.verify(str(save / "iter_0000004"))
    assert not (save / "iter_0000006").exists() and not (save / "iter_0000006.tmp").exists()


def _mount_tmpfs(path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return res.returncode == 0


def test_real_disk_full_on_a_small_tmpfs(rel):
    """A 5 MiB tmpfs holds one 3.3 MB checkpoint, not two: the second save hits a real ENOSPC inside
    megatron's checkpoint writer processes."""
    mnt = rel["tmp"] / "small_fs"
    if not _mount_tmpfs(mnt, "5m"):
        pytest.skip("needs root and a working 'mount -t tmpfs' to make a small file system")
    try:
        save = mnt / "run"
        outside = [f"logging.tensorboard_dir={rel['tmp'] / 'small_fs_tb'}",
                   f"data.cache_dir={rel['tmp'] / 'small_fs_cache'}"]
        res = train_in_process(rel["recipe"], [f"checkpoint.save={save}", *outside], expect_rc=4)
        assert f"could not save checkpoint {save / 'iter_0000004'}" in res.stderr, res.stderr[-3000:]
        # torch's zip writer reports the short write as "unexpected pos"; the free space tells why.
        free = re.search(r"its file system is full: it had ([0-9.]+) MiB free", res.stderr)
        assert free and float(free.group(1)) < 0.5, res.stderr[-3000:]
        assert tracker(save) == 2
        integrity.verify(str(save / "iter_0000002"))
        assert not (save / "iter_0000004.tmp").exists(), "the partial save must be removed to free the space"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
