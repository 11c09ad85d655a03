"""Launch stereonet_node for a stereo camera.

    ros2 launch stereonet_ros stereonet.launch.py camera:=/stereo device:=cuda

Subscribes to <camera>/left/image_rect, <camera>/right/image_rect and their camera_info
(remap with left_image:=..., etc. for drivers that use other names) and publishes
<camera>/disparity, depth (+ depth/camera_info), points2, confidence (+ confidence/camera_info),
disparity/color and /diagnostics (statuses named '<camera>/stereonet: pipeline' etc.).

Parameters come from ``params_file`` (default: this package's config/stereonet.yaml). The
launch arguments in ``OVERRIDES`` replace the file's value only when given: left at their
default '' they keep what the file says, so editing the YAML works with this launch file too.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

#: node parameter -> launch argument description; '' (default) = keep params_file's value
OVERRIDES = {
    "checkpoint": "model file, Lightning .ckpt or exported .pt ('' = params_file's)",
    "device": "auto | cpu | cuda | cuda:N ('' = params_file's)",
    "precision": "auto | fp32 | fp16 | bf16 ('' = params_file's)",
    "input_scale": "resize before the network, (0, 2]: < 1 faster, > 1 more precise; 0 = the checkpoint's ('' = params_file's)",
    "refiners": "refinement levels kept, -1 = the checkpoint's ('' = params_file's)",
}


def _stereonet_node(context):
    # A launch parameter dict cannot leave a key out by a condition, so it is built here,
    # once the arguments are known. Values stay substitutions: launch_ros parses their types.
    given = {name: LaunchConfiguration(name) for name in OVERRIDES
             if LaunchConfiguration(name).perform(context) != ""}
    return [Node(
        package="stereonet_ros",
        executable="stereonet_node",
        name="stereonet",
        namespace=LaunchConfiguration("camera"),
        output="screen",
        parameters=[LaunchConfiguration("params_file"), given],
        remappings=[
            ("left/image_rect", LaunchConfiguration("left_image")),
            ("right/image_rect", LaunchConfiguration("right_image")),
            ("left/camera_info", LaunchConfiguration("left_info")),
            ("right/camera_info", LaunchConfiguration("right_info")),
        ],
    )]


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("camera", default_value="stereo", description="namespace of the stereo camera"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution(
            [FindPackageShare("stereonet_ros"), "config", "stereonet.yaml"]), description="node parameters"),
        *(DeclareLaunchArgument(name, default_value="", description=text) for name, text in OVERRIDES.items()),
        DeclareLaunchArgument("left_image", default_value="left/image_rect"),
        DeclareLaunchArgument("right_image", default_value="right/image_rect"),
        DeclareLaunchArgument("left_info", default_value="left/camera_info"),
        DeclareLaunchArgument("right_info", default_value="right/camera_info"),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_stereonet_node)])
