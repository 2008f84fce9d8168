"""Shared pieces of the scale-out tests: free loopback ports and generated scenes on disk."""
from __future__ import annotations

import socket

import cv2
import pytest


def free_ports(n: int) -> list[int]:
    """n distinct ports free on loopback right now (bound together so none repeats)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_scenes(directory, count: int, *, seed: int = 0) -> list[str]:
    from edge_caption.evaluation.scenes import split_samples

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, sample in enumerate(split_samples("test", seed=seed, count=count)):
        path = directory / f"scene{i:03d}.png"
        cv2.imwrite(str(path), sample.image)
        paths.append(str(path))
    return paths


def write_video(path, seed: int, frames: int, size: int = 160, fps: float = 30.0) -> str:
    from edge_caption.evaluation.scenes import scene_video

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    assert writer.isOpened(), "this OpenCV cannot write mp4v"
    for frame, _ in scene_video(seed, frames=frames, size=(size, size)):
        writer.write(frame)
    writer.release()
    return str(path)


@pytest.fixture(scope="session")
def scenes_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("scenes")
