"""stereonet_ros: StereoNet stereo depth for ROS 2 (model, engine, node, tools).

Nothing here imports Lightning or training code; modules without ROS imports
(model, engine, geometry, imageconv, sync, metrics, stats, params, pipeline) work anywhere.
"""
__version__ = "0.1.0"

import os as _os

# OpenMP workers that spin while waiting steal the cores the ROS executor, the camera driver
# and other nodes need: measured ~4x slower inference on a busy 2-core machine with the
# default (active) policy. Must be set before torch loads OpenMP; an explicit setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
