"""Grader without its worker processes: the in-process mode on the labelled equivalence table, and the
pool's configuration checks. The worker pool's verdicts, time and memory limits:
tests/process/test_grader_workers.py."""

import pytest

from megatron_octo.eval.grader import configure_grader, equivalent, grade
from tests.grader_cases import EQUIVALENCE_TABLE


@pytest.mark.timeout(60)
def test_in_process_mode_matches():
    # timeout=None compares in-process (trusted inputs); same verdicts as the worker path.
    sample = EQUIVALENCE_TABLE[:20]
    assert [equivalent(p, g) for p, g, _ in sample] == [e for _, _, e in sample]
    assert grade("0.5", "\\frac{1}{2}", extracted=True, timeout=None)


def test_bad_configuration():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        configure_grader(workers=0)
