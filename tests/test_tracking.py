"""Video mode: faces tracked from the previous frame's landmarks, detector only when needed, stable ids."""
import numpy as np
import pytest

from face_detection.facemesh.pipeline import FaceMesh, FaceTracker
from face_recognition.ax_facial_features.pipeline import FacialFeatures, VideoAnalyser


@pytest.fixture(scope="module")
def face_mesh():
    return FaceMesh(force_onnx=True)


def counting_detector(face_mesh):
    calls = []
    original = face_mesh.detect

    def detect(image):
        calls.append(1)
        return original(image)
    face_mesh.detect = detect
    return calls, lambda: setattr(face_mesh, "detect", original)


def moving_frames(image, count, step=3):
    return [np.ascontiguousarray(np.roll(image, i * step, axis=1)) for i in range(count)]


def test_tracking_follows_the_face_and_detects_only_every_n_frames(face_mesh, astronaut_bgr):
    frames = moving_frames(astronaut_bgr, 12)
    calls, restore = counting_detector(face_mesh)
    try:
        tracker = FaceTracker(face_mesh, redetect_interval=5)
        tracked = [tracker.process(frame) for frame in frames]
    finally:
        restore()
    assert [len(faces) for faces in tracked] == [1] * 12
    assert len(calls) == 3  # frames 0, 5 and 10
    assert {faces[0].track_id for faces in tracked} == {0}
    # Tracked landmarks agree with detecting on each frame (the ROI differs, the mesh is robust to it).
    for frame, faces in zip(frames, tracked):
        still = face_mesh.process(frame)[0]
        assert np.abs(faces[0].landmarks[:, :2] - still.landmarks[:, :2]).mean() < 2.0


def test_lost_face_is_detected_again_with_a_new_id(face_mesh, astronaut_bgr):
    blank = np.full_like(astronaut_bgr, 127)
    tracker = FaceTracker(face_mesh, redetect_interval=100)
    ids = [[f.track_id for f in tracker.process(frame)] for frame in
           [astronaut_bgr, astronaut_bgr, blank, blank, astronaut_bgr, astronaut_bgr]]
    assert ids == [[0], [0], [], [], [1], [1]]


def test_four_faces_keep_their_ids(face_mesh, astronaut_head_grid):
    tracker = FaceTracker(face_mesh, redetect_interval=3)
    frames = moving_frames(astronaut_head_grid, 7, step=2)
    first = {f.track_id: f.roi.mean(axis=0) for f in tracker.process(frames[0])}
    assert sorted(first) == [0, 1, 2, 3]
    for frame in frames[1:]:
        faces = tracker.process(frame)
        assert sorted(f.track_id for f in faces) == [0, 1, 2, 3]
        for face in faces:  # each id stays on its own face (moved by at most a few pixels per frame)
            assert np.linalg.norm(face.roi.mean(axis=0) - first[face.track_id]) < 20
            first[face.track_id] = face.roi.mean(axis=0)


def test_smoothing_is_an_exponential_moving_average(contract_manifest, astronaut_bgr):
    analyser = FacialFeatures(manifest_path=contract_manifest, force_onnx=True)
    frames = moving_frames(astronaut_bgr, 3, step=8)
    raw = VideoAnalyser(analyser, smoothing=0.0)
    smooth = VideoAnalyser(analyser, smoothing=0.5)
    raw_beard = [raw.process(f)[0].results["facial_hair"].probs["beard"] for f in frames]
    smooth_beard = [smooth.process(f)[0].results["facial_hair"].probs["beard"] for f in frames]
    expected = [raw_beard[0]]
    for value in raw_beard[1:]:
        expected.append(0.5 * expected[-1] + 0.5 * value)
    assert smooth_beard == pytest.approx(expected, abs=1e-9)
    assert raw_beard[0] != pytest.approx(raw_beard[2], abs=1e-6)  # the frames really differ


def test_smoothing_outside_range_is_refused(contract_manifest):
    from util.errors import InputError

    analyser = FacialFeatures(["eyelids"], manifest_path=contract_manifest, force_onnx=True)
    with pytest.raises(InputError):
        VideoAnalyser(analyser, smoothing=1.0)


def test_classify_interval_classifies_each_track_every_n_frames(contract_manifest, astronaut_head_grid):
    analyser = FacialFeatures(manifest_path=contract_manifest, force_onnx=True)
    calls = []
    original = analyser.classify
    analyser.classify = lambda faces: calls.append(len(faces)) or original(faces)
    video = VideoAnalyser(analyser, redetect_interval=100, classify_interval=3)
    frames = moving_frames(astronaut_head_grid, 7, step=2)
    per_frame = [video.process(frame) for frame in frames]
    assert calls == [4, 0, 0, 4, 0, 0, 4]  # all four tracks on frames 0, 3 and 6
    every = VideoAnalyser(FacialFeatures(manifest_path=contract_manifest, force_onnx=True), redetect_interval=100)
    for frame, faces in zip(frames, per_frame):
        fresh = {f.mesh.track_id: f for f in every.process(frame)}
        for face in faces:
            # the ROI follows every frame; carried answers are those of the track's last classified frame
            assert np.allclose(face.roi, fresh[face.mesh.track_id].roi, atol=1e-3)
    carried = per_frame[2][0]
    classified = next(f for f in per_frame[0] if f.mesh.track_id == carried.mesh.track_id)
    assert carried.carried and carried.results == classified.results and not classified.carried


def test_classify_interval_below_one_is_refused(contract_manifest):
    from util.errors import InputError

    analyser = FacialFeatures(["eyelids"], manifest_path=contract_manifest, force_onnx=True)
    with pytest.raises(InputError):
        VideoAnalyser(analyser, classify_interval=0)
