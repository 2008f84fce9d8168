"""What every reference captioner shares: vocabulary, preprocessing, saving, and the step contract.

A family implements four methods; everything else (export, the decoding loop, training) is generic:
- `encode(pixels)` -> memory tensors, in `memory_names` order (one row per image);
- `step(input_ids [N,1], *step memory, *state)` -> (logits [N,V], *new state, *extras);
- `forward_train(pixels, input_ids [B,L])` -> logits [B,L,V], teacher forcing, no cache;
- `state_specs()` -> the recurrent tensors (StateSpec), in step argument order.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_caption.errors import ExportError
from edge_caption.manifest import Preprocess, StateSpec

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
PAD, BOS, EOS = 0, 1, 2


class ReferenceCaptioner(nn.Module):
    family: str = ""
    memory_names: tuple[str, ...] = ()
    step_memory_names: tuple[str, ...] = ()     # the memory tensors the step reads (others only seed state)
    step_extras: tuple[str, ...] = ()
    tokens_per_step: int | None = 1             # RNN steps take one token; None: any number (with a cache)

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.vocab: list[str] = list(config["vocab"])
        self.image_size = check_image_size(config.get("image_size", 96))

    # ---- the contract ----------------------------------------------------------------------
    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, input_ids: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        raise NotImplementedError

    def forward_train(self, pixels: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def state_specs(self) -> list[StateSpec]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def attention_grid(self) -> tuple[int, int] | None:
        return None

    def memory_shapes(self) -> list[tuple]:
        """Symbolic shape of each memory tensor ("B" images, "S" positions), for the exporter."""
        with torch.no_grad():
            memory = self.encode(torch.zeros(1, 3, self.image_size, self.image_size))
        return [("B", *m.shape[1:]) for m in memory]

    def recompute(self, pixels: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
        """Logits after `sequence` [N,L] recomputed from scratch (no cache): the exactness oracle."""
        return self.forward_train(pixels, sequence)[:, -1]

    # ---- what the bundle needs -------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.family))

    def preprocess(self) -> Preprocess:
        # config "fit": "letterbox" keeps each frame's aspect (a square stays a square in a 16:9 frame)
        return Preprocess(size=(self.image_size, self.image_size), resize="bilinear", rescale=1 / 255,
                          mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), color="rgb",
                          fit=str(self.config.get("fit", "stretch")))

    def tokenizer(self):
        """A `tokenizers.Tokenizer` for the vocabulary: word level, the specials first."""
        from tokenizers import Tokenizer

        return Tokenizer.from_str(tokenizer_json(self.vocab))

    def generation_defaults(self) -> dict[str, Any]:
        return {"max_new_tokens": int(self.config.get("max_new_tokens", 20)), "num_beams": 1}

    def resized(self, image_size: int) -> "ReferenceCaptioner":
        """This model for a square input of `image_size` px: the same weights, the feature grid's
        position embedding (`grid_pos`, one row per cell) resampled bilinearly to the new grid, corners
        on corners. The convolutions do not depend on the size, so training goes on from here."""
        resized = type(self)({**self.config, "image_size": int(image_size)})
        weights = self.state_dict()
        for name, target in resized.state_dict().items():
            if name.split(".")[-1] == "grid_pos" and weights[name].shape != target.shape:
                weights[name] = _resample_grid(weights[name], target.shape[1])
        resized.load_state_dict(weights)
        return resized.train(self.training)

    # ---- persistence -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps({"edge_caption_family": self.family, **self.config}, indent=1))
        torch.save(self.state_dict(), directory / WEIGHTS_FILE)
        return directory


def check_image_size(size: Any) -> int:
    """`size` as the side of a square input, which the CNN's output stride of 16 must divide."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 16 or size % 16:
        raise ExportError(f"image size {size!r} does not fit the CNN's output stride: use a multiple of 16 "
                          "(96, the default; 128 sees small objects better)")
    return size


def _resample_grid(rows: torch.Tensor, cells: int) -> torch.Tensor:
    """[1, S*S, C] -> [1, cells, C], a square grid of rows resampled bilinearly, corners on corners."""
    old, new = round(rows.shape[1] ** 0.5), round(cells ** 0.5)
    grid = rows.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(new, new), mode="bilinear", align_corners=True)
    return grid.permute(0, 2, 3, 1).reshape(1, new * new, -1)


def tokenizer_json(vocab: list[str]) -> str:
    specials = [w for w in vocab if w.startswith("[") and w.endswith("]")]
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": vocab.index(tok), "content": tok, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True} for tok in specials],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(vocab)}, "unk_token": "[UNK]"},
    }
    return json.dumps(spec)


def rnn_state(hidden: int, names: tuple[str, ...] = ("h", "c")) -> list[StateSpec]:
    """The recurrent state: one [N, hidden] tensor per name (an LSTM's h and c, a GRU's h), each seeded
    from the memory tensor init_<name> and reordered with the beams."""
    return [StateSpec(input=name, output=f"{name}_out", shape=("N", hidden), dtype="float32", reorder=True,
                      init=f"memory:init_{name}", grow_axis=None) for name in names]


def load_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}; point at a directory saved by `edge-caption train`") from exc
    if "edge_caption_family" not in config:
        raise ExportError(f"{path} is not an edge-caption reference model (no 'edge_caption_family')")
    return config
