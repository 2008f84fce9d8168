"""Hugging Face image processor -> the bundle's `Preprocess` spec.

The runtime (`edge_caption.preprocess`) replays Pillow-backend processors bit for bit, so this
reader only accepts settings it can replay and names any other one in an `ExportError`.
"""
from __future__ import annotations

import warnings
from typing import Any

from edge_caption.errors import ExportError
from edge_caption.manifest import Preprocess

# PIL.Image.Resampling values, as transformers' PILImageResampling stores them.
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_DEFAULT_MEAN_STD = (0.5, 0.5, 0.5)


def preprocess_spec(image_processor: Any, default_size: int | tuple[int, int] | None = None) -> Preprocess:
    """Read `image_processor` (ViT, DeiT, BLIP, ConvNeXt or any BaseImageProcessor) into a `Preprocess`.

    Without a processor, falls back to a bilinear resize to `default_size` (the model config's
    image_size) with mean/std 0.5, and warns that it did so."""
    if image_processor is None:
        if default_size is None:
            raise ExportError("no image processor and no image size; pass processor=AutoImageProcessor.from_pretrained(...)")
        size = (default_size, default_size) if isinstance(default_size, int) else tuple(default_size)
        warnings.warn(
            f"no image processor given: using a default preprocessing (bilinear resize to {size[0]}x{size[1]}, "
            "rescale 1/255, mean/std 0.5); pass the model's image processor for exact preprocessing",
            UserWarning, stacklevel=2)
        return Preprocess(size=size, resize="bilinear", mean=_DEFAULT_MEAN_STD, std=_DEFAULT_MEAN_STD)

    p = image_processor
    name = type(p).__name__
    for flag in ("do_pad", "do_flip_channel_order", "do_reduce_labels", "do_image_splitting"):
        if getattr(p, flag, False):
            raise ExportError(f"{name}.{flag}=True is not supported by edge-caption preprocessing; set it to False")
    if not getattr(p, "do_resize", True):
        raise ExportError(f"{name}.do_resize=False is not supported: the encoder needs a fixed input size")

    resample = getattr(p, "resample", 2)
    resample = getattr(resample, "value", resample)
    if resample not in _RESAMPLE:
        raise ExportError(f"{name}.resample={resample!r} is not supported; use one of {sorted(_RESAMPLE.values())}")
    mode = _RESAMPLE[int(resample)]

    size = _as_dict(getattr(p, "size", None), name, "size")
    crop = getattr(p, "do_center_crop", False)
    crop_size = _as_dict(getattr(p, "crop_size", None), name, "crop_size") if crop else {}
    for bad in ("longest_edge", "max_height", "max_width"):
        if size.get(bad):
            raise ExportError(f"{name}.size[{bad!r}] is not supported (variable output size); use height/width or shortest_edge")

    resize_to = shortest = None
    if "ConvNext" in name and size.get("shortest_edge"):
        # ConvNeXt's own resize: below 384, keep aspect to shortest_edge / crop_pct then crop square.
        edge = int(size["shortest_edge"])
        if edge < 384:
            shortest, crop_hw = int(edge / getattr(p, "crop_pct", 224 / 256)), (edge, edge)
        else:
            resize_to, crop_hw = None, (edge, edge)
        if crop:
            raise ExportError(f"{name}.do_center_crop=True on top of its crop_pct resize is not supported")
        out_size, do_crop = crop_hw, shortest is not None
    elif size.get("height") and size.get("width"):
        hw = (int(size["height"]), int(size["width"]))
        out_size, do_crop = (_hw(crop_size, name) if crop else hw), bool(crop)
        resize_to = hw if crop else None
    elif size.get("shortest_edge"):
        if not crop:
            raise ExportError(f"{name}.size={{'shortest_edge': ...}} without do_center_crop gives a variable "
                              "output size; not supported")
        shortest, out_size, do_crop = int(size["shortest_edge"]), _hw(crop_size, name), True
    else:
        raise ExportError(f"{name}.size={size!r} is not supported; expected height/width or shortest_edge")

    rescale = float(getattr(p, "rescale_factor", 1 / 255)) if getattr(p, "do_rescale", True) else 1.0
    if getattr(p, "do_normalize", True):
        mean, std = _triple(getattr(p, "image_mean", None), name, "image_mean"), _triple(getattr(p, "image_std", None), name, "image_std")
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return Preprocess(size=out_size, resize=mode, resize_to=resize_to, shortest_edge=shortest,
                      center_crop=do_crop, rescale=rescale, mean=mean, std=std, color="rgb")


def _as_dict(value: Any, name: str, field: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, int):
        return {"height": value, "width": value}
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return {"height": value[0], "width": value[1]}
    try:
        return {k: v for k, v in dict(value).items() if v is not None}
    except (TypeError, ValueError):
        raise ExportError(f"{name}.{field}={value!r} is not supported; expected a size dict") from None


def _hw(size: dict, name: str) -> tuple[int, int]:
    if not (size.get("height") and size.get("width")):
        raise ExportError(f"{name}.crop_size={size!r} is not supported; expected height and width")
    return int(size["height"]), int(size["width"])


def _triple(value: Any, name: str, field: str) -> tuple[float, float, float]:
    if value is None:
        raise ExportError(f"{name}.{field} is missing while do_normalize=True")
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ExportError(f"{name}.{field}={value!r} must have 3 values (RGB)")
    return values
