"""stereonet_ros: StereoNet stereo depth for ROS 2 (model, engine, node, tools).

Nothing here imports Lightning or training code; modules without ROS imports
(model, engine, geometry, imageconv, sync, metrics, stats, params, pipeline) work anywhere.
"""
__version__ = "0.1.0"
