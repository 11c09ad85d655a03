"""Play a bag into stereonet_node with ``ros2 bag play`` (robots with a full ROS 2 install).

    ros2 launch stereonet_ros bag_eval.launch.py bag:=/data/stereo_bag rate:=0.5 \
        checkpoint:=/models/stereonet.pt record:=true report:=/tmp/stereonet_live.json

Launch arguments:
- ``bag``: the ROS 2 bag to play (must hold /left/image_rect, /right/image_rect,
  /left/camera_info, /right/camera_info; remap with ``ros2 bag play --remap`` otherwise);
- ``rate``: playback speed factor;
- ``params_file``: node parameters (default: this package's config/stereonet.yaml);
- ``checkpoint``: model file overriding params_file's ('' = keep params_file's, whose ''
  is the bundled default);
- ``delay``: seconds before playing, so the node has loaded its model and subscribed;
- ``record``: also run ``stereonet-replay --record-only``, which records the node's outputs
  and /diagnostics and writes ``report`` (output rate, drops by reason, accuracy against
  the bag's /gt/disparity). ``ros2 bag play`` keeps the recorded header stamps, so for
  end-to-end latency use ``stereonet-replay <bag> --record`` (restamps) instead.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, TimerAction
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "stereonet_ros"


def generate_launch_description() -> LaunchDescription:
    bag = LaunchConfiguration("bag")
    rate = LaunchConfiguration("rate")
    params_file = LaunchConfiguration("params_file")
    checkpoint = LaunchConfiguration("checkpoint")
    record = LaunchConfiguration("record")
    report = LaunchConfiguration("report")
    delay = LaunchConfiguration("delay")
    args = [
        DeclareLaunchArgument("bag", description="ROS 2 bag folder (or .db3/.mcap file) to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "stereonet.yaml"]),
                              description="stereonet_node parameter file"),
        DeclareLaunchArgument("checkpoint", default_value="", description="model checkpoint ('' = bundled default)"),
        DeclareLaunchArgument("delay", default_value="10.0",
                              description="seconds to wait before playing (model loading)"),
        DeclareLaunchArgument("record", default_value="false", description="record outputs and write a report"),
        DeclareLaunchArgument("report", default_value="stereonet_live_report.json",
                              description="report path of the recorder"),
    ]
    # checkpoint:='' keeps whatever params_file says; a path overrides it. Two alternatives
    # because a launch parameter dict cannot leave a key out conditionally.
    given = PythonExpression(["'", checkpoint, "' != ''"])
    node_kw = dict(package=PACKAGE, executable="stereonet_node", name="stereonet", output="screen")
    node = Node(**node_kw, parameters=[params_file, {"checkpoint": ParameterValue(checkpoint, value_type=str)}],
                condition=IfCondition(given))
    node_from_file = Node(**node_kw, parameters=[params_file], condition=UnlessCondition(given))
    player = ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--rate", rate], output="screen")
    recorder = Node(package=PACKAGE, executable="stereonet-replay", name="stereonet_recorder", output="screen",
                    arguments=[bag, "--record-only", "--report", report], condition=IfCondition(record))
    return LaunchDescription(args + [node, node_from_file, recorder, TimerAction(period=delay, actions=[player])])
