"""Output files that are either complete or absent.

Writers (OpenCV, json, onnx) write to ``<stem>.tmp<ext>`` in the destination folder, and the file is renamed to its
final name only once complete: an interrupted run never leaves a half-written file under a final name and never
replaces a good earlier output with a broken one. The temporary name keeps the real extension because OpenCV picks
the encoder from it. A file system failure (folder not writable, disk full) is an ``OutputError`` naming the file
(``output_error``).
"""
import contextlib
import hashlib
import json
import os

from util.errors import OutputError


def temporary_path_for(path):
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f"{stem}.tmp{ext}")


@contextlib.contextmanager
def output_error(path):
    """OSError while writing ``path`` -> OutputError naming it."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"{path}: cannot be written ({e.strerror or e})") from None


class PendingOutput:
    """An output being written under its temporary name: ``commit`` gives it its final name, ``discard`` deletes
    it. For writers that stay open across many calls (video, JSONL); one-shot writers use ``atomic_output``."""

    def __init__(self, path):
        self.path = path
        self.tmp_path = temporary_path_for(path)
        folder = os.path.dirname(self.tmp_path)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise OutputError(f"{path}: cannot be written ({folder} is a file, not a folder)")
        with output_error(path):
            os.makedirs(folder, exist_ok=True)

    def commit(self):
        if not os.path.exists(self.tmp_path):
            raise OutputError(f"{self.path}: nothing was written")
        with output_error(self.path):
            os.replace(self.tmp_path, self.path)

    def discard(self):
        with contextlib.suppress(OSError):
            os.remove(self.tmp_path)


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path; on success rename it to ``path``, on any exception delete it."""
    pending = PendingOutput(path)
    try:
        yield pending.tmp_path
        pending.commit()
    except BaseException:
        pending.discard()
        raise


def write_json_atomic(path, data):
    with output_error(path), atomic_output(path) as tmp_path:
        with open(tmp_path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")


def sha256_of_file(path, chunk_size=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
