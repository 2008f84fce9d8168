"""Serve captions from Triton Inference Server (extra `[serve]`: nvidia-pytriton, tritonclient).

    from edge_caption.serve import serve, Client
    with serve("model.ecap", instances=2) as server:          # tritonserver on 127.0.0.1:8000
        print(Client(server.url).caption("street.jpg").text)

Triton itself is imported (started) only when a server starts, tritonclient only when a Client is
made; without them the error says `pip install "edge-caption[serve]"`.
"""
from __future__ import annotations

from .client import Client
from .repository import write_repository
from .server import Server, serve

__all__ = ["serve", "Server", "Client", "write_repository"]
