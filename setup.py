"""Packaging: the runtime `edge_caption/` and the export side `export/`, installed as `edge_caption.export`.

Keeping export/ at the top level keeps export-time code (torch, onnx, transformers) visibly apart
from the runtime, while users import it as `edge_caption.export`.
"""
from setuptools import setup

RUNTIME = ["edge_caption", "edge_caption.backends", "edge_caption.decoding", "edge_caption.stream", "edge_caption.serve"]
EXPORT = ["edge_caption.export", "edge_caption.export.adapters", "edge_caption.export.families"]

setup(
    packages=RUNTIME + EXPORT,
    package_dir={"edge_caption": "edge_caption", "edge_caption.export": "export"},
    package_data={"edge_caption": ["models/*.ecap/*", "data/*"]},
    include_package_data=False,
)
