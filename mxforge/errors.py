"""Exceptions raised by the mxforge runtime."""
from __future__ import annotations


class MxforgeError(Exception):
    """Base class of every mxforge error."""


class NotBuiltError(MxforgeError, ImportError):
    """The compiled module mxforge/_C is missing or unusable."""


class NoInstanceError(MxforgeError, LookupError):
    """No compiled instance serves the requested key; the message names the nearest ones."""


class InputError(MxforgeError, ValueError):
    """A tensor argument has the wrong dtype, shape, device, layout or values."""


class TargetUnavailableError(MxforgeError, RuntimeError):
    """The target is compiled in but cannot run in this process (e.g. no GPU)."""
