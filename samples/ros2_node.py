"""A ROS 2 node that segments camera images with paumer-edge and publishes label images.

    ros2 run ... or: python samples/ros2_node.py --ros-args -p bundle:=/path/model.paumer -p budget:=0.5

Subscribes to `image` (sensor_msgs/Image, rgb8/bgr8/mono8), publishes `labels` (mono8, one class index
per pixel, same header) and `overlay` (rgb8). The budget is a ROS parameter you can change while the
node runs (`ros2 param set /paumer_segmenter budget 0.3`).

rclpy comes with a ROS 2 installation (source /opt/ros/<distro>/setup.bash), not from PyPI, so it is
imported here only; without it the script says what to do and exits.
"""

from __future__ import annotations

import sys

import numpy as np

try:
    import rclpy
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.node import Node
    from sensor_msgs.msg import Image
except ImportError:  # not a ROS 2 environment
    rclpy = None

from paumer_edge.runtime import Pipeline
from paumer_edge.runtime.visualize import overlay

ENCODINGS = {"rgb8": (3, False), "bgr8": (3, True), "mono8": (1, False)}


def to_array(msg) -> tuple[np.ndarray, bool]:
    if msg.encoding not in ENCODINGS:
        raise ValueError(f"unsupported encoding {msg.encoding}; use rgb8, bgr8 or mono8")
    channels, bgr = ENCODINGS[msg.encoding]
    arr = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width * channels]
    return arr.reshape(msg.height, msg.width, channels), bgr


def to_msg(arr: np.ndarray, header, encoding: str):
    msg = Image()
    msg.header, msg.height, msg.width, msg.encoding = header, arr.shape[0], arr.shape[1], encoding
    msg.step = arr.shape[1] * (arr.shape[2] if arr.ndim == 3 else 1)
    msg.data = np.ascontiguousarray(arr).tobytes()
    return msg


if rclpy is not None:

    class PaumerSegmenter(Node):
        def __init__(self) -> None:
            super().__init__("paumer_segmenter")
            bundle = self.declare_parameter("bundle", "sample.paumer").value
            budget = float(self.declare_parameter("budget", 1.0).value)
            self.seg = Pipeline(bundle, budget=budget, shared_threads=True)
            self.labels_pub = self.create_publisher(Image, "labels", 10)
            self.overlay_pub = self.create_publisher(Image, "overlay", 10)
            self.create_subscription(Image, "image", self.on_image, 10)
            self.add_on_set_parameters_callback(self.on_params)
            self.get_logger().info(f"segmenting with {self.seg.describe()}")

        def on_params(self, params) -> SetParametersResult:
            for p in params:
                if p.name == "budget":
                    try:
                        self.seg.budget = float(p.value)
                    except Exception as e:  # out of range: refuse the change, keep running
                        return SetParametersResult(successful=False, reason=str(e))
            return SetParametersResult(successful=True)

        def on_image(self, msg) -> None:
            frame, bgr = to_array(msg)
            rgb = frame[..., ::-1] if bgr else frame
            result = self.seg(rgb)
            self.labels_pub.publish(to_msg(result.labels.astype(np.uint8), msg.header, "mono8"))
            view = overlay(np.repeat(rgb, 3, 2) if rgb.shape[2] == 1 else np.ascontiguousarray(rgb), result.labels,
                           self.seg.info.palette)
            self.overlay_pub.publish(to_msg(view, msg.header, "rgb8"))


def main() -> int:
    if rclpy is None:
        print("rclpy is not available: run this inside a ROS 2 environment "
              "(source /opt/ros/<distro>/setup.bash), with paumer-edge installed in it", file=sys.stderr)
        return 2
    rclpy.init()
    node = PaumerSegmenter()
    try:
        rclpy.spin(node)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
