"""Images the middleware loses never reach a callback; they must still be counted.

The node runs in its own process on Fast DDS's plain UDPv4 transport, where images of
several MB over loopback are mostly lost (the reason the README asks for LARGE_DATA or
shared memory). Fast DDS reports the losses (message_lost), and the node counts them as
'transport_lost' drops with a log line naming the fix.
"""
from __future__ import annotations

import signal
import subprocess
import textwrap
import time

from helpers import wait_for
from robust_helpers import PYTHON, ROOT, NodeProcess

# 1280x960 rgb8 = 3.7 MB per image, best effort, 20 Hz, on UDPv4 only.
PUBLISHER = textwrap.dedent("""
    import sys, time, rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node("udp_camera", namespace="/udp")
    pub = node.create_publisher(Image, "left/image_rect", qos_profile_sensor_data)
    end = time.monotonic() + 60
    while pub.get_subscription_count() < 1 and time.monotonic() < end:
        time.sleep(0.1)
    time.sleep(1.0)
    msg = Image(height=960, width=1280, encoding="rgb8", step=3 * 1280)
    msg.data = bytes(3 * 1280 * 960)
    for i in range(int(sys.argv[1])):
        msg.header.stamp.sec = i + 1
        pub.publish(msg)
        time.sleep(0.05)
    time.sleep(2.0)
    print("published", sys.argv[1], flush=True)
""")


def test_images_lost_in_udp_transport_are_counted_and_explained(ros_domain, tmp_path, tiny_checkpoint):
    udp = {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}
    node = NodeProcess(tmp_path / "node.log", {"checkpoint": str(tiny_checkpoint), "diagnostics_period": 0.5},
                       namespace="/udp", env=udp)
    pub = None
    try:
        pub = subprocess.run([PYTHON, "-c", PUBLISHER, "40"], env={**__import__("os").environ, **udp,
                                                                    "PYTHONPATH": str(ROOT)},
                             capture_output=True, text=True, timeout=120)
        assert "published 40" in pub.stdout, pub.stdout + pub.stderr
        assert wait_for(lambda: "lost in DDS transport" in node.output(), 15), node.output()
        assert "LARGE_DATA" in node.output()
    finally:
        if node.alive():
            node.signal(signal.SIGINT)
            node.wait(30)
        node.close()
    assert node.proc.returncode == 0, node.output()
    assert "Traceback" not in node.output()
