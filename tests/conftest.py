"""Shared fixtures: real images (scikit-image's astronaut, composites of it), shared data, test classifiers."""
import os

import cv2
import numpy as np
import pytest

from util.image_utils import load_sample_portrait

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared")
FAIRFACE = os.path.join(SHARED, "datasets", "fairface-facial-features")


@pytest.fixture(scope="session")
def astronaut_bgr():
    return load_sample_portrait()


@pytest.fixture(scope="session")
def astronaut_grid(astronaut_bgr):
    """Four full astronaut copies in a 1024 px 2x2 grid: faces ~1/10 of the frame (full-range detector only)."""
    row = np.hstack([astronaut_bgr, astronaut_bgr])
    return np.vstack([row, row])


@pytest.fixture(scope="session")
def fairface_images():
    folder = os.path.join(FAIRFACE, "images")
    if not os.path.isdir(folder):
        pytest.skip("shared FairFace data not present")
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".jpg"))


@pytest.fixture(scope="session")
def contract_manifest(tmp_path_factory):
    """Manifest of tiny test classifiers with the exact I/O contract (tests only)."""
    from tests.contract_models import build_contract_models

    return build_contract_models(str(tmp_path_factory.mktemp("contract_models")))


def write_image(path, image):
    ok, data = cv2.imencode(os.path.splitext(path)[1], image)
    assert ok
    data.tofile(path)


# --- facemesh fixtures (face_detection/facemesh) ----------------------------------------------------------------


@pytest.fixture(scope="session")
def astronaut_head_grid(astronaut_bgr):
    """Four copies of the astronaut's head-and-shoulders (320x320 crop) in a 640x640 grid: 4 faces of ~95 px,
    large enough for the short-range detector. (On the full-size 1024 px grid the faces are ~1/10 of the frame:
    only the full-range detector finds them; mediapipe's FaceMesh, short range, finds none either.)"""
    head = astronaut_bgr[0:320, 64:384]
    row = np.hstack([head, head])
    return np.ascontiguousarray(np.vstack([row, row]))
