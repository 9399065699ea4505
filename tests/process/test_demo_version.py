"""The demo's record of the code that made a result: the checkout's commit from git (a process)."""

from __future__ import annotations

import re
import subprocess

from megatron_octo import demo
from tests.helpers import ROOT


def test_code_version_is_this_checkouts_commit():
    version = demo.code_version()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          timeout=30).stdout.strip()
    assert version is not None and re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", version)
    assert version.split("+")[0] == head
