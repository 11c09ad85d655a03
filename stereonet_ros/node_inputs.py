"""The node's input side: the two image subscriptions (raw or compressed), the two camera_info
subscriptions, and the pairing of left/right images by stamp (``sync.StereoPairer``)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from .camera_infos import CameraInfoCache
from .diagnostics import INPUT_TOPICS
from .node_outputs import qos_copy
from .stats import NodeStats
from .messages import stamp_ns
from .sync import StereoPairer

SIDES = ("left", "right")


class StereoInputs:
    """Subscribes to the inputs of ``node``; every image and camera_info is counted in
    ``stats``, camera_infos land in ``cameras``, and each stereo pair goes to ``on_pair(left,
    right)`` (in the executor thread). ``on_lost(topic, n)``: DDS reported n images lost."""

    def __init__(self, node: Any, stats: NodeStats, cameras: CameraInfoCache,
                 on_pair: Callable[[Any, Any], None], on_lost: Callable[[str, int], None]) -> None:
        self.node, self.stats, self.cameras = node, stats, cameras
        self.on_pair, self.on_lost = on_pair, on_lost
        self.pairer: Optional[StereoPairer] = None
        self.transport = "raw"
        self.image_subs: List[Any] = []
        self._side_stamp: Dict[str, int] = {}  # newest image stamp per side (bag-loop detection)
        events = SubscriptionEventCallbacks(incompatible_qos=self._incompatible_qos)
        self.info_subs = [
            node.create_subscription(CameraInfo, f"{side}/camera_info", lambda m, s=side: self._on_info(s, m),
                                     qos_copy(qos_profile_sensor_data), event_callbacks=events,
                                     qos_overriding_options=QoSOverridingOptions.with_default_policies())
            for side in SIDES]

    def image_topic(self, side: str) -> str:
        """The name subscribed for one side's images. raw: the relative name (remappable as
        is). compressed: '<resolved image topic>/compressed', resolved with the node's namespace
        and remappings first, as image_transport does, so a left/image_rect:=... remap moves both."""
        base = f"{side}/image_rect"
        return self.node.resolve_topic_name(base) + "/compressed" if self.transport == "compressed" else base

    def resolved(self) -> Dict[str, str]:
        """Input key (INPUT_TOPICS) -> fully resolved topic name, for the log and warnings."""
        out = {t: self.node.resolve_topic_name(t) for t in INPUT_TOPICS}
        for side in SIDES:
            out[f"{side}/image_rect"] = self.node.resolve_topic_name(self.image_topic(side))
        return out

    def configure(self, v: Dict[str, Any]) -> None:
        """(Re)create the image subscriptions and the pairer for sync_mode, sync_slop,
        queue_size and image_transport; images still waiting for a partner are counted as
        'unpaired', not lost."""
        if self.pairer is not None:
            self.pairer.reset()
        for sub in self.image_subs:
            self.node.destroy_subscription(sub)
        self.transport = v["image_transport"]
        msg_type = CompressedImage if self.transport == "compressed" else Image
        self.pairer = StereoPairer(v["sync_mode"], v["sync_slop"], v["queue_size"],
                                   on_discard=lambda n: self.stats.drop("unpaired", count=n))
        self.image_subs = []
        for side, add in (("left", self.pairer.add_left), ("right", self.pairer.add_right)):
            topic = f"{side}/image_rect"
            events = SubscriptionEventCallbacks(
                incompatible_qos=self._incompatible_qos,
                message_lost=lambda info, t=topic: self._lost(t, info))

            def cb(msg: Any, side: str = side, add: Any = add, topic: str = topic) -> None:
                self.stats.received_msg(topic)
                self._check_side_stamp(side, msg)
                pair = add(msg)
                if pair is not None:
                    self.on_pair(*pair)
            self.image_subs.append(self.node.create_subscription(
                msg_type, self.image_topic(side), cb, qos_copy(qos_profile_sensor_data), event_callbacks=events,
                qos_overriding_options=QoSOverridingOptions.with_default_policies()))

    def _check_side_stamp(self, side: str, msg: Any) -> None:
        """A side's stamp going back means a new timeline (bag loop, clock jump): what that
        side still queues is from the old one and would never pair (or pair with the wrong
        loop), so it is discarded now and counted as 'unpaired'."""
        t = stamp_ns(msg)
        last = self._side_stamp.get(side)
        self._side_stamp[side] = t
        if last is not None and t < last and self.pairer is not None:
            self.pairer.discard_newer(0 if side == "left" else 1, t)

    def _on_info(self, side: str, msg: CameraInfo) -> None:
        self.stats.received_msg(f"{side}/camera_info")
        self.cameras.update(side, msg)

    def _lost(self, topic: str, info: Any) -> None:
        n = int(info.total_count_change)
        if n > 0:
            self.stats.drop("transport_lost", f"{n} on {topic}", count=n)
            self.on_lost(topic, n)

    def _incompatible_qos(self, info: Any) -> None:
        self.node.get_logger().error(
            f"a publisher's QoS is incompatible with this node's subscription (policy "
            f"{info.last_policy_kind}); set qos_overrides.<topic>.subscription.reliability "
            "to match the camera driver")
