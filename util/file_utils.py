"""Output files that are either complete or absent.

Writers (OpenCV, json, onnx) write to ``<stem>.tmp<ext>`` in the destination folder, and the file is renamed to its
final name only once complete: an interrupted run never leaves a half-written file under a final name and never
replaces a good earlier output with a broken one. The temporary name keeps the real extension because OpenCV picks
the encoder from it.
"""
import contextlib
import hashlib
import json
import os


def temporary_path_for(path):
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f"{stem}.tmp{ext}")


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path; on success rename it to ``path``, on any exception delete it."""
    tmp_path = temporary_path_for(path)
    folder = os.path.dirname(tmp_path)
    os.makedirs(folder, exist_ok=True)
    try:
        yield tmp_path
        if not os.path.exists(tmp_path):
            raise OSError(f"nothing was written to {path}")
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp_path)
        raise


def write_json_atomic(path, data):
    with atomic_output(path) as tmp_path:
        with open(tmp_path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")


def sha256_of_file(path, chunk_size=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
