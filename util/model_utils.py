"""Model files: where they live, whether they are intact, and fetching the official ones.

Model files sit next to the script that owns them (whatever the current directory) unless ``--model_dir`` says
otherwise. Downloads go to a temporary name that keeps the real extension (``x.tmp.onnx``) and are renamed only
when complete and verified, so a download that breaks off leaves nothing under the final name.
"""
import logging
import os
import urllib.error
import urllib.request

from util.errors import ModelError
from util.file_utils import atomic_output, sha256_of_file

logger = logging.getLogger(__name__)

AILIA_MODELS_STORAGE = "https://storage.googleapis.com/ailia-models/"


def model_path(filename, owner_file, model_dir=None):
    """Absolute path of ``filename`` in ``model_dir``, or next to ``owner_file`` (a module's __file__)."""
    folder = model_dir or os.path.dirname(os.path.abspath(owner_file))
    return os.path.join(os.path.abspath(folder), filename)


def verify_file(path, sha256=None):
    """Raise ModelError unless ``path`` exists, is not empty and matches ``sha256`` (when known)."""
    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ModelError(f"model file is empty: {path}; delete it and run again")
    if sha256 and sha256_of_file(path) != sha256:
        raise ModelError(f"model file is corrupted or not the expected version (sha256 mismatch): {path}; "
                         "delete it and run again to restore it")


def download(url, path, sha256=None, show_progress=True):
    """Fetch ``url`` (https only) to ``path`` atomically, verifying ``sha256`` when known."""
    if not url.startswith("https://"):
        raise ModelError(f"refusing a non-https model URL: {url}")
    try:
        with atomic_output(path) as tmp_path:
            _fetch(url, tmp_path, show_progress)
            verify_file(tmp_path, sha256)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise ModelError(f"cannot download {url} ({reason}); without network, place the file at {path}") from None


def _fetch(url, destination, show_progress):
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=30) as response, open(destination, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(destination),
                  disable=not show_progress, leave=False) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                bar.update(len(chunk))


def check_and_download_models(weight_path, model_path=None, remote_path=None, sha256=None):
    """ailia MODELS' helper: make sure the weight file (and prototxt) exist, downloading them when missing."""
    for path in (weight_path, model_path):
        if not path:
            continue
        if not os.path.isfile(path):
            if not remote_path:
                raise ModelError(f"model file not found: {path}")
            url = remote_path.rstrip("/") + "/" + os.path.basename(path)
            logger.info("downloading %s", url)
            download(url, path, sha256 if path == weight_path else None)
        verify_file(path, sha256 if path == weight_path else None)
