"""`edge-caption export`, `train`, `info` and `build`: making bundles, reading them, and TensorRT engines for them.

The flags parse into the same calls the Python API makes; the export side (`edge_caption.export`)
is imported only when one of its commands runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import EdgeCaptionError
from .common import SAMPLE, bundle_only, flag, positive_int


def cmd_info(args: argparse.Namespace) -> int:
    from ..bundle import Bundle
    from ..captioner import default_bundle_path

    bundle = Bundle.open(bundle_only(args) or default_bundle_path())
    m = bundle.manifest
    runnable = _can_run(bundle)
    if args.json:
        print(json.dumps({"path": str(bundle.path), "manifest": m.to_dict(), "runs_here": runnable}, indent=2))
        return 0
    size_mb = sum(p.stat().st_size for p in bundle.path.rglob("*") if p.is_file()) / 1e6
    print(f"bundle     {bundle.path} ({size_mb:.1f} MB, format {m.format_version}, checksums ok)")
    print(f"model      {m.name}@{m.version} ({m.family}), precision {m.precision}, vocabulary {m.vocab_size}")
    pre = m.preprocess
    fit = f", letterboxed (aspect kept, bars RGB {list(pre.fill)})" if pre.fit == "letterbox" else ""
    print(f"input      {pre.size[0]}x{pre.size[1]} {pre.color.upper()}, resize {pre.resize}{fit}, "
          f"mean {list(pre.mean)}, std {list(pre.std)}")
    print(f"graphs     encoder: {m.encoder.file}; decoder step: {m.decoder_step.file} "
          f"({len(m.state)} state tensors, {len(m.memory)} memory tensors, "
          f"{'one token' if m.tokens_per_step == 1 else 'any number of tokens'} per step)")
    if m.static_step is not None:
        print(f"           TensorRT-shaped step: {m.static_step.file} (static cache, top-{m.static_step.top_k} in the graph)")
    if m.torch_programs is not None:
        print(f"           torch programs: {', '.join(m.torch_programs.encoder)} (backend torch-cuda; "
              f"torch >= {m.torch_programs.torch_version})")
    if m.step_extras:
        grid = f" over a {m.attention_grid[0]}x{m.attention_grid[1]} grid" if m.attention_grid else ""
        print(f"extras     {', '.join(m.step_extras)}{grid} (caption(..., return_attention=True))")
    print(f"engines    {', '.join(f'{e.graph} sm_{e.compute_capability} TRT {e.tensorrt_version}' for e in m.engines) or 'none (ONNX only)'}")
    if m.prompt is not None:
        task = "task" if m.family == "florence2" else "prompt"
        print(f"prompt     {m.prompt} (the {task} baked in at export; another one needs another bundle)")
    print(f"decoding   {', '.join(f'{k}={v}' for k, v in m.decoding.items())}")
    print(f"made by    {', '.join(f'{k} {v}' for k, v in m.created_by.items())}")
    for backend, verdict in runnable.items():
        print(f"{'runs here' if backend == 'onnxruntime' else '':10s} {backend}: {verdict}")
    return _check_backends(bundle) if args.check else 0


def _check_backends(bundle: Any) -> int:
    """`info --check`: caption the sample scene with every backend the bundle has; 1 if one fails."""
    from ..captioner import EdgeCaptioner

    failed = 0
    backends = ["onnxruntime"] + ["tensorrt"] * bool(bundle.manifest.engines) \
        + ["torch-cuda"] * (bundle.manifest.torch_programs is not None)
    for backend in backends:
        try:
            with EdgeCaptioner(bundle.path, backend=backend) as captioner:
                caption = captioner.caption(str(SAMPLE))
            print(f"check      {backend}: {caption.text!r} ({caption.timings['total']:.1f} ms)")
        except EdgeCaptionError as exc:
            failed = 1
            print(f"check      {backend}: FAILED: {exc}")
    return failed


def _can_run(bundle: Any) -> dict[str, str]:
    verdicts = {}
    try:
        import onnxruntime as ort

        verdicts["onnxruntime"] = f"yes (onnxruntime {ort.__version__}, {', '.join(ort.get_available_providers())})"
    except ImportError:
        verdicts["onnxruntime"] = "no: pip install onnxruntime"
    from ..backends.tensorrt import why_not

    reason = why_not(bundle)
    verdicts["tensorrt"] = f"no: {reason}" if reason else "yes (an engine matches this GPU and TensorRT)"
    from ..backends import why_not_torch_cuda

    reason = why_not_torch_cuda(bundle)
    verdicts["torch-cuda"] = f"no: {reason}" if reason else "yes (torch programs, a CUDA GPU)"
    return verdicts


def cmd_build(args: argparse.Namespace) -> int:
    from ..captioner import default_bundle_path
    from ..errors import BackendUnavailableError, OptionError

    try:    # the builder needs TensorRT and onnx, never torch: not export_module()
        from edge_caption.export.tensorrt import BuildConfig, build_engines
    except ImportError as exc:
        raise BackendUnavailableError(f"`build` needs onnx ({exc.name} is missing): "
                                      "pip install 'edge-caption[tensorrt]'") from exc
    try:
        batch = tuple(int(b) for b in args.batch.split(","))
    except ValueError:
        raise OptionError(f"--batch takes batch sizes like 1,8; got {args.batch!r}") from None
    config = BuildConfig(precision=args.precision, batch_sizes=batch, num_beams=args.num_beams,
                         max_new_tokens=args.max_new_tokens, calibration=args.calibration,
                         timing_cache=args.timing_cache, workspace_mb=args.workspace_mb, device=args.device)
    print(build_engines(bundle_only(args) or default_bundle_path(), config, out=args.out, overwrite=args.overwrite,
                        progress=not args.quiet))
    return 0


def export_module(torch_needed: bool = True):
    """`edge_caption.export`, or an error naming the extra to install when torch (or, to quantize a
    bundle, onnx) is missing."""
    from ..errors import BackendUnavailableError

    try:
        import edge_caption.export as module
        if torch_needed:
            import torch  # noqa: F401  (export and training need it; say so before any work starts)
        else:
            import onnx  # noqa: F401  (quantizing a bundle needs onnx, never torch)
    except ImportError as exc:
        if not torch_needed:
            raise BackendUnavailableError(f"quantizing a bundle needs onnx ({exc.name} is missing); install it "
                                          "with: pip install 'edge-caption[quantize]'") from exc
        raise BackendUnavailableError(
            f"this command needs torch, onnx and transformers ({exc.name} is missing); "
            "install them with: pip install 'edge-caption[export]'"
        ) from exc
    return module


def cmd_train(args: argparse.Namespace) -> int:
    export_module()
    from edge_caption.export.finetune import check_options, finetune, run_family
    from edge_caption.export.train import train

    check_options(init=args.init, method=args.finetune, family=args.family, cell=args.cell, fit=args.fit,
                  empty=args.empty, image_size=args.image_size)
    given = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "eval_every") if getattr(args, k) is not None}
    if args.finetune:
        if args.augment is not None:
            given["augment"] = args.augment
        summary = finetune(args.init, args.out, method=args.finetune, seed=args.seed, overwrite=args.overwrite, **given)
    else:
        given.update({k: getattr(args, k) for k in ("augment", "empty", "init", "cell", "fit", "image_size")
                      if getattr(args, k) is not None})
        family = args.family or run_family(args.init)
        summary = train(family, args.out, seed=args.seed, overwrite=args.overwrite, **given)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    export = export_module(torch_needed=not (Path(args.model) / "manifest.json").is_file()).export
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    out = export(args.model, args.out, precision=args.precision, targets=targets, prompt=args.prompt,
                 name=args.name, overwrite=args.overwrite)
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a captioner (local directory) to a bundle")
    p.add_argument("--model", required=True,
                   help="a local Hugging Face model directory, one written by `edge-caption train`, "
                        "or an fp32 bundle to quantize (with --precision int8)")
    p.add_argument("--out", required=True, help="the bundle directory to write (NAME.ecap)")
    p.add_argument("--precision", default="fp32", help="fp32 | int8 (int8 weights for ONNX Runtime; fp16/fp8 come with `build`)")
    p.add_argument("--targets", default="onnx", help="comma-separated: onnx (always), tensorrt (adds the "
                   "TensorRT-shaped decoder step that `build` makes engines from), torch (adds it and "
                   "torch.export programs for backend torch-cuda)")
    p.add_argument("--prompt", help="a text prefix every caption starts with (BLIP, GIT), or Florence-2's task "
                   "(default \"<CAPTION>\"; also \"<DETAILED_CAPTION>\", \"<MORE_DETAILED_CAPTION>\")")
    p.add_argument("--name", help="the model name recorded in the bundle")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="train a reference captioner on the generated scenes (needs torch)")
    p.add_argument("--family", help="show-tell | show-attend-tell | cnn-transformer (not with --init)")
    p.add_argument("--cell", help="show-attend-tell's recurrent cell: lstm (default) | gru")
    p.add_argument("--init", metavar="RUN_DIR", help="start from this trained run's weights instead of fresh ones: "
                   "more cross-entropy training, or sequence-level fine-tuning with --finetune")
    p.add_argument("--finetune", metavar="METHOD", help="sequence-level fine-tuning of --init: scst (self-critical, "
                   "CIDEr-D reward) | gan (a discriminator's score as the reward); default 300 steps, lr 5e-5, "
                   "16 images x 5 sampled captions a step")
    p.add_argument("--out", required=True, help="directory for weights, config and the training log")
    p.add_argument("--steps", type=int, help="batches to train on (default 2000; fine-tuning 300)")
    p.add_argument("--batch-size", type=positive_int, help="default 64")
    p.add_argument("--lr", type=float, help="peak learning rate (default 2e-3 RNNs, 1e-3 transformer)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    p.add_argument("--eval-every", type=int, help="validate every N steps (default 500; fine-tuning 100)")
    p.add_argument("--augment", type=float, help="share of each batch that is augmented scenes: any scale, "
                   "rotation, aspect, outlines, textured backgrounds, lighting, blur, noise, JPEG (default 0.5; "
                   "0 with --empty 0: the generated train split alone; with --finetune default 0)")
    p.add_argument("--empty", type=float, help="share of each batch that is empty views captioned "
                   "'an empty scene' (default 0.12)")
    p.add_argument("--fit", help="how a frame of another aspect meets the square input, in training and in the "
                   "exported bundle: stretch (default) | letterbox (aspect kept, grey bars); default with --init: "
                   "that run's")
    p.add_argument("--image-size", type=positive_int, help="the square input's side in px, a multiple of 16 "
                   "(default 96; with --init: that run's, and another size carries its weights over)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("info", help="what a bundle holds and whether this machine can run it")
    p.add_argument("inputs", nargs="*", metavar="BUNDLE")
    p.add_argument("-m", "--model", help="the bundle")
    p.add_argument("--json", action="store_true")
    p.add_argument("--check", action="store_true", help="also caption the sample scene with each backend the bundle has")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("build", help="build TensorRT engines for this GPU from a bundle's ONNX (needs TensorRT)")
    p.add_argument("inputs", nargs="*", metavar="BUNDLE")
    p.add_argument("-m", "--model", help="the bundle (default: the shipped model)")
    p.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8 (needs --calibration) | fp8")
    p.add_argument("--batch", default="1,8", help="batch sizes to optimize for, one profile each (default 1,8)")
    p.add_argument(*flag("num_beams"), type=int, help="most beams per image (default: max(the bundle's, 4))")
    p.add_argument(*flag("max_new_tokens"), type=int, help="longest caption (default: the bundle's)")
    p.add_argument("--calibration", help="int8: a folder of images or a video like the camera's")
    p.add_argument("--timing-cache", help="timing cache file, reused between builds "
                                          "(default ~/.cache/edge-caption/timing-sm<cc>-trt<version>.cache)")
    p.add_argument("--workspace-mb", type=int, help="TensorRT's workspace limit")
    p.add_argument("--device", type=int, default=0, help="the GPU to build for")
    p.add_argument("--out", help="write the bundle with engines here (default: in place)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_build)
