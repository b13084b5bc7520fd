"""ROS 2 nodes (rclpy), image message conversion and the pip-only launch runner."""
