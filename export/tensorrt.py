"""`edge-caption build`: TensorRT engines from a bundle's ONNX graphs, on the machine that runs them.

A Jetson user exports on a desktop and builds on the device, so this needs TensorRT, cuda-python
and onnx, never torch. What both TensorRT generations share decides the recipe: a strongly typed
network (the flag is required on 10.x and ignored on 11.x), precision taken from the graph (fp16
by converting the ONNX, int8 from Q/DQ nodes calibrated on ONNX Runtime; 11.x has no precision
flags or calibrators at all), one optimization profile per batch size asked for (the step's rows
are batch x beams), and a timing cache kept between builds. Engines land in the bundle's
`engines/` with their compute capability, TensorRT version and sha256 in the manifest.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Collection

from edge_caption.backends.cuda import Device, load_cudart
from edge_caption.backends.base import parse_version
from edge_caption.backends.tensorrt import MIN_TENSORRT, load_tensorrt
from edge_caption.bundle import Bundle, sha256_file
from edge_caption.decoding.static import cache_length
from edge_caption.errors import BackendUnavailableError, ExportError
from edge_caption.manifest import MANIFEST_FILE, EngineSpec

PRECISIONS = ("fp32", "fp16", "int8", "fp8")
ENGINE_DIR = "engines"


@dataclass(frozen=True)
class BuildConfig:
    precision: str = "fp32"
    batch_sizes: tuple[int, ...] = (1, 8)           # one optimization profile each: 1 to this many images
    num_beams: int | None = None                    # most beams per image; None: max(the bundle's default, 4)
    max_new_tokens: int | None = None               # longest caption the step's cache holds; None: the bundle's
    calibration: str | Path | None = None           # int8: a folder of images or a video
    timing_cache: str | Path | None = None          # None: ~/.cache/edge-caption/timing-sm<cc>-trt<version>.cache
    workspace_mb: int | None = None
    device: int = 0


def build_engines(bundle: str | Path, config: BuildConfig = BuildConfig(), *, out: str | Path | None = None,
                  overwrite: bool = False, progress: bool | Callable[[str], None] = True) -> Path:
    """Build the encoder and step engines of `bundle` for this GPU into `out` (default: in place).

    `out` may be a new or empty folder, or an existing bundle with `overwrite=True` (--overwrite);
    never `bundle` itself, a folder of other files, or (in place) the shipped default model. In place,
    the bundle gains the engines (that is what building it means)."""
    from edge_caption.progress import reporter
    from .writer import check_destination, staging, write_manifest

    say = reporter(progress, "build")
    source = Bundle.open(bundle)
    _check(config)
    target = Path(out) if out is not None else source.path
    # in place is the documented default for a bundle of one's own; --out keeps clear of the source
    sources = () if out is None else (source.path,)
    may_replace = overwrite or out is None
    if out is None and _is_shipped(source.path):
        raise ExportError(f"building without a bundle would write engines into the installed default model "
                          f"({source.path}); pass a bundle of your own (edge-caption build MY.ecap) or --out DIR "
                          "for a copy of the default model with engines")
    check_destination(target, may_replace, sources=sources)     # before minutes of engine building
    trt = load_tensorrt()
    require_tensorrt_10(trt)
    device = Device(load_cudart(), config.device)
    cc = device.compute_capability
    device.close()
    if config.precision == "fp8":
        if parse_version(cc) < (8, 9):
            raise ExportError(f"fp8 needs compute capability 8.9 or newer (Ada, Hopper); this GPU is sm_{cc}: "
                              "use --precision int8 or fp16")
        raise ExportError("fp8 engines are not built by this release yet (they need ModelOpt's ONNX quantizer); "
                          "use --precision int8 or fp16")
    version = trt.__version__
    tag = f"sm{cc.replace('.', '')}.trt{'.'.join(map(str, parse_version(version)))}.{config.precision}"
    cache_file = Path(config.timing_cache or Path.home() / ".cache" / "edge-caption" / f"timing-{tag.rsplit('.', 1)[0]}.cache")
    with tempfile.TemporaryDirectory(prefix="edge-caption-build-") as tmp:
        graphs = graph_files(source, config, Path(tmp), say)
        shapes = ShapeRanges.for_bundle(source, config)
        cache = cache_file.read_bytes() if cache_file.is_file() else b""
        built = {}
        for key in graphs:
            say(f"building the {key} engine ({config.precision}, batch {','.join(map(str, config.batch_sizes))}) "
                f"with TensorRT {version} for sm_{cc}; this takes minutes")
            built[key], cache = build_engine(trt, graphs[key], shapes, cache, config.workspace_mb)
        with staging(target, may_replace, sources=sources) as scratch:
            for name in source.manifest.files:
                (scratch / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source.file(name), scratch / name)
            kept = [e for e in source.manifest.engines if not Path(e.file).name.endswith(f"{tag}.plan")]
            specs = []
            for key, data in built.items():
                file = f"{ENGINE_DIR}/{key}.{tag}.plan"
                (scratch / ENGINE_DIR).mkdir(exist_ok=True)
                (scratch / file).write_bytes(data)
                specs.append(EngineSpec(key, file, cc, version, config.precision, sha256_file(scratch / file)))
            for stale in {e.file for e in source.manifest.engines} - {e.file for e in kept} - {s.file for s in specs}:
                (scratch / stale).unlink(missing_ok=True)
            write_manifest(scratch, replace(source.manifest, engines=tuple(kept + specs),
                                            files={k: v for k, v in source.manifest.files.items() if k != MANIFEST_FILE}))
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_bytes(cache)
    say(f"engines written to {target}/{ENGINE_DIR}; timing cache {cache_file}")
    return target


def require_tensorrt_10(trt: Any) -> None:
    """Refuse TensorRT before 10: 8.6 (JetPack 6.0) has no strongly typed networks and no INT64 inputs,
    both of which our engines need. A BackendUnavailableError, as for a missing TensorRT: the machine
    cannot build, and export(targets=("tensorrt",)) says how to build elsewhere."""
    if parse_version(trt.__version__) < MIN_TENSORRT:
        why = f"TensorRT {trt.__version__} is too old to build these engines (they need TensorRT 10 or newer)"
        raise BackendUnavailableError(f"{why}: strongly typed networks, INT64 inputs. On a Jetson, upgrade to JetPack "
                                      "6.1 or newer (TensorRT 10.3); on a desktop, pip install tensorrt from "
                                      "NVIDIA's index", reason=why)


def _is_shipped(path: Path) -> bool:
    """Whether `path` is inside the installed edge_caption package (the shipped default model)."""
    import edge_caption

    package = Path(edge_caption.__file__).resolve().parent
    return package == path.resolve() or package in path.resolve().parents


def _check(config: BuildConfig) -> None:
    if config.precision not in PRECISIONS:
        raise ExportError(f"unknown precision {config.precision!r}; choose one of: {', '.join(PRECISIONS)}")
    sizes = config.batch_sizes
    if not sizes or any(not isinstance(b, int) or b < 1 for b in sizes) or list(sizes) != sorted(set(sizes)):
        raise ExportError(f"--batch needs increasing positive batch sizes like 1,8; got {sizes}")
    if config.num_beams is not None and config.num_beams < 1:
        raise ExportError(f"num_beams must be at least 1, got {config.num_beams}")


def step_graph(bundle: Bundle) -> str:
    """Which step TensorRT gets: the TensorRT-shaped one when the bundle has it."""
    return "static_step" if bundle.manifest.static_step is not None else "decoder_step"


def graph_files(bundle: Bundle, config: BuildConfig, scratch: Path, say: Callable[[str], None]) -> dict[str, Path]:
    """The ONNX graphs TensorRT parses (the encoder and one step): precision is in the graph, never a
    builder flag."""
    m = bundle.manifest
    graphs = m.graphs()
    plain = {key: bundle.file(graphs[key].file) for key in ("encoder", step_graph(bundle))}
    if step_graph(bundle) == "decoder_step" and m.state and all(s.grow_axis is not None for s in m.state):
        say("this bundle has no TensorRT-shaped step, so the step engine takes a growing cache (no CUDA graph "
            "replay); re-export with --targets onnx,tensorrt for the faster static step")
    if config.precision == "fp32" or m.precision == f"{config.precision}-qdq":
        return plain
    if m.precision != "fp32":
        raise ExportError(f"{bundle.path} is {m.precision}; build {config.precision} engines from the fp32 bundle")
    if config.precision == "fp16":
        # what stays on the GPU between engine calls goes fp16; what the host gives or reads stays fp32
        on_device = {*m.memory, *(s.input for s in m.state), *(s.output for s in m.state)}
        say("converting the graphs to fp16 (image input, scores and logits stay fp32)")
        return {key: to_fp16(path, scratch / f"{key}.fp16.onnx", on_device) for key, path in plain.items()}
    if config.calibration is None:
        raise ExportError("int8 engines need calibration images: pass --calibration DIR_OR_VIDEO (a folder of "
                          "images or a video like the ones the camera sees), or build from a bundle made by "
                          "edge_caption.export.calibration.qdq_bundle")
    from .calibration import qdq_graphs

    made = qdq_graphs(bundle, config.calibration, scratch, progress=say)
    return {key: made[key] for key in plain}


def to_fp16(source: Path, output: Path, half_io: Collection[str] = ()) -> Path:
    """`source` with fp16 weights and activations in `output`; inputs and outputs stay fp32 except
    those named in `half_io` (what stays on the GPU between engine calls: memory, caches), which go
    fp16 so no step reads, writes or casts them at twice the width."""
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ExportError(f"fp16 engines need onnx and onnxconverter-common ({exc.name} is missing): "
                          "pip install 'edge-caption[tensorrt]'") from exc
    model = onnx.load(str(source))
    floats = {v.name for v in (*model.graph.input, *model.graph.output)
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    model = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=scoring_nodes(model),
                                             op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, "LogSoftmax"])
    # keep_io_types is a bool in onnxconverter-common 1.15+ (a list of names only before), and even True
    # leaves a blocked node's graph output (the top-k scores) fp16: set every float input and output here
    set_io_types(model, {name: onnx.TensorProto.FLOAT16 if name in half_io else onnx.TensorProto.FLOAT
                         for name in floats})
    onnx.save(model, str(output))
    return output


def set_io_types(model: Any, wanted: dict[str, int]) -> None:
    """Give graph inputs and outputs the ONNX element types in `wanted` (fp32 / fp16), dropping the
    converter's casts where they become no-ops and adding one where a reader or writer needs it."""
    from onnx import TensorProto, helper

    graph = model.graph
    casts_to = {n.output[0]: next(a.i for a in n.attribute if a.name == "to") for n in graph.node if n.op_type == "Cast"}
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input)}
    types.update({i.name: i.data_type for i in graph.initializer})
    types.update(casts_to)
    graph_inputs = {v.name for v in graph.input}

    def rename(old: str, new: str) -> None:
        for node in graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]

    gone: set[str] = set()
    for value in graph.input:
        want = wanted.get(value.name, value.type.tensor_type.elem_type)
        if value.type.tensor_type.elem_type == want:
            continue
        value.type.tensor_type.elem_type = want
        for node in [n for n in graph.node if value.name in n.input]:
            if node.op_type == "Cast" and casts_to[node.output[0]] == want:
                graph.node.remove(node)          # the converter's cast now changes nothing
                gone.add(node.output[0])
                rename(node.output[0], value.name)
            else:                                # a reader that needs the old type gets its own cast
                old = TensorProto.FLOAT if want == TensorProto.FLOAT16 else TensorProto.FLOAT16
                cast = f"{value.name}_as_{TensorProto.DataType.Name(old).lower()}_{node.name}"
                node.input[:] = [cast if n == value.name else n for n in node.input]
                graph.node.insert(0, helper.make_node("Cast", [value.name], [cast], to=old, name=cast))
    for value in graph.output:
        want = wanted.get(value.name, value.type.tensor_type.elem_type)
        if value.type.tensor_type.elem_type == want:
            continue
        value.type.tensor_type.elem_type = want
        producer = next(n for n in graph.node if value.name in n.output)
        source = producer.input[0] if producer.op_type == "Cast" else None
        if source is not None and types.get(source) == want and source not in graph_inputs:
            graph.node.remove(producer)          # what the converter cast from is the output itself
            gone.add(source)
            rename(source, value.name)
        else:
            made = f"{value.name}_before_cast"
            rename(value.name, made)
            graph.node.append(helper.make_node("Cast", [made], [value.name], to=want, name=made))
    for info in [v for v in graph.value_info if v.name in gone or v.name in wanted]:
        graph.value_info.remove(info)


def scoring_nodes(model) -> list[str]:
    """Every node downstream of the logits (the static step's log-softmax, + beam scores, top-k): kept
    fp32 in an fp16 engine, as generate() scores candidates in fp32 whatever the weights are; beam
    scores summed in fp16 would tie candidates 1/64 apart."""
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    frontier, found = ["logits"], {}
    while frontier:
        for node in readers.get(frontier.pop(), []):
            if node.name not in found:
                found[node.name] = node
                frontier.extend(node.output)
    return list(found)


class ShapeRanges:
    """(min, opt, max) of every symbolic dimension, per batch-size profile.

    B images, N = B x beams rows, T cached tokens (0 up to the longest caption), L new tokens per step
    (the prompt on the first step). The static step's P rows in (N, or more on a step that drops
    finished images) and C cache positions, fixed to the longest caption so the step's shapes never
    change. A memory tensor's other dimensions are what the encoder emits."""

    def __init__(self, per_profile: list[dict[str, tuple[int, int, int]]], memory: dict[str, tuple[int, ...]]):
        self.per_profile, self.memory = per_profile, memory

    @classmethod
    def for_bundle(cls, bundle: Bundle, config: BuildConfig) -> "ShapeRanges":
        m = bundle.manifest
        beams = config.num_beams or max(int(m.decoding.get("num_beams", 1)), 4)
        prompt = len(m.tokenizer.prompt_ids)
        max_new = config.max_new_tokens or int(m.decoding.get("max_new_tokens", 20))
        longest = prompt + max_new
        cache = cache_length(prompt, max_new)
        ranges = []
        for b in config.batch_sizes:
            # every profile starts at one image: as captions finish, the static step goes from P rows to
            # fewer N rows in one call, and both must fit the profile the batch started in
            rows = (1, b * beams, b * beams)
            ranges.append({"B": (1, b, b), "N": rows, "P": rows, "C": (cache, cache, cache),
                           "T": (0, longest // 2, longest), "L": (1, 1, max(prompt, 1))})
        return cls(ranges, _memory_shapes(bundle))

    def profile(self, index: int, name: str, shape: tuple[int, ...], names: dict[int, str]) -> tuple[tuple, tuple, tuple]:
        """(min, opt, max) for network input `name` of static dims `shape` (-1: dynamic, named in `names`)."""
        dims = []
        for axis, d in enumerate(shape):
            symbol = names.get(axis)
            if d >= 0:
                dims.append((d, d, d))
            elif symbol in self.per_profile[index]:
                dims.append(self.per_profile[index][symbol])
            elif name in self.memory and axis > 0:
                size = self.memory[name][axis]
                dims.append((size, size, size))
            else:
                raise ExportError(f"cannot size dimension {axis} ({symbol or 'unnamed'}) of {name!r} for TensorRT; "
                                  "re-export the bundle with this edge-caption")
        return tuple(tuple(d[i] for d in dims) for i in range(3))


def _memory_shapes(bundle: Bundle) -> dict[str, tuple[int, ...]]:
    """The encoder's real output shapes for one image: the step's memory inputs have these sizes."""
    import numpy as np
    import onnxruntime as ort

    m = bundle.manifest
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(bundle.file(m.encoder.file)), options, providers=["CPUExecutionProvider"])
    pixels = np.zeros((1, 3, *m.preprocess.size), np.float32)
    names = [o.name for o in session.get_outputs()]
    return {n: tuple(v.shape) for n, v in zip(names, session.run(names, {"pixel_values": pixels}))}


def _symbols(path: Path) -> dict[str, dict[int, str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {i.name: {axis: d.dim_param for axis, d in enumerate(i.type.tensor_type.shape.dim) if d.dim_param}
            for i in model.graph.input}


def build_engine(trt: Any, onnx_file: Path, shapes: ShapeRanges, timing_cache: bytes,
                 workspace_mb: int | None = None) -> tuple[bytes, bytes]:
    """One serialized engine from an ONNX file; returns (engine, the updated timing cache)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {onnx_file.name}: {errors}; "
                          "re-export the bundle, or upgrade TensorRT (JetPack) if an operator is unsupported")
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    cache = config.create_timing_cache(timing_cache)
    if not config.set_timing_cache(cache, False):
        # a cache from another TensorRT (or GPU) does not apply: time afresh rather than trust it
        cache = config.create_timing_cache(b"")
        if not config.set_timing_cache(cache, False):
            raise ExportError(f"TensorRT {trt.__version__} refused an empty timing cache; pass --timing-cache with "
                              "a new file path")
    symbols = _symbols(onnx_file)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    for index in range(len(shapes.per_profile)):
        profile = builder.create_optimization_profile()
        for tensor in inputs:
            lo, opt, hi = shapes.profile(index, tensor.name, tuple(tensor.shape), symbols.get(tensor.name, {}))
            profile.set_shape(tensor.name, lo, opt, hi)
        if config.add_optimization_profile(profile) < 0:
            raise ExportError(f"TensorRT rejected optimization profile {index} of {onnx_file.name} (see its log)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build {onnx_file.name} (its log above says why); try a smaller "
                          "--batch, or --workspace-mb if it ran out of memory")
    return bytes(memoryview(serialized)), bytes(memoryview(config.get_timing_cache().serialize()))
