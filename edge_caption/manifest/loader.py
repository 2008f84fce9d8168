"""JSON -> frozen dataclasses, every problem listed: the manifest's loader, apart from what it loads.

Types come from the dataclasses' annotations (ints stay ints, a bool is not a number, tuples have
their length); a wrong field is reported and building goes on, so one error can name them all.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable

Checks = dict[type, Callable[[Any, str], list[str]]]


def plain(value: Any) -> Any:
    """A dataclasses.asdict() result with tuples as lists: what json writes."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def build(cls: type, data: dict, prefix: str, problems: list[str], checks: Checks) -> Any:
    """Build dataclass `cls` from `data`, appending every problem found instead of stopping; then
    `checks[cls]`, where there is one, reports the built value's out-of-range fields."""
    hints = typing.get_type_hints(cls)
    before = len(problems)
    kwargs: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            problems.append(f"unknown field {prefix + key!r}")
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"missing field {path!r}")
            continue
        kwargs[f.name] = _convert(hints[f.name], data[f.name], path, problems, checks)
    missing_required = [
        f.name for f in dataclasses.fields(cls)
        if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing_required:
        return None
    try:
        built = cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        problems.append(f"{prefix or 'manifest'}: {exc}")
        return None
    if cls in checks:      # now the values; a field of the wrong type was reported above, skip what it breaks
        try:
            problems.extend(checks[cls](built, prefix))
        except (TypeError, AttributeError, ValueError):
            if len(problems) == before:
                raise
    return built


def _convert(hint: Any, value: Any, path: str, problems: list[str], checks: Checks) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            problems.append(f"{path!r} must be an object")
            return None
        return build(hint, value, path + ".", problems, checks)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path, problems, checks)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path!r} must be a list")
            return None
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]", problems, checks) for i, v in enumerate(value))
        if len(args) != len(value):
            problems.append(f"{path!r} must have {len(args)} items, has {len(value)}")
            return None
        return tuple(_convert(a, v, f"{path}[{i}]", problems, checks) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path!r} must be an object")
            return None
        return dict(value)
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path!r} must be a number, got {value!r}")
            return None
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path!r} must be an integer, got {value!r}")
            return None
        return value
    if hint is str:
        if not isinstance(value, str):
            problems.append(f"{path!r} must be a string, got {value!r}")
            return None
        return value
    if hint is bool:
        if not isinstance(value, bool):
            problems.append(f"{path!r} must be true or false, got {value!r}")
            return None
        return value
    return value
