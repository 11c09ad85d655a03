"""The node's publishers and how one frame's outputs become messages on them."""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from . import messages
from .pipeline import FrameOutput

OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)


def qos_copy(profile: QoSProfile) -> QoSProfile:
    """A copy of a shared profile for one subscription/publisher: rclpy applies the
    qos_overrides parameters to the profile object it is given, in place, so passing a
    module-level profile lets one topic's override leak into every topic created after it."""
    return copy.copy(profile)


def cloud_due(stamp: int, last: Optional[int], rate: float) -> bool:
    """Whether a frame stamped ``stamp`` (ns) publishes points2 under cloud_rate (Hz, 0 = every
    frame) after the last cloud at ``last``. Measured on image stamps (a bag replayed faster
    keeps the recording's rate); 10 % tolerance for stamp jitter (an early frame would otherwise
    push the next cloud a whole camera period later); a stamp going back (bag loop) starts over."""
    if rate <= 0 or last is None or stamp < last:
        return True
    return stamp - last >= 0.9e9 / rate


class OutputPublishers:
    """``disparity``, ``depth`` (+ ``depth/camera_info``), ``points2``, ``confidence``
    (+ ``confidence/camera_info``) and ``disparity/color``, relative names (remappable)."""

    def __init__(self, node: Any) -> None:
        self._log = node.get_logger()
        self.idle = False   # no output had a subscriber at the last frame (not: points2 not due)
        self._last_cloud: Optional[int] = None   # stamp (ns) of the last points2 (cloud_rate)
        def pub(msg_type: Any, topic: str) -> Any:
            return node.create_publisher(msg_type, topic, qos_copy(OUTPUT_QOS),
                                         qos_overriding_options=QoSOverridingOptions.with_default_policies())
        self.disp = pub(DisparityImage, "disparity")
        self.depth = pub(Image, "depth")
        # The camera model of the depth and confidence images (the left rectified image's
        # pixels), so depth_image_proc and RViz's DepthCloud can use them directly.
        self.depth_info = pub(CameraInfo, "depth/camera_info")
        self.points = pub(PointCloud2, "points2")
        self.conf = pub(Image, "confidence")
        self.conf_info = pub(CameraInfo, "confidence/camera_info")
        self.color = pub(Image, "disparity/color")

    def all(self) -> List[Any]:
        return [self.disp, self.depth, self.depth_info, self.points, self.conf, self.conf_info, self.color]

    def wanted(self, v: Dict[str, Any], stamp: int) -> Dict[str, bool]:
        """Output -> whether the frame stamped ``stamp`` (ns) computes and publishes it: enabled
        (publish_*), with a subscriber now, and for points2 due under cloud_rate.

        Outputs nobody listens to are neither computed nor published: the cloud and the
        confidence cost real time on a CPU, and a robot often runs the node long before
        RViz or a planner subscribes. An image and its camera_info count together. The change
        between 'no output has a subscriber' and processing is logged once each way.
        """
        subs = lambda *pubs: sum(p.get_subscription_count() for p in pubs) > 0  # noqa: E731
        out = {"disparity": v["publish_disparity"] and subs(self.disp),
               "depth": v["publish_depth"] and subs(self.depth, self.depth_info),
               "points": v["publish_points"] and subs(self.points),
               "confidence": v["publish_confidence"] and subs(self.conf, self.conf_info),
               "color": v["publish_color"] and subs(self.color)}
        idle = not any(out.values())
        if idle != self.idle:
            self.idle = idle
            self._log.info("no output has a subscriber: pairs are received but not processed until one "
                           "subscribes (counted as 'event no_subscriber' on /diagnostics)" if idle else
                           "an output has a subscriber: processing pairs")
        out["points"] = out["points"] and cloud_due(stamp, self._last_cloud, v["cloud_rate"])
        if out["points"]:
            # Taken now, not when published: the next pair is decided while this frame's
            # messages are still being sent (the node's publishing thread).
            self._last_cloud = stamp
        return out

    def publish(self, header: Any, out: FrameOutput, v: Dict[str, Any], info: Optional[CameraInfo] = None,
                wanted: Optional[Dict[str, bool]] = None) -> None:
        """Publish one frame's outputs under ``header`` (the left image's); ``info`` is the
        left camera_info the frame was computed with (for depth/ and confidence/camera_info);
        ``wanted`` (:meth:`wanted`) leaves out what nobody subscribes to (None: all enabled)."""
        g = out.geometry
        if wanted is not None:
            v = {**v, **{f"publish_{k}": on for k, on in wanted.items()}}
        if v["publish_disparity"]:
            self.disp.publish(messages.make_disparity(header, out.disparity, g.fx, g.baseline, out.min_disparity,
                                                      out.max_disparity, out.delta_d, out.valid_window))
        if v["publish_depth"]:
            self.depth.publish(messages.make_depth(header, out.depth, v["depth_format"]))
            if info is not None:
                self.depth_info.publish(messages.camera_info_with_header(info, header))
        if v["publish_points"] and out.points is not None:
            self.points.publish(messages.make_cloud(header, out.points, out.rgb8, v["cloud_organized"]))
        if v["publish_confidence"] and out.confidence is not None:
            self.conf.publish(messages.make_image(header, out.confidence.astype("float32", copy=False), "32FC1"))
            if info is not None:
                self.conf_info.publish(messages.camera_info_with_header(info, header))
        if v["publish_color"]:
            color = messages.colorize_disparity(out.disparity, out.valid, max(out.min_disparity, 0.0),
                                                out.max_disparity)
            self.color.publish(messages.make_image(header, color, "bgr8"))
