"""A standard Triton model repository for a bundle: config.pbtxt, a two-line model.py, the bundle.

`edge-caption serve` writes one in a temporary directory (pointing at the bundle where it is);
`edge-caption export-triton` writes one to keep (the bundle copied in), for NVIDIA's tritonserver
container on a GPU box or a Jetson, where `pip install edge-caption` has put the runtime into the
Python that Triton's Python backend uses.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..bundle import Bundle
from ..captioner import default_bundle_path
from ..errors import OptionError

MODEL_PY = '''"""Triton Python backend entry point: the model lives in the installed edge-caption package."""
from edge_caption.serve.triton_model import TritonPythonModel  # noqa: F401
'''

# Triton waits this long for more requests to fill a batch: short next to one caption (~7 ms on a
# 2-core CPU for the default model), long enough to gather requests that arrive together.
QUEUE_DELAY_US = 2000

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [
  {{ name: "image" data_type: TYPE_UINT8 dims: [ -1 ] allow_ragged_batch: true }},
  {{ name: "num_beams" data_type: TYPE_INT32 dims: [ 1 ] optional: true }},
  {{ name: "max_new_tokens" data_type: TYPE_INT32 dims: [ 1 ] optional: true }}
]
output [
  {{ name: "text" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "score" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "token_ids" data_type: TYPE_INT32 dims: [ -1 ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: {delay} }}
instance_group [ {{ count: {instances} kind: KIND_CPU }} ]
parameters [
  {{ key: "bundle" value: {{ string_value: {bundle} }} }},
  {{ key: "backend" value: {{ string_value: {backend} }} }}
]
"""


def write_repository(repo: str | Path, bundle: str | Path | None = None, *, model_name: str = "edge_caption",
                     max_batch: int = 8, instances: int = 1, backend: str = "auto", copy_bundle: bool = True) -> Path:
    """Write `repo/<model_name>/` and return the model directory.

    `copy_bundle=True` copies the bundle to `<model_name>/1/bundle.ecap` (a repository to move to
    another machine); False points the model at the bundle's absolute path (serving from here).
    Instances are KIND_CPU: a Python-backend model places its own work (the backend "auto" picks)."""
    if max_batch < 1 or instances < 1:
        raise OptionError(f"max_batch and instances must be >= 1, got {max_batch} and {instances}")
    if not model_name or not all(ch.isalnum() or ch in "_-" for ch in model_name):
        raise OptionError(f"model name {model_name!r} must be letters, digits, '_' or '-' (it is a directory name)")
    source = Bundle.open(bundle if bundle is not None else default_bundle_path()).path.resolve()
    model_dir = Path(repo) / model_name
    version_dir = model_dir / "1"
    if model_dir.exists():
        raise FileExistsError(f"{model_dir} already exists; remove it or choose another --repo or --model-name")
    version_dir.mkdir(parents=True)
    if copy_bundle:
        shutil.copytree(source, version_dir / "bundle.ecap")
        where = "bundle.ecap"
    else:
        where = source.as_posix()
    (version_dir / "model.py").write_text(MODEL_PY)
    (model_dir / "config.pbtxt").write_text(CONFIG.format(
        name=model_name, max_batch=max_batch, delay=QUEUE_DELAY_US, instances=instances,
        bundle=json.dumps(where), backend=json.dumps(backend)))
    return model_dir
