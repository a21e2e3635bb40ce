"""accelerate's launcher, as `hfpipe run --processes N` runs it: `python -m hfpipe.pipeline.launcher ARGS` takes
what `accelerate launch` takes.

The processes print their own errors (one panel, the documented exit code); the launcher's report of a failed
process (torch's ChildFailedError traceback and its agent's warnings) would bury it, so it is kept to the one
line torch logs as an error, and the launcher just exits 1 (the parent returns the processes' own codes).
"""

from __future__ import annotations

import logging
import sys


def main() -> None:
    from accelerate.commands.launch import main as accelerate_launch
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)
    try:
        accelerate_launch()
    except ChildFailedError:
        sys.exit(1)
    except SignalException as stopped:  # SIGINT/SIGTERM, already passed on to the processes, which said why
        sys.exit(128 + int(stopped.sigval))


if __name__ == "__main__":
    main()
