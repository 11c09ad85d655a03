"""stereonet_node plus RViz showing the colour-mapped disparity and the point cloud.

    ros2 launch stereonet_ros stereonet_rviz.launch.py camera:=stereo
"""
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("stereonet_ros")
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(
            PathJoinSubstitution([share, "launch", "stereonet.launch.py"]))),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", PathJoinSubstitution([share, "config", "stereonet.rviz"])]),
    ])
