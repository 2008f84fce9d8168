"""`export()`: a PyTorch captioner in, a verified engine bundle out."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable, Sequence

from edge_caption import __version__
from edge_caption.errors import ExportError
from edge_caption.manifest import GraphSpec, Manifest, Preprocess, TokenizerSpec
from edge_caption.options import DecodeOptions
from edge_caption.progress import reporter

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "fp8")
TARGETS = ("onnx", "torch", "tensorrt")
# What later releases add; said plainly instead of half-done here.
_LATER = {
    "precision": "fp32 and int8 bundles are exported in this release; fp16/bf16/fp8 arrive with `edge-caption build`",
}


def export(
    model: Any,
    output: str | Path,
    *,
    processor: Any = None,
    tokenizer: Any = None,
    precision: str = "fp32",
    targets: Sequence[str] = ("onnx",),
    prompt: str | None = None,
    name: str | None = None,
    version: str = "1",
    overwrite: bool = False,
    progress: bool | Callable[[str], None] = True,
) -> Path:
    """Export `model` (an in-memory Hugging Face captioner, or a local model directory) to a bundle.

    The encoder and decoder step are written as ONNX, checked with `onnx.checker`, run on ONNX
    Runtime against the PyTorch model (the bundle is refused if they disagree), and packed with
    `tokenizer.json`, the preprocessing read from `processor`, and the model's decoding defaults.
    `targets` with "tensorrt" adds the TensorRT-shaped decoder step (static_step.py), checked the
    same way, and builds engines where TensorRT and a GPU are here (else `edge-caption build` on the
    target machine makes them). "torch" adds
    it too, and `torch.export` programs of the encoder and that step for backend="torch-cuda".
    `precision="int8"` then stores the weights of every matrix product as int8 (see quantize.py);
    `model` may also be an fp32 bundle directory, which is quantized without torch.
    Returns the bundle directory.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision not in ("fp32", "int8"):
        raise ExportError(f"precision {precision!r} is not available: {_LATER['precision']}")
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ExportError(f"unknown target(s) {unknown}; choose from: {', '.join(TARGETS)}")

    sources = (model,) if isinstance(model, (str, Path)) else ()     # never written over, nor into
    if isinstance(model, (str, Path)) and (Path(model) / "manifest.json").is_file():
        from .quantize import quantize_bundle

        if precision == "fp32":
            raise ExportError(f"{model} is already a bundle; pass precision='int8' (--precision int8) to quantize it")
        return quantize_bundle(model, output, precision=precision, overwrite=overwrite, progress=progress)
    if precision != "fp32":
        import tempfile

        from .quantize import quantize_bundle
        from .writer import check_destination

        target = check_destination(Path(output), overwrite, sources=sources)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fp32-", dir=target.parent) as scratch:
            fp32 = export(model, Path(scratch) / "fp32.ecap", processor=processor, tokenizer=tokenizer,
                          targets=targets, prompt=prompt, name=name, version=version, progress=progress)
            quantize_bundle(fp32, output, precision=precision, overwrite=overwrite, progress=progress,
                            sources=sources)
            return Path(output)

    say = reporter(progress, "export")
    from .adapters import split_model
    from .families import is_model_dir
    from .onnx import export_onnx, validate
    from .preprocessing import preprocess_spec
    from .writer import staging, write_manifest

    output = Path(output)
    # staging refuses an existing bundle before any slow work starts
    with staging(output, overwrite, sources=sources) as scratch:
        if isinstance(model, (str, Path)) and not is_model_dir(model):
            processor, tokenizer = _load_helpers(Path(model), processor, tokenizer)
        say("splitting the model into encoder and decoder step")
        split = split_model(model, prompt=prompt, tokenizer=tokenizer, processor=processor)
        tokenizer = tokenizer if tokenizer is not None else split.tokenizer
        if tokenizer is None:
            raise ExportError("export() needs the model's tokenizer: pass tokenizer=AutoTokenizer.from_pretrained(...)")
        spec = split.preprocess or preprocess_spec(processor, split.image_size)
        say("writing ONNX graphs")
        graphs = export_onnx(split, scratch, progress=say)
        say("checking the ONNX graphs against PyTorch on ONNX Runtime")
        validate(split, scratch)
        static = programs = None
        if "tensorrt" in targets or "torch" in targets:     # the torch programs share the static step's I/O
            from .static_step import export_static_step, validate_static_step

            static = export_static_step(split, scratch, progress=say)
            say("checking the TensorRT-shaped step against the decoder step on ONNX Runtime")
            validate_static_step(split, scratch)
        if "torch" in targets:
            from .torch_programs import export_programs

            programs = export_programs(split, scratch, progress=say)
        say("writing tokenizer.json and manifest.json")
        manifest = manifest_for(split, spec, _write_tokenizer(tokenizer, scratch, split), name=name,
                                version=version, precision=precision, static_step=static, torch_programs=programs)
        for key, graph in (("encoder", manifest.encoder), ("decoder_step", manifest.decoder_step)):
            got = _graph(graphs[key])
            if (got.inputs, got.outputs) != (graph.inputs, graph.outputs):
                raise ExportError(f"{graph.file} has inputs {got.inputs} and outputs {got.outputs}, "
                                  f"but the split model declares {graph.inputs} and {graph.outputs}")
        write_manifest(scratch, manifest)
    say(f"bundle written to {output}")
    if "tensorrt" in targets:
        _engines_here(output, say)
    return output


def _engines_here(bundle: Path, say: Callable[[str], None]) -> None:
    """targets "tensorrt": build the engines now where TensorRT and a GPU are here; else say how."""
    from edge_caption.errors import BackendUnavailableError

    from .tensorrt import BuildConfig, build_engines

    try:
        build_engines(bundle, BuildConfig(), progress=say)
    except BackendUnavailableError as exc:
        say(f"no TensorRT engines built here ({exc.reason}); on the machine that will run the "
            f"bundle: edge-caption build {bundle}")


def manifest_for(split: Any, preprocess: Preprocess, tokenizer: TokenizerSpec, *, name: str | None = None,
                 version: str = "1", precision: str = "fp32", static_step: Any = None,
                 torch_programs: Any = None) -> Manifest:
    """The manifest a split model's bundle gets (without files and checksums, which the writer adds)."""
    from .onnx import ENCODER_FILE, STEP_FILE

    return Manifest(
        name=name or split.name,
        version=str(version),
        family=split.family,
        preprocess=preprocess,
        tokenizer=tokenizer,
        encoder=GraphSpec(ENCODER_FILE, ("pixel_values",), tuple(split.memory_names)),
        decoder_step=GraphSpec(STEP_FILE, ("input_ids", *split.step_memory, *split.past_names),
                               ("logits", *split.present_names, *split.step_extras)),
        memory=tuple(split.memory_names),
        state=tuple(split.state),
        vocab_size=split.vocab_size,
        decoding=DecodeOptions.from_mapping(split.generation_defaults).to_dict(),
        precision=precision,
        step_extras=tuple(split.step_extras),
        attention_grid=split.attention_grid,
        tokens_per_step=split.tokens_per_step,
        static_step=static_step,
        torch_programs=torch_programs,
        prompt=getattr(split, "prompt", None),
        created_by=_versions(),
    )


def _graph(info: Any) -> GraphSpec:
    get = info.get if isinstance(info, dict) else lambda key: getattr(info, key)
    return GraphSpec(file=str(get("file")), inputs=tuple(get("inputs")), outputs=tuple(get("outputs")))


def _write_tokenizer(tokenizer: Any, directory: Path, split: Any) -> TokenizerSpec:
    # a Hugging Face fast tokenizer wraps a `tokenizers.Tokenizer`; our reference models carry one bare
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer if hasattr(tokenizer, "to_str") else None)
    if backend is None:
        raise ExportError(
            f"{type(tokenizer).__name__} has no Hugging Face `tokenizers` backend to save as tokenizer.json; "
            "pass a fast tokenizer (AutoTokenizer.from_pretrained(..., use_fast=True))"
        )
    backend.save(str(directory / "tokenizer.json"))
    clean_up = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
    if type(backend.model).__name__ == "BPE":
        clean_up = False    # transformers skips the clean-up for BPE: it would strip real spaces
    return TokenizerSpec(
        file="tokenizer.json",
        prompt_ids=tuple(int(i) for i in split.prompt_ids),
        eos_token_ids=tuple(int(i) for i in split.eos_token_ids),
        pad_token_id=None if split.pad_token_id is None else int(split.pad_token_id),
        clean_up_tokenization_spaces=clean_up,
    )


def _load_helpers(path: Path, processor: Any, tokenizer: Any) -> tuple[Any, Any]:
    if not path.is_dir():
        raise FileNotFoundError(f"no model directory at {path}: pass a local Hugging Face model directory "
                                "(with config.json) or an in-memory model")
    from transformers import AutoImageProcessor, AutoTokenizer

    if processor is None:
        try:
            processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError):
            processor = None
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ExportError(f"no tokenizer in {path} ({exc}); save it there with tokenizer.save_pretrained() "
                              "or pass tokenizer=") from exc
    return processor, tokenizer


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {"edge_caption": __version__, "python": platform.python_version()}
    for package in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers"):
        try:
            found[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return found
