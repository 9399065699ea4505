"""The preprocess CLI's exit codes and messages, in-process: ``tokenization.preprocess.main`` with one
worker (the default) encodes in this process and installs no signal handler (``cli()``, the console
entry, does). Progress output, kill -9 and SIGTERM run the real CLI: tests/e2e/test_preprocess_cli.py."""

import json

import pytest

from tokenization import preprocess
from tests.helpers import ROOT, run_main

pytestmark = pytest.mark.timeout(120)

SPM = str(ROOT / "data" / "tokenizer" / "octo_sp8k.model")


def pp(*args):
    return run_main(preprocess.main, ["--tokenizer", SPM, *args])


def test_preprocess_exit_codes_and_messages(tmp_path):
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": "ok"}\n{oops\n')
    res = pp("--input", bad, "--output-prefix", tmp_path / "o", "--strict", "-q")
    assert res.returncode == 2
    assert f"error: {bad}:3: bad_json: malformed JSON" in res.stderr
    assert not list(tmp_path.glob("o.*"))

    res = pp("--input", bad, "--output-prefix", tmp_path / "o", "-q")
    assert res.returncode == 0
    rej = json.loads((tmp_path / "o.rejects.jsonl").read_text())
    assert (rej["file"], rej["line"], rej["reason"]) == (str(bad), 3, "bad_json")

    res = pp("--input", bad, "--output-prefix", tmp_path / "o", "-q")
    assert res.returncode == 2 and "o.bin exists; pass --overwrite" in res.stderr

    res = run_main(preprocess.main, ["--tokenizer", tmp_path / "nope.model",
                                     "--input", bad, "--output-prefix", tmp_path / "x"])
    assert res.returncode == 2 and f"tokenizer file not found: {tmp_path / 'nope.model'}" in res.stderr

    res = pp("--input", bad, "--output-prefix", tmp_path / "y", "--format", "qa", "--template", "medium")
    assert res.returncode == 2 and "unknown QA template 'medium'" in res.stderr
