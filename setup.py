"""ament_python package definition: `colcon build` installs the node, tools, launch and config."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "stereonet_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "training", "training.*"]),
    # samples/: the demo's OAK-D photographs with their calibration and licence (MIT)
    package_data={PACKAGE: ["weights/*.pt", "weights/*.md", "samples/oakd/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="stereonet_ros developers",
    maintainer_email="dev@stereonet.ros",
    description="StereoNet dense stereo depth for ROS 2, and its Lightning training pipeline",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "stereonet_node = stereonet_ros.node_main:main",
            "stereonet-eval = stereonet_ros.tools.evaluate:main",
            "stereonet-replay = stereonet_ros.tools.replay:main",
            "stereonet-bench = stereonet_ros.tools.bench:main",
            "stereonet-train = training.cli:main",
        ],
    },
)
