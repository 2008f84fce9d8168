"""Every error edge-caption raises on purpose. Each message names the problem and the fix."""
from __future__ import annotations


class EdgeCaptionError(Exception):
    """Base class: catch this to catch everything edge-caption raises on purpose.

    `reason` is the short cause alone (no fix), for callers that report why something was not used,
    as `backend="auto"` does for each backend it skips; without one given, it is the whole message."""

    def __init__(self, *args: object, reason: str | None = None):
        super().__init__(*args)
        self.reason = reason if reason is not None else (str(args[0]) if args else "")


class FrameError(EdgeCaptionError, ValueError):
    """A frame (or preprocessed pixel array) that cannot be captioned as given."""


class OptionError(EdgeCaptionError, ValueError):
    """An unknown decoding option, or a value out of range."""


class ExportError(EdgeCaptionError, ValueError):
    """A model that cannot be exported, or exported graphs that disagree with the model."""


class DataError(EdgeCaptionError, ValueError):
    """An evaluation data set (split name, captions.json, references) that cannot be used as given."""


class BundleError(EdgeCaptionError, ValueError):
    """A bundle that is missing, corrupt, tampered with, or of an unsupported format."""


class BundleNotFoundError(BundleError, FileNotFoundError):
    """The bundle directory (or its manifest) does not exist."""


class ImageNotFoundError(FrameError, FileNotFoundError):
    """An image path that does not exist."""


class EngineMismatchError(BundleError):
    """An engine built for another GPU or TensorRT version than this machine's."""


class BackendUnavailableError(EdgeCaptionError, RuntimeError):
    """The backend asked for cannot run here (library missing, no GPU, no engine in the bundle)."""


class SourceError(EdgeCaptionError, RuntimeError):
    """A frame source that cannot be opened or read."""


class ServeError(EdgeCaptionError, RuntimeError):
    """A caption server that cannot start, or that answered a request with an error."""


def missing_extra(package: str, extra: str) -> BackendUnavailableError:
    """The error for an optional dependency that is not installed, with the line that installs it."""
    return BackendUnavailableError(
        f"{package} is not installed; install it with: pip install 'edge-caption[{extra}]'",
        reason=f"{package} is not installed",
    )
