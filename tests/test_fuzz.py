"""Fuzzing of the image-decoding and crop path: whatever bytes, arrays or landmarks come in, the only exception
that may come out is the project's documented ``AxError`` (in practice ``InputError``).

Derandomised (the same examples on every run) and without deadlines: this is not a timed test.
"""
import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from face_recognition.ax_facial_features.constants import EYE_BAND, FACE, SUBJECT_LEFT, SUBJECT_RIGHT
from face_recognition.ax_facial_features.crops import crop_size, make_crop, make_eye_crop, preprocess
from util.errors import InputError
from util.image_utils import decode_image, imread, load_sample_portrait, to_bgr_uint8

FUZZ = settings(derandomize=True, deadline=None, max_examples=150, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _encoded_samples():
    """Small real files of every supported format, to be mutated (mutations of real files reach the decoders)."""
    portrait = cv2.resize(load_sample_portrait(), (48, 48))
    samples = [cv2.imencode(ext, portrait)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".tiff", ".webp")]
    samples.append(cv2.imencode(".png", np.full((9, 7), 40000, np.uint16))[1].tobytes())  # 16-bit gray
    samples.append(cv2.imencode(".png", cv2.cvtColor(portrait, cv2.COLOR_BGR2BGRA))[1].tobytes())
    return samples


SAMPLES = _encoded_samples()


def _mutated(data, edits, cut):
    buffer = bytearray(data)
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer[:max(1, int(len(buffer) * cut))])


mutated_files = st.builds(_mutated, st.sampled_from(SAMPLES),
                          st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=12),
                          st.sampled_from([1.0, 1.0, 0.9, 0.5, 0.1]))
headers_then_noise = st.builds(lambda head, tail: head + tail,
                               st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00",
                                                b"RIFF\x00\x00\x00\x00WEBP"]),
                               st.binary(max_size=300))


def check_decoded(image):
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.flags.c_contiguous


@FUZZ
@given(st.one_of(st.binary(min_size=1, max_size=400), headers_then_noise, mutated_files))
def test_decoding_any_bytes_gives_an_image_or_an_input_error(data):
    try:
        check_decoded(decode_image(data, "fuzz.jpg"))
    except InputError as e:
        assert str(e).startswith("fuzz.jpg: ")


def test_imread_reads_the_file_it_is_given(tmp_path):
    # decode_image is what imread runs on the file's bytes; one file-level round trip to tie them together.
    path = tmp_path / "mutated.png"
    path.write_bytes(_mutated(SAMPLES[1], [(100, 0), (200, 255)], 1.0))
    try:
        check_decoded(imread(str(path)))
    except InputError as e:
        assert str(path) in str(e)


array_dtypes = st.sampled_from([np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint32,
                                np.float16, np.float32, np.float64, np.bool_, np.complex64])


@FUZZ
@given(hnp.arrays(array_dtypes, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)))
def test_any_array_converts_to_bgr_or_raises_input_error(array):
    try:
        check_decoded(to_bgr_uint8(array))
    except InputError:
        pass


IMAGE = cv2.resize(load_sample_portrait(), (96, 96))
finite = st.floats(-1e4, 1e4, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True)


def _landmark_sets():
    spread = hnp.arrays(np.float64, (468, 3), elements=finite)
    one_point = st.builds(lambda x, y: np.tile([x, y, 0.0], (468, 1)), finite, finite)  # all points equal
    with_bad_values = st.builds(lambda base, row, value: _with_value(base, row, value),
                                spread, st.integers(0, 467), st.sampled_from([np.nan, np.inf, -np.inf, 1e300]))
    huge = hnp.arrays(np.float64, (468, 2), elements=st.floats(-1e12, 1e12))
    wrong_shape = hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=5), elements=anything)
    return st.one_of(spread, one_point, with_bad_values, huge, wrong_shape)


def _with_value(points, row, value):
    points = points.copy()
    points[row, 0] = value
    return points


@FUZZ
@given(_landmark_sets(), st.sampled_from([FACE, EYE_BAND, SUBJECT_LEFT, SUBJECT_RIGHT]))
def test_any_landmarks_give_a_crop_or_an_input_error(landmarks, kind):
    try:
        if kind in (SUBJECT_LEFT, SUBJECT_RIGHT):
            crop = make_eye_crop(IMAGE, landmarks, kind)
        else:
            crop = make_crop(IMAGE, landmarks, kind)
    except InputError:
        return
    side = crop_size(crop.kind)  # 256 for the face and eye band, 128 for one eye
    assert crop.image.shape == (side, side, 3) and crop.image.dtype == np.uint8
    batch = preprocess([crop.image])
    assert batch.shape == (1, 3, side, side) and np.isfinite(batch).all()


@pytest.mark.parametrize("landmarks", [np.full((468, 3), 10.0), np.full((468, 3), np.nan)], ids=["equal", "nan"])
def test_degenerate_landmarks_are_input_errors(landmarks):
    with pytest.raises(InputError):
        make_crop(IMAGE, landmarks, FACE)
