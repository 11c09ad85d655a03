"""stereonet_node plus RViz showing the colour-mapped disparity and the point cloud.

    ros2 launch stereonet_ros stereonet_rviz.launch.py camera:=stereo fixed_frame:=left_optical

``camera`` is the node's namespace (passed to stereonet.launch.py, whose other arguments
work here too: device:=cuda, left_image:=..., ...). RViz gets config/stereonet.rviz rendered
for that namespace and ``fixed_frame`` (stereonet_ros/rviz_config.py) into a temporary file:
its displays show /<camera>/disparity/color, /<camera>/points2 and /<camera>/confidence. With
no TF tree, ``fixed_frame`` must be the frame_id of the camera's left images (the cloud's
frame): ``ros2 topic echo --once /<camera>/left/camera_info --field header.frame_id``.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "stereonet_ros"


def _rviz(context):
    # Rendered here, once the arguments are known: RViz config files have no substitutions.
    from stereonet_ros.rviz_config import write
    path = write(LaunchConfiguration("rviz_template").perform(context),
                 namespace=LaunchConfiguration("camera").perform(context),
                 fixed_frame=LaunchConfiguration("fixed_frame").perform(context))
    return [Node(package="rviz2", executable="rviz2", name="rviz2", output="screen", arguments=["-d", str(path)])]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    args = [
        DeclareLaunchArgument("camera", default_value="stereo", description="namespace of the stereo camera and node"),
        DeclareLaunchArgument("fixed_frame", default_value="left_optical",
                              description="RViz fixed frame: the left images' frame_id, or a TF frame"),
        DeclareLaunchArgument("rviz_template", default_value=PathJoinSubstitution([share, "config", "stereonet.rviz"]),
                              description="RViz config template (topics relative to the camera namespace)"),
    ]
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "stereonet.launch.py"])),
        launch_arguments={"camera": LaunchConfiguration("camera")}.items())
    return LaunchDescription(args + [node, OpaqueFunction(function=_rviz)])
