"""Launch stereonet_node for a stereo camera.

    ros2 launch stereonet_ros stereonet.launch.py camera:=/stereo device:=cuda

Subscribes to <camera>/left/image_rect, <camera>/right/image_rect and their camera_info
(remap with left_image:=..., etc. for drivers that use other names) and publishes
<camera>/disparity, depth, points2, confidence, disparity/color and /diagnostics.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("camera", default_value="stereo", description="namespace of the stereo camera"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution(
            [FindPackageShare("stereonet_ros"), "config", "stereonet.yaml"]), description="node parameters"),
        DeclareLaunchArgument("checkpoint", default_value="", description="'' = bundled default model"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("precision", default_value="auto", description="auto | fp32 | fp16 | bf16"),
        DeclareLaunchArgument("input_scale", default_value="1.0", description="downscale before the network"),
        DeclareLaunchArgument("left_image", default_value="left/image_rect"),
        DeclareLaunchArgument("right_image", default_value="right/image_rect"),
        DeclareLaunchArgument("left_info", default_value="left/camera_info"),
        DeclareLaunchArgument("right_info", default_value="right/camera_info"),
    ]
    node = Node(
        package="stereonet_ros",
        executable="stereonet_node",
        name="stereonet",
        namespace=LaunchConfiguration("camera"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "checkpoint": LaunchConfiguration("checkpoint"),
                "device": LaunchConfiguration("device"),
                "precision": LaunchConfiguration("precision"),
                "input_scale": LaunchConfiguration("input_scale"),
            },
        ],
        remappings=[
            ("left/image_rect", LaunchConfiguration("left_image")),
            ("right/image_rect", LaunchConfiguration("right_image")),
            ("left/camera_info", LaunchConfiguration("left_info")),
            ("right/camera_info", LaunchConfiguration("right_info")),
        ],
    )
    return LaunchDescription(args + [node])
