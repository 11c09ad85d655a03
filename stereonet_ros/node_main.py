"""Entry point of the ``stereonet_node`` console script (``ros2 run``, launch files).

It answers ``--help`` (and refuses arguments of its own it does not know) before anything
of ROS starts, then installs the early SIGINT/SIGTERM handling *before* the node module's
heavy imports (rclpy, torch: seconds), as ``python -m stereonet_ros.node`` does at its top,
so a stop request during start-up ends the process with 0 instead of being swallowed by
torch's import.
"""
from __future__ import annotations

import signal
import sys
from typing import List, Optional


def own_arguments_exit(argv: Optional[List[str]] = None) -> Optional[int]:
    """Handle the program's own (non-ROS) arguments of ``argv`` (program name first).

    ``-h``/``--help`` prints every parameter and returns 0; any other argument outside
    ``--ros-args`` is a start-up error (returns 2) with the reason on stderr, so a misplaced
    ``-p x:=1`` is not silently ignored. None: nothing of its own, start the node.
    """
    from .params import help_text, split_ros_args  # no ROS, no rclpy context
    argv = list(sys.argv if argv is None else argv)
    prog = "stereonet_node"
    own, _ros = split_ros_args(argv[1:])
    if any(a in ("-h", "--help") for a in own):
        sys.stdout.write(help_text(prog))
        sys.stdout.flush()
        return 0
    if own:
        print(f"[FATAL] [stereonet]: cannot start: unknown argument(s) {' '.join(own)}; node "
              f"parameters go after --ros-args (-p NAME:=VALUE, --params-file FILE); {prog} --help "
              "lists them", file=sys.stderr)
        return 2
    return None


def main(args: Optional[List[str]] = None) -> int:
    early: List[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: early.append(signum))
    code = own_arguments_exit(args)
    if code is not None:
        return code
    from . import node  # seconds: rclpy, torch
    for sig in (signal.SIGINT, signal.SIGTERM):  # hand over first, then copy: none lost between
        signal.signal(sig, node._record_early_signal)
    node._early_stop.extend(early)
    return node.main(args)


if __name__ == "__main__":
    sys.exit(main())
