"""User-facing errors.

Every failure a user can cause (bad image, unknown name, missing codec binary, corrupt
bitstream, bad weights file) is raised as an ``FCMError`` subclass with a one-line
message. The CLI turns these into ``error: <message>`` and exit code 2; the app shows
them with ``st.error``. Anything else escaping is a bug.
"""

from __future__ import annotations


class FCMError(Exception):
    """Base class: a problem with the user's input or environment, with a clear message."""


class InputError(FCMError):
    """An image or dataset that cannot be used (unreadable, corrupt, too large...)."""


class UnknownNameError(FCMError, KeyError):
    """A model, split, codec or wrapper name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ParameterError(FCMError, ValueError):
    """A parameter outside its documented range (quality, bit depth...)."""


class CodecUnavailableError(FCMError):
    """A codec whose package or binary is missing on this machine."""


class BitstreamError(FCMError):
    """A bitstream that cannot be decoded (truncated, corrupted, wrong format)."""


class WeightsError(FCMError):
    """Model, wrapper or codec weights missing, corrupt, or for another shape."""
