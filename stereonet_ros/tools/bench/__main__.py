"""``python -m stereonet_ros.tools.bench``: the ``stereonet-bench`` command."""
import sys

from .cli import main

sys.exit(main())
