"""Model files: where they live, whether they are intact, and fetching the official ones.

Model files sit next to the script that owns them (whatever the current directory) unless ``--model_dir`` says
otherwise. Downloads go to a temporary name that keeps the real extension (``x.tmp.onnx``) and are renamed only
when complete and verified, so a download that breaks off leaves nothing under the final name.

A file is checked before use: not empty, the expected sha256 when one is known, and otherwise (plain ``.onnx``
files) that it parses as a valid ONNX model, so that a truncated or corrupted file is reported with how to fix it
instead of failing somewhere inside a runtime.
"""
import http.client
import logging
import os
import sys
import urllib.error
import urllib.request

from util.errors import ModelError
from util.file_utils import atomic_output, sha256_of_file

logger = logging.getLogger(__name__)

AILIA_MODELS_STORAGE = "https://storage.googleapis.com/ailia-models/"

HOW_TO_FIX = ("delete it and run again if it is downloaded automatically; otherwise put the right file there "
              "(see README, 'Models')")


def model_path(filename, owner_file, model_dir=None):
    """Absolute path of ``filename`` in ``model_dir``, or next to ``owner_file`` (a module's __file__)."""
    folder = model_dir or os.path.dirname(os.path.abspath(owner_file))
    return os.path.join(os.path.abspath(folder), filename)


def is_plain_onnx(path):
    # ailia's obfuscated models (*.obf.onnx) are not standard ONNX: only the ailia SDK reads them.
    name = os.path.basename(path).lower()
    return name.endswith(".onnx") and ".obf." not in name


def onnx_problem(path):
    """None when ``path`` is a structurally valid ONNX model, else a short reason (truncated, not ONNX, ...)."""
    import onnx

    try:
        onnx.checker.check_model(path)  # parses the protobuf and checks the graph; weights are not run
    except Exception as e:  # DecodeError, ValidationError, OSError: all mean "not a usable model"
        return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    return None


def verify_file(path, sha256=None):
    """Raise ModelError unless ``path`` exists, is not empty and matches ``sha256`` (when known); without a
    sha256, a plain ``.onnx`` file must be a valid ONNX model."""
    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ModelError(f"model file is empty: {path}; {HOW_TO_FIX}")
    if sha256:
        actual = sha256_of_file(path)
        if actual != sha256.lower():
            raise ModelError(f"model file is corrupted or not the expected version: {path} (sha256 {actual[:12]}..., "
                             f"expected {sha256[:12]}...); {HOW_TO_FIX}")
    elif is_plain_onnx(path):
        problem = onnx_problem(path)
        if problem:
            raise ModelError(f"model file is truncated or not a valid ONNX model: {path} ({problem}); {HOW_TO_FIX}")


def download(url, path, sha256=None, show_progress=True):
    """Fetch ``url`` (https only) to ``path`` atomically, verifying ``sha256`` when known."""
    if not url.startswith("https://"):
        raise ModelError(f"refusing a non-https model URL: {url}")
    try:
        with atomic_output(path) as tmp_path:
            _fetch(url, tmp_path, show_progress)
            _verify_download(tmp_path, sha256, url, path)
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise ModelError(f"cannot download {url} ({type(e).__name__}: {reason}); nothing was saved. "
                         f"Without network, place the file at {path}") from None


def _verify_download(tmp_path, sha256, url, path):
    if sha256 and sha256_of_file(tmp_path) != sha256.lower():
        problem = "does not match its expected sha256"
    elif not sha256 and is_plain_onnx(path):
        problem = onnx_problem(tmp_path)
    else:
        problem = None
    if problem:
        raise ModelError(f"the file downloaded from {url} is unusable ({problem}); nothing was saved. Run again, "
                         f"or place a verified copy at {path}")


def _fetch(url, destination, show_progress):
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=30) as response, open(destination, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(url), leave=False,
                  disable=not show_progress or not sys.stderr.isatty()) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:  # the connection closed early without an error
        raise http.client.IncompleteRead(b"", total - received)


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
