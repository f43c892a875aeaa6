"""The project's documented error types.

Every failure a user can cause (bad input path, unreadable image, missing or corrupted model file, output that
cannot be written) is raised as an ``AxError`` subclass; scripts catch ``AxError`` and print its message as one
line, never a traceback.
"""


class AxError(Exception):
    """Base class of every error the project reports to users."""


class InputError(AxError):
    """An input (image, video, folder, webcam, landmarks) cannot be used."""


class ModelError(AxError):
    """A model file is missing, corrupted or cannot be loaded."""


class OutputError(AxError):
    """An output file (image, JSON, JSONL, video) cannot be written (folder not writable, disk full)."""
