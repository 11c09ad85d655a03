"""Entry point of the ``stereonet_node`` console script (``ros2 run``, launch files).

It installs the early SIGINT/SIGTERM handling *before* the node module's heavy imports
(rclpy, torch: seconds), as ``python -m stereonet_ros.node`` does at its top, so a stop
request during start-up ends the process with 0 instead of being swallowed by torch's import.
"""
from __future__ import annotations

import signal
from typing import List, Optional


def main(args: Optional[List[str]] = None) -> int:
    early: List[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: early.append(signum))
    from . import node  # seconds: rclpy, torch
    for sig in (signal.SIGINT, signal.SIGTERM):  # hand over first, then copy: none lost between
        signal.signal(sig, node._record_early_signal)
    node._early_stop.extend(early)
    return node.main(args)


if __name__ == "__main__":
    import sys
    sys.exit(main())
