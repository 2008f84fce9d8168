"""The bundle's declared spec: one `Manifest` dataclass, loaded and validated in one place.

`manifest.json` is the only thing the runtime trusts about a bundle. Every field is declared here;
`Manifest.from_dict` reports *every* problem it finds in one `BundleError`, not the first.
Bump `FORMAT_VERSION` whenever the layout changes in a way an older runtime would misread.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import BundleError
from .loader import build, plain

FORMAT_VERSION = 4      # 2 added `static_step` and `torch_programs`, 3 `prompt`, 4 letterbox `fit`; a bundle is the oldest format that holds it
MANIFEST_FILE = "manifest.json"

# Symbolic dimensions used in shapes: B images, N = B x beams rows, T cached tokens, L new tokens.
SYMBOLIC_DIMS = ("B", "N", "T", "L", "S", "H", "W", "V")


@dataclass(frozen=True)
class Preprocess:
    """How a frame becomes `pixel_values`; read from the model's own image processor at export."""

    size: tuple[int, int]                       # (height, width) fed to the encoder
    resize: str = "bilinear"                    # bilinear | bicubic | nearest | lanczos | box | hamming
    resize_to: tuple[int, int] | None = None    # (h, w) before a center crop; None: resize straight to `size`
    shortest_edge: int | None = None            # resize so the shorter side is this, keep aspect (then crop)
    center_crop: bool = False
    rescale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color: str = "rgb"                          # channel order the encoder expects
    fit: str = "stretch"                        # stretch: any frame to `size`; letterbox: keep aspect, pad
    fill: tuple[int, int, int] = (128, 128, 128)    # RGB of letterbox bars (unused by stretch)


@dataclass(frozen=True)
class TokenizerSpec:
    file: str                                   # a Hugging Face `tokenizers` JSON file in the bundle
    prompt_ids: tuple[int, ...]                 # decoder start / prompt tokens every caption begins with
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None = None
    clean_up_tokenization_spaces: bool = False  # what the model's tokenizer.decode() does by default


@dataclass(frozen=True)
class StateSpec:
    """One recurrent tensor the decoder step reads and writes (self-attention K/V, RNN h/c).

    `shape` uses SYMBOLIC_DIMS for the dynamic axes. `reorder`: beam search must gather its rows
    by beam index after every step. `init`: "empty" (length 0 along `grow_axis`), "zeros", or
    "memory:NAME" (an encoder output, repeated per beam)."""

    input: str
    output: str
    shape: tuple[Any, ...]
    dtype: str = "float32"
    reorder: bool = True
    init: str = "empty"
    grow_axis: int | None = 2


@dataclass(frozen=True)
class GraphSpec:
    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class StaticStepSpec:
    """The TensorRT-shaped decoder step (export/static_step.py): the same step with static shapes.

    inputs: input_ids [N,1], position [1] (tokens cached so far), beam_index [N] (the previous row each
    row continues: beam reorder and dropped images in one gather), beam_scores [N] (added before the
    top-k), the step memory, the state as max-length caches [P,h,C,d]. outputs: topk_scores and
    topk_ids [N,top_k] (log-softmax + beam score, best first), logits [N,V], the state [N,h,C,d]."""

    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    top_k: int


@dataclass(frozen=True)
class TorchPrograms:
    """`torch.export` programs of the encoder and of the TensorRT-shaped step (the same I/O as
    `encoder` and `static_step`), for backend="torch-cuda": one file per dtype they were traced in
    ("float32", "float16"), since a traced program's casts and dtype checks fix its dtype."""

    encoder: dict[str, str]                     # dtype name -> file
    static_step: dict[str, str]
    torch_version: str                          # torch.export's format follows torch: load with this or newer


STATIC_INPUTS = ("input_ids", "position", "beam_index", "beam_scores")
STATIC_OUTPUTS = ("topk_scores", "topk_ids", "logits")


@dataclass(frozen=True)
class EngineSpec:
    """A TensorRT engine built from one of the ONNX graphs, valid only where it was built."""

    graph: str                                  # "encoder" | "decoder_step" | "static_step"
    file: str
    compute_capability: str                     # e.g. "8.7"
    tensorrt_version: str
    precision: str
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What `NAME.ecap/manifest.json` holds (API.md's Bundle section), field by field.

    name, version: the model's. family: its architecture family (the adapter that split it).
    preprocess: how a frame becomes pixel_values. tokenizer: the tokenizer file and special ids.
    encoder, decoder_step: the graph files with their input and output names.
    memory: the encoder outputs the step reads; state: the step's state spec (past -> present).
    vocab_size: the logits' width. decoding: the decoding defaults (the model's generation config).
    precision: the graphs' precision. step_extras: extra step outputs (attention weights);
    attention_grid: the (h, w) those attention positions form. tokens_per_step: 1 for steps that take
    one token (RNNs), None for any number. static_step: the TensorRT-shaped step, when exported.
    torch_programs: torch.export programs for backend="torch-cuda". prompt: the prompt text baked
    in at export (BLIP's prefix, Florence-2's task token such as "<CAPTION>"), None when none or given
    as ids; a caption cannot change it. engines: TensorRT engines, each
    with its compute capability, TensorRT version and sha256. files: the sha256 of every file.
    created_by: the versions that made the bundle. format_version: the layout's version; a newer one
    than this runtime knows is a `BundleError` that says which release reads it.
    """

    name: str
    version: str
    family: str
    preprocess: Preprocess
    tokenizer: TokenizerSpec
    encoder: GraphSpec
    decoder_step: GraphSpec
    memory: tuple[str, ...]                     # encoder outputs the step reads, one row per image
    state: tuple[StateSpec, ...]
    vocab_size: int
    decoding: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    step_extras: tuple[str, ...] = ()           # extra step outputs, e.g. attention weights [N, S]
    attention_grid: tuple[int, int] | None = None   # (h, w) the "attention" extra's S positions form
    tokens_per_step: int | None = None          # 1: the step takes one token (RNNs); None: any number
    static_step: StaticStepSpec | None = None   # the TensorRT-shaped step, when exported (targets "tensorrt")
    torch_programs: TorchPrograms | None = None  # for backend="torch-cuda" (targets "torch")
    prompt: str | None = None                   # the prompt baked in at export: a BLIP prefix, a Florence-2 task
    engines: tuple[EngineSpec, ...] = ()
    files: dict[str, str] = field(default_factory=dict)   # relative path -> sha256
    created_by: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def graphs(self) -> dict[str, "GraphSpec | StaticStepSpec"]:
        """Every ONNX graph the bundle holds, by the name engines use for it."""
        found: dict[str, GraphSpec | StaticStepSpec] = {"encoder": self.encoder, "decoder_step": self.decoder_step}
        if self.static_step is not None:
            found["static_step"] = self.static_step
        return found

    def __post_init__(self) -> None:
        # the oldest format that holds this bundle, so that an older runtime still reads a plain one
        newer = self.static_step is not None or self.torch_programs is not None
        letterbox = getattr(self.preprocess, "fit", "stretch") != "stretch"     # None while a load reports problems
        version = 4 if letterbox else 3 if self.prompt is not None else 2 if newer else 1
        object.__setattr__(self, "format_version", version)

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = plain(dataclasses.asdict(self))
        for key in ("static_step", "torch_programs", "prompt"):    # newer formats' fields, absent when unused
            if data[key] is None:
                del data[key]
        if self.preprocess.fit == "stretch":            # format 4's fields, absent from older bundles
            del data["preprocess"]["fit"], data["preprocess"]["fill"]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "manifest.json") -> "Manifest":
        if not isinstance(data, dict):
            raise BundleError(f"{where} is not a JSON object; re-export the bundle with `edge-caption export`")
        version = data.get("format_version")
        if not isinstance(version, int):
            raise BundleError(f"{where} has no integer format_version; re-export the bundle with `edge-caption export`")
        if version > FORMAT_VERSION:
            raise BundleError(
                f"{where} has format_version {version}, but this edge-caption reads up to {FORMAT_VERSION}; "
                f"upgrade edge-caption (pip install -U edge-caption) to a release that reads format {version}"
            )
        problems: list[str] = []
        built = build(cls, data, "", problems, _RANGES)
        if built is not None and not problems:      # names and ids across sections, once each section is sound
            problems += built._consistency_problems()
        if problems:
            listed = "\n  - ".join(problems)
            raise BundleError(
                f"{where} is invalid ({len(problems)} problem{'s' * (len(problems) > 1)}):\n  - {listed}\n"
                "Re-export the bundle with `edge-caption export`."
            )
        return built

    def _consistency_problems(self) -> list[str]:
        """What contradicts another part of the manifest (each field's own range is checked as it is built)."""
        problems = _id_problems(self)
        seeds = {s.init.split(":", 1)[1] for s in self.state if s.init.startswith("memory:")}
        for name in self.memory:
            if name not in self.encoder.outputs:
                problems.append(f"memory tensor {name!r} is not an encoder output")
            if name not in self.decoder_step.inputs and name not in seeds:
                problems.append(f"memory tensor {name!r} is neither a decoder_step input nor a state's initial value")
        for name in seeds - set(self.memory):
            problems.append(f"a state starts from {name!r}, which is not a memory tensor")
        for name in self.step_extras:
            if name not in self.decoder_step.outputs:
                problems.append(f"step extra {name!r} is not a decoder_step output")
        if self.tokens_per_step not in (None, 1):
            problems.append(f"tokens_per_step must be 1 or null, got {self.tokens_per_step!r}")
        for s in self.state:
            if s.input not in self.decoder_step.inputs:
                problems.append(f"state input {s.input!r} is not a decoder_step input")
            if s.output not in self.decoder_step.outputs:
                problems.append(f"state output {s.output!r} is not a decoder_step output")
        for required in ("input_ids",):
            if required not in self.decoder_step.inputs:
                problems.append(f"decoder_step has no {required!r} input")
        if "logits" not in self.decoder_step.outputs:
            problems.append("decoder_step has no 'logits' output")
        if self.static_step is not None:
            want_in = (*STATIC_INPUTS, *[n for n in self.decoder_step.inputs if n in self.memory],
                       *[st.input for st in self.state])
            want_out = (*STATIC_OUTPUTS, *[st.output for st in self.state])
            if (self.static_step.inputs, self.static_step.outputs) != (want_in, want_out):
                problems.append(f"static_step has inputs {list(self.static_step.inputs)} and outputs "
                                f"{list(self.static_step.outputs)}; expected {list(want_in)} and {list(want_out)}")
            if isinstance(self.vocab_size, int) and self.static_step.top_k > self.vocab_size:
                problems.append(f"static_step.top_k ({self.static_step.top_k}) must be <= vocab_size "
                                f"({self.vocab_size})")
        if self.torch_programs is not None and self.static_step is None:
            problems.append("torch_programs needs static_step (the programs share its inputs and outputs)")
        if "pixel_values" not in self.encoder.inputs:
            problems.append("encoder has no 'pixel_values' input")
        if not self.tokenizer.eos_token_ids:
            problems.append("tokenizer.eos_token_ids is empty")
        return problems


# ---- ranges: every number and name the runtime sizes or indexes something with ---------------
MAX_SIDE = 8192                 # pixels per image side: beyond any captioner's input, far below a huge allocation
MAX_VOCAB = 1 << 24
MAX_STATE_ROW = 1 << 24         # elements of one row of one state tensor (its fixed dimensions multiplied)
MAX_NEW_TOKENS = 4096
MAX_BEAMS = 64
RESIZE_MODES = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
FIT_MODES = ("stretch", "letterbox")
STATE_DTYPES = ("float32", "float16", "int64", "int32")


def _within(problems: list[str], path: str, value: Any, low: float, high: float, *, open_low: bool = False) -> None:
    import math

    if value is None:           # a value of the wrong type, already reported
        return
    if not math.isfinite(value) or value < low or value > high or (open_low and value == low):
        bound = f"> {low}" if open_low else f">= {low}"
        problems.append(f"{path!r} must be {bound} and <= {high}, got {value!r}")


def _file_problems(path: str, file: str) -> list[str]:
    parts = file.replace("\\", "/").split("/")
    if not file or file.startswith("/") or ".." in parts or ":" in parts[0]:
        return [f"{path!r} must be a path inside the bundle, got {file!r}"]
    return []


def _preprocess_ranges(p: Preprocess, prefix: str) -> list[str]:
    problems: list[str] = []
    for name in ("size", "resize_to"):
        for i, side in enumerate(getattr(p, name) or ()):
            _within(problems, f"{prefix}{name}[{i}]", side, 1, MAX_SIDE)
    if p.shortest_edge is not None:
        _within(problems, f"{prefix}shortest_edge", p.shortest_edge, 1, MAX_SIDE)
    _within(problems, f"{prefix}rescale", p.rescale, 0, 1, open_low=True)
    for i, (mean, std) in enumerate(zip(p.mean, p.std)):
        _within(problems, f"{prefix}mean[{i}]", mean, -255, 255)
        _within(problems, f"{prefix}std[{i}]", std, 0, 255, open_low=True)
    if not p.center_crop and p.shortest_edge:
        problems.append(f"{prefix + 'shortest_edge'!r} needs center_crop: without it frames of another aspect would "
                        "not come out at the encoder's fixed size")
    elif not p.center_crop and p.resize_to and tuple(p.resize_to) != tuple(p.size):
        problems.append(f"{prefix + 'resize_to'!r} {list(p.resize_to)} must equal size {list(p.size)} without "
                        "center_crop (or be null)")
    if p.fit not in FIT_MODES:
        problems.append(f"{prefix + 'fit'!r} must be one of {', '.join(FIT_MODES)}, got {p.fit!r}")
    elif p.fit == "letterbox" and (p.center_crop or p.shortest_edge or p.resize_to):
        problems.append(f"{prefix + 'fit'!r} 'letterbox' resizes the whole frame into size; it takes no "
                        "center_crop, shortest_edge or resize_to")
    for i, level in enumerate(p.fill):
        _within(problems, f"{prefix}fill[{i}]", level, 0, 255)
    if p.resize not in RESIZE_MODES:
        problems.append(f"{prefix + 'resize'!r} must be one of {', '.join(RESIZE_MODES)}, got {p.resize!r}")
    if p.color not in ("rgb", "bgr"):
        problems.append(f"{prefix + 'color'!r} must be 'rgb' or 'bgr', got {p.color!r}")
    return problems


def _tokenizer_ranges(t: TokenizerSpec, prefix: str) -> list[str]:
    problems = _file_problems(prefix + "file", t.file)
    for name in ("prompt_ids", "eos_token_ids"):
        for i, token in enumerate(getattr(t, name)):
            _within(problems, f"{prefix}{name}[{i}]", token, 0, MAX_VOCAB - 1)
    if t.pad_token_id is not None:
        _within(problems, prefix + "pad_token_id", t.pad_token_id, 0, MAX_VOCAB - 1)
    return problems


def _state_ranges(s: StateSpec, prefix: str) -> list[str]:
    problems: list[str] = []
    row = 1
    for i, dim in enumerate(s.shape):
        if isinstance(dim, int) and not isinstance(dim, bool):
            _within(problems, f"{prefix}shape[{i}]", dim, 1, MAX_STATE_ROW)
            row *= dim if 1 <= dim <= MAX_STATE_ROW else 1
        elif dim not in SYMBOLIC_DIMS:
            problems.append(f"{prefix}shape[{i}] must be a positive integer or one of {', '.join(SYMBOLIC_DIMS)}, "
                            f"got {dim!r}")
        elif not s.init.startswith("memory:") and dim not in ("N", "B", "T") and i != s.grow_axis:
            problems.append(f"{prefix}shape[{i}] {dim!r} cannot be sized before the first step (init {s.init!r})")
    if row > MAX_STATE_ROW:
        problems.append(f"{prefix + 'shape'!r} holds {row} elements per row, more than {MAX_STATE_ROW}")
    if s.grow_axis is not None and not 0 <= s.grow_axis < len(s.shape):
        problems.append(f"{prefix + 'grow_axis'!r} must be an axis of its shape (0..{len(s.shape) - 1}) or null, "
                        f"got {s.grow_axis}")
    if s.dtype not in STATE_DTYPES:
        problems.append(f"{prefix + 'dtype'!r} must be one of {', '.join(STATE_DTYPES)}, got {s.dtype!r}")
    if s.init not in ("empty", "zeros") and not s.init.startswith("memory:"):
        problems.append(f"{prefix + 'init'!r} must be 'empty', 'zeros' or 'memory:NAME', got {s.init!r}")
    return problems


def _manifest_ranges(m: "Manifest", prefix: str) -> list[str]:
    from ..errors import OptionError
    from ..options import DecodeOptions

    problems: list[str] = []
    _within(problems, "vocab_size", m.vocab_size, 1, MAX_VOCAB)
    if m.attention_grid is not None:
        for i, side in enumerate(m.attention_grid):
            _within(problems, f"attention_grid[{i}]", side, 1, MAX_SIDE)
    for name in sorted(m.files):
        problems += _file_problems(f"files[{name!r}]", name)
        if not isinstance(m.files[name], str) or len(m.files[name]) != 64:
            problems.append(f"files[{name!r}] must be a sha256 (64 hex digits), got {m.files[name]!r}")
    try:
        options = DecodeOptions.from_mapping(m.decoding)
    except (OptionError, TypeError) as exc:
        return problems + [f"'decoding': {exc}"]
    _within(problems, "decoding.max_new_tokens", options.max_new_tokens, 1, MAX_NEW_TOKENS)
    _within(problems, "decoding.num_beams", options.num_beams, 1, MAX_BEAMS)
    return problems


def _id_problems(m: "Manifest") -> list[str]:
    """Token ids must index the vocabulary."""
    t = m.tokenizer
    ids = [*(("prompt_ids", i) for i in t.prompt_ids), *(("eos_token_ids", i) for i in t.eos_token_ids)]
    ids += [("pad_token_id", t.pad_token_id)] if t.pad_token_id is not None else []
    return [f"tokenizer.{name} {token} is outside the vocabulary (vocab_size {m.vocab_size})"
            for name, token in ids if token >= m.vocab_size]


_RANGES = {
    Preprocess: _preprocess_ranges,
    TokenizerSpec: _tokenizer_ranges,
    StateSpec: _state_ranges,
    GraphSpec: lambda g, prefix: _file_problems(prefix + "file", g.file),
    StaticStepSpec: lambda g, prefix: _file_problems(prefix + "file", g.file) + (
        [f"{prefix + 'top_k'!r} must be >= 1, got {g.top_k}"] if g.top_k < 1 else []),
    Manifest: _manifest_ranges,
}
