"""A ROS 2 node that captions an image topic: `python -m edge_caption.ros2 --ros-args -p image_topic:=/cam/image_raw`.

It subscribes to `sensor_msgs/Image` (or `CompressedImage`: a topic ending in /compressed, or
`-p compressed:=true`) with sensor-data QoS, and publishes `std_msgs/String` captions on
`caption_topic` (default: the image topic + "/caption"), and with `annotated_topic` the frames with
their caption drawn as `bgr8` images. Parameters: `bundle` (default: the shipped model), `backend`,
`max_rate`, `every_n`, `gate`, `emit`, `num_beams`, `max_new_tokens`.

The node is a thin shell: messages go into a `TopicSource` and through `EdgeCaptioner.stream`, the same
conversion and stream the bag replay uses (tested there); `settings` and `run` below hold the rest and
are tested without ROS. rclpy is imported only in `main()`, so this module imports anywhere; the node
itself needs a ROS 2 install and is not tested here.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import OptionError
from .stream.ros import TopicSource

# name -> default, as declared to ROS (a parameter's type is its default's type; 0 / "" mean "not set")
PARAMETERS: dict[str, Any] = {
    "bundle": "", "backend": "auto", "image_topic": "/image_raw", "compressed": False, "caption_topic": "",
    "annotated_topic": "", "max_rate": 0.0, "every_n": 1, "gate": 0.0, "emit": "always", "num_beams": 0,
    "max_new_tokens": 0,
}


@dataclass(frozen=True)
class Settings:
    """What the parameters mean: the captioner's arguments, the stream's options and the topics."""

    image_topic: str
    compressed: bool
    caption_topic: str
    annotated_topic: str | None
    bundle: str | None
    backend: str
    decoding: dict[str, Any] = field(default_factory=dict)
    stream: dict[str, Any] = field(default_factory=dict)


def settings(values: dict[str, Any]) -> Settings:
    """The node's parameters (any subset of PARAMETERS) -> Settings; an unknown name is an OptionError."""
    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise OptionError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(PARAMETERS)}")
    p = {**PARAMETERS, **values}
    topic = str(p["image_topic"])
    if not topic:
        raise OptionError("image_topic is empty; set it with -p image_topic:=/camera/image_raw")
    decoding = {name: int(p[name]) for name in ("num_beams", "max_new_tokens") if int(p[name]) > 0}
    stream = {"every_n": int(p["every_n"]), "emit": str(p["emit"]), "keep_frames": bool(p["annotated_topic"])}
    if float(p["max_rate"]) > 0:
        stream["max_rate"] = float(p["max_rate"])
    if float(p["gate"]) > 0:
        stream["gate"] = float(p["gate"])
    from .stream import StreamOptions

    StreamOptions(**stream)         # every stream option checked now, before the model loads
    return Settings(image_topic=topic, compressed=bool(p["compressed"]) or topic.rstrip("/").endswith("/compressed"),
                    caption_topic=str(p["caption_topic"]) or topic.rstrip("/") + "/caption",
                    annotated_topic=str(p["annotated_topic"]) or None, bundle=str(p["bundle"]) or None,
                    backend=str(p["backend"]), decoding=decoding, stream=stream)


def run(captioner: Any, source: TopicSource, config: Settings, publish_caption: Callable[[str, Any], None],
        publish_annotated: Callable[[Any, Any], None] | None = None, stop: threading.Event | None = None) -> list:
    """Caption what `source` receives until it finishes (or `stop` is set): each caption goes to
    `publish_caption(text, event)`, and with `publish_annotated` the annotated frame's Image fields to
    `publish_annotated(fields, event)`. Returns the stream's statistics."""
    from .ros.convert import frame_to_image_fields
    from .stream.overlay import annotate

    with captioner.stream(source, **config.stream) as stream:
        for event in stream:
            publish_caption(event.caption.text, event)
            if publish_annotated is not None and event.frame is not None:
                publish_annotated(frame_to_image_fields(annotate(event.frame, event.caption)), event)
            if stop is not None and stop.is_set():
                break
        return stream.stats()


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - needs a ROS 2 install (rclpy)
    try:
        import rclpy
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import String
    except ImportError:
        raise SystemExit("edge_caption.ros2 needs ROS 2's Python packages (rclpy, sensor_msgs, std_msgs): "
                         "source your ROS 2 setup (e.g. /opt/ros/jazzy/setup.bash) and pip install "
                         "'edge-caption[ros]' in that environment") from None
    from .captioner import EdgeCaptioner

    rclpy.init(args=argv)
    node = rclpy.create_node("edge_caption")
    for name, default in PARAMETERS.items():
        node.declare_parameter(name, default)
    config = settings({name: node.get_parameter(name).value for name in PARAMETERS})
    captioner = EdgeCaptioner(config.bundle, backend=config.backend, **config.decoding)
    source = TopicSource(config.image_topic)
    node.create_subscription(CompressedImage if config.compressed else Image, config.image_topic, source.put,
                             qos_profile_sensor_data)
    captions = node.create_publisher(String, config.caption_topic, 10)
    annotated = node.create_publisher(Image, config.annotated_topic, 10) if config.annotated_topic else None

    def publish_caption(text: str, event: Any) -> None:
        captions.publish(String(data=text))

    def publish_annotated(fields: dict, event: Any) -> None:
        msg = Image(**fields)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(round(event.timestamp * 1e9)), 10**9)
        annotated.publish(msg)

    node.get_logger().info(f"captioning {config.image_topic} -> {config.caption_topic} with {captioner!r}")
    worker = threading.Thread(target=run, args=(captioner, source, config, publish_caption,
                                                publish_annotated if annotated else None), daemon=True)
    worker.start()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        source.finish()
        worker.join(timeout=10)
        captioner.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main(sys.argv))
