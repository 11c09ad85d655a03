"""Entry point of the ``stereonet_node`` console script (``ros2 run``, launch files) and of
``python -m stereonet_ros.node``: the process's life around one :class:`StereoNetNode`.

It answers ``--help`` (and refuses arguments of its own it does not know) before anything
of ROS starts, and installs its SIGINT/SIGTERM handling *before* the node module's heavy
imports (rclpy, torch: seconds): a stop request during start-up ends the process with 0
instead of being swallowed by torch's import (which eats a KeyboardInterrupt raised in it).
"""
from __future__ import annotations

import os
import signal
import sys
from typing import List, Optional

_early_stop: List[int] = []   # signals received before rclpy took over SIGINT/SIGTERM


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
    """Run the node until SIGINT/SIGTERM (exit 0); exit code 2 on a configuration error."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: _early_stop.append(signum))
    code = own_arguments_exit(args)
    if code is not None:
        return code
    import rclpy  # seconds, with the node's torch
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from .node import StartupError, StereoNetNode
    if _early_stop:  # stopped while still importing
        return 0
    try:
        rclpy.init(args=args)  # installs rclpy's SIGINT/SIGTERM handling from here on
    except Exception as exc:  # noqa: BLE001 - e.g. an unreadable --params-file
        print(f"[FATAL] [stereonet]: cannot start: bad command line or parameters file: "
              f"{type(exc).__name__}: {str(exc).strip()}", file=sys.stderr)
        return 2
    node = None
    try:
        if _early_stop:
            return 0
        node = StereoNetNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except StartupError:  # the constructor has logged the reason
        # Nothing was started, so nothing needs an orderly stop: leave at once with 2 and skip
        # the DDS participant teardown (which can abort inside Fast DDS after a failed start).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise  # a bug, not a stop request: keep the traceback
        # SIGINT/SIGTERM shut the context down while the node was being built; whatever rcl
        # call failed on the invalid context is the stop request itself. Exit 0.
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
