"""ROS recordings and messages (extra `[ros]`): frames from sensor_msgs/Image and CompressedImage,
bags (ROS 1 .bag, ROS 2 sqlite3 or MCAP) read as a stream of frames, and captions written to MCAP.

`convert` needs only numpy and cv2; `bag` and `mcap_out` import `rosbags` / `mcap_ros2` when called,
so importing this package costs nothing and a missing library is said with the line that installs it.
"""
from __future__ import annotations

from ..errors import missing_extra


_PACKAGES = {"mcap_ros2": "mcap-ros2-support"}        # import name -> the name pip installs


def require(module: str = "rosbags"):
    """Import one of the [ros] extra's libraries, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise missing_extra(_PACKAGES.get(top, top), "ros") from None
