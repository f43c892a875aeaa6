"""The benchmark's baseline (upstream algorithm on our models) gives the plugin's outputs on stills."""
import pytest

from face_recognition.ax_facial_features.pipeline import FacialFeatures
from scripts.upstream_reference import UpstreamReference, max_probability_difference


@pytest.fixture(scope="module")
def analyser(contract_manifest):
    return FacialFeatures(manifest_path=contract_manifest, force_onnx=True)


@pytest.mark.parametrize("scene,faces", [("astronaut_bgr", 1), ("astronaut_head_grid", 4)])
def test_upstream_reference_matches_the_plugin(analyser, scene, faces, request):
    image = request.getfixturevalue(scene)
    ours = analyser.process(image)
    upstream = UpstreamReference(analyser).process(image)
    assert len(ours) == len(upstream) == faces
    assert max_probability_difference(ours, upstream) < 1e-5


def test_upstream_reference_removes_its_anchor_file(analyser):
    import gc
    import os

    reference = UpstreamReference(analyser)
    folder = os.path.dirname(reference.anchors_path)
    assert os.path.isfile(reference.anchors_path)
    del reference
    gc.collect()
    assert not os.path.exists(folder)
