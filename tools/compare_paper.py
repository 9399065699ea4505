#!/usr/bin/env python
"""Print our eval accuracies next to OctoThinker's published numbers, naming the grader behind ours.

    python tools/compare_paper.py runs/demo/eval/rl_long [RUN_OR_SUMMARY ...] [--model OctoThinker-Long-3B-Zero]

The logic and the published numbers (each with its source) are in megatron_octo/eval/paper.py.
Exit codes: 0 printed; 2 a path is not an eval summary (the message names it).
"""

import sys

from megatron_octo.eval.paper import main

if __name__ == "__main__":
    sys.exit(main())
