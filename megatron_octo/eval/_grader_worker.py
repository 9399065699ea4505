"""Entry point of a grader worker process (see megatron_octo.eval.grader._start_worker).

argv: read_fd write_fd memory_mb
"""

import sys

from megatron_octo.eval.grader import worker_main

if __name__ == "__main__":
    r, w, mem = (int(a) for a in sys.argv[1:4])
    worker_main(r, w, mem)
