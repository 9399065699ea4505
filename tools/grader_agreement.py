#!/usr/bin/env python
"""How often the math-verify and OctoThinker graders agree on the per-sample JSONL of eval runs.

    python tools/grader_agreement.py runs/demo/eval/rl_long [EVAL_DIR ...] [--show 10]

The logic is in megatron_octo/eval/agreement.py. Exit codes: 0 printed; 2 a directory is not an
eval output directory or a file in it is malformed (the message names it).
"""

import sys

from megatron_octo.eval.agreement import main

if __name__ == "__main__":
    sys.exit(main())
