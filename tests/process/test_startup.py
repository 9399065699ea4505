"""What an entry point pays before its first step: megatron's torch.compile decorators no longer import
dynamo and inductor at start-up on a machine without a GPU, and a GPU machine keeps megatron as shipped.
Fresh interpreters, because the import itself is the subject."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import run

pytestmark = pytest.mark.timeout(300)

PROBE = ("import json, sys, torch{pre}; import megatron_octo, megatron.core, megatron.core.jit as j; "
         "from megatron.core.fusions import fused_bias_geglu as g; "
         "print('RESULT', json.dumps({{'dynamo': 'torch._dynamo' in sys.modules, "
         "'inductor': 'torch._inductor.compile_fx' in sys.modules, 'fuser': j.jit_fuser.__name__, "
         "'geglu_wrapped': getattr(g.geglu, '__wrapped__', None) is not None}}))")


def _probe(pre: str = "") -> dict:
    res = run([sys.executable, "-c", PROBE.format(pre=pre)], timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(next(line[7:] for line in res.stdout.splitlines() if line.startswith("RESULT ")))


def test_no_dynamo_at_import_without_a_gpu():
    r = _probe()
    assert r == {"dynamo": False, "inductor": False, "fuser": "lazy_compile", "geglu_wrapped": True}, r


def test_with_cuda_available_megatron_keeps_its_import_time_compile():
    r = _probe("; torch.cuda.is_available = lambda: True")
    assert r["fuser"] == "compile" and r["dynamo"] and r["inductor"], r


def test_entry_points_start_without_dynamo():
    for module in ("megatron_octo.train", "megatron_octo.eval", "megatron_octo.rl"):
        code = (f"import runpy, sys; sys.argv = ['x', '--help']\ntry:\n    runpy.run_module('{module}', "
                "run_name='__main__')\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
                "assert 'torch._dynamo' not in sys.modules, 'dynamo imported'\nprint('CLEAN')")
        res = run([sys.executable, "-c", code], timeout=240)
        assert res.returncode == 0 and "CLEAN" in res.stdout, (module, res.stderr[-3000:])


def test_uninstalled_hook_leaves_megatron_as_shipped():
    """What benchmarks/startup.py measures as "before"."""
    r = _probe("; from megatron_octo.runtime import lazy_jit; lazy_jit.uninstall()")
    assert r["fuser"] == "compile" and r["dynamo"] and r["inductor"], r
