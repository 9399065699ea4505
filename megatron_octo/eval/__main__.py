"""`python -m megatron_octo.eval`: see megatron_octo/eval/runner.py."""

import sys

from megatron_octo.eval.runner import main

if __name__ == "__main__":
    sys.exit(main())
