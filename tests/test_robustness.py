"""Bad input, model integrity, interruption and progress, through the real command lines.

Every failing input is one line ``ERROR <input>: <reason>`` (no traceback, no OpenCV/FFmpeg/libjpeg noise); in a
batch the other inputs are still processed, a summary line counts both, and the exit code is non-zero when any
input failed. No temporary (``*.tmp.*``) or partial file is ever left behind. Both command lines are covered:
ax_facial_features.py (with the tiny contract classifiers, see contract_models.py) and facemesh.py.
"""
import builtins
import fcntl
import hashlib
import http.client
import io
import json
import logging
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import pytest

from face_detection.facemesh import model_files
from tests.conftest import REPO_ROOT, write_image
from util import image_utils, model_utils
from util.errors import InputError, ModelError
from util.file_utils import sha256_of_file
from util.runner import run_image_batch, run_video

SCRIPTS = {"plugin": os.path.join(REPO_ROOT, "face_recognition", "ax_facial_features", "ax_facial_features.py"),
           "facemesh": os.path.join(REPO_ROOT, "face_detection", "facemesh", "facemesh.py")}
# What OpenCV, FFmpeg, libjpeg/libpng or Python print when they are not kept off the console.
NOISE = ("Traceback", "[ WARN", "[ERROR", "libpng", "Corrupt JPEG", "Premature end", " @ 0x", "VIDEOIO")


def cli_args(script, manifest):
    return ["--onnx", "--manifest", manifest] if script == "plugin" else ["--onnx"]


def without_display():
    return {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}


def run_cli(script, *args, manifest=None, timeout=300):
    return subprocess.run([sys.executable, SCRIPTS[script], *args, *cli_args(script, manifest)],
                          capture_output=True, text=True, env=without_display(), timeout=timeout)


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def leftovers(folder):
    """Temporary files left anywhere under ``folder``."""
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names if ".tmp." in name]


def assert_clean_console(stderr):
    for noise in NOISE:
        assert noise not in stderr, stderr


def lines_naming(stderr, path):
    return [line for line in stderr.splitlines() if path in line]


# ---- inputs, generated --------------------------------------------------------------------------------------------
def _head_grid(astronaut, n):
    """n x n copies of the astronaut's head (320 px each): many faces, small relative to the frame."""
    head = astronaut[0:320, 64:384]
    return np.vstack([np.hstack([head] * n)] * n)


def _truncated(astronaut, ext):
    data = cv2.imencode(ext, astronaut)[1].tobytes()
    return data[: len(data) // 2]


def _png_chunk(kind, body):
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def _oversized_png(width, height, with_pixels=True):
    """A 1-bit PNG of ``width`` x ``height`` in a few kB (decoding it would need 3 bytes per pixel); without pixels,
    only what the header claims."""
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    rows = _png_chunk(b"IDAT", zlib.compress((b"\x00" * (1 + (width + 7) // 8)) * height, 9)) if with_pixels else b""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + rows + _png_chunk(b"IEND", b"")


def _palette_png(path, astronaut):
    from PIL import Image

    Image.fromarray(cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)).convert("P").save(path)


def _encoded(image):
    return lambda path, astronaut: write_image(path, image(astronaut))


def _raw(data):
    return lambda path, astronaut: Path(path).write_bytes(data(astronaut) if callable(data) else data)


@dataclass
class Case:
    name: str
    make: Optional[Callable]  # (path, astronaut BGR) -> writes the file; None: the path does not exist
    error: Optional[str] = None  # expected reason; None: processed normally
    faces: Optional[int] = None  # expected number of faces for a processed input (None: whatever is found)


IMAGE_CASES = [
    Case("good.png", _encoded(lambda a: a), faces=1),
    Case("gray.png", _encoded(lambda a: cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)), faces=1),
    Case("sixteen_bit.png", _encoded(lambda a: a.astype(np.uint16) * 257), faces=1),
    Case("rgba.png", _encoded(lambda a: cv2.cvtColor(a, cv2.COLOR_BGR2BGRA)), faces=1),
    Case("palette.png", _palette_png, faces=1),
    Case("顔 写真.jpg", _encoded(lambda a: a), faces=1),
    Case("tiny_16x16.png", _encoded(lambda a: cv2.resize(a, (16, 16), interpolation=cv2.INTER_AREA)), faces=0),
    Case("no_face.png", _encoded(lambda a: np.full((240, 320, 3), 127, np.uint8)), faces=0),
    Case("cut_by_border.png", _encoded(lambda a: np.ascontiguousarray(a[:, 200:])), faces=1),
    Case("many_faces_16.jpg", _encoded(lambda a: _head_grid(a, 4))),
    Case("many_faces_64.jpg", _encoded(lambda a: _head_grid(a, 8))),
    Case("zero_bytes.jpg", _raw(b""), error="empty file (0 bytes)"),
    Case("truncated.jpg", _raw(lambda a: _truncated(a, ".jpg")), error="truncated or corrupted image file"),
    Case("truncated.png", _raw(lambda a: _truncated(a, ".png")), error="truncated or corrupted image file"),
    Case("text.jpg", _raw(b"these are not the pixels you are looking for\n"),
         error="not a readable image (not a JPEG, PNG, BMP, TIFF or WebP file)"),
    Case("binary.jpg", _raw(bytes(range(256)) * 20), error="not a readable image (not a JPEG"),
    Case("corrupt_data.jpg", _raw(lambda a: cv2.imencode(".jpg", a)[1].tobytes()[:600] + b"\x00" * 900 + b"\xff\xd9"),
         error="not a readable image (corrupted or unsupported JPEG data)"),
    Case("over_100_megapixels.png", _raw(lambda a: _oversized_png(12000, 10000)),
         error="image too large (12000x10000, limit 100 megapixels)"),
    Case("header_claims_2_gigapixels.png", _raw(lambda a: _oversized_png(50000, 40000, with_pixels=False)),
         error="image too large (over 178 megapixels, limit 100 megapixels)"),
    Case("missing.jpg", None, error="no such file or folder"),
]
GOOD = [case for case in IMAGE_CASES if case.error is None]
BAD = [case for case in IMAGE_CASES if case.error is not None]


@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory, astronaut_bgr):
    """A folder with every existing case, plus the missing path: what a user would point the tool at."""
    folder = tmp_path_factory.mktemp("photos")
    for case in IMAGE_CASES:
        if case.make:
            case.make(str(folder / case.name), astronaut_bgr)
    return str(folder)


@pytest.fixture(scope="module", params=sorted(SCRIPTS))
def batch(request, batch_inputs, tmp_path_factory, contract_manifest):
    """One run of the command over the whole table (folder + missing file), with -w."""
    out = str(tmp_path_factory.mktemp(f"out_{request.param}"))
    result = run_cli(request.param, "-i", batch_inputs, os.path.join(batch_inputs, "missing.jpg"),
                     "-s", out + os.sep, "-w", manifest=contract_manifest)
    return request.param, batch_inputs, out, result


def reported_faces(stderr, path):
    """The face count the console reports for ``path`` (``path: N face(s)`` or ``path: no face``)."""
    match = re.search(re.escape(path) + r": (\d+) face\(s\)|" + re.escape(path) + r": no face", stderr)
    assert match, f"no face count reported for {path}:\n{stderr}"
    return int(match.group(1)) if match.group(1) else 0


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_batch_processes_good_input(batch, case):
    script, folder, out, result = batch
    path = os.path.join(folder, case.name)
    stem = os.path.splitext(case.name)[0]
    record = read_json(os.path.join(out, f"{stem}_res.json"))
    assert record["image"] == path and isinstance(record["faces"], list)
    assert cv2.imread(os.path.join(out, f"{stem}_res.png")) is not None
    count = reported_faces(result.stderr, path)
    assert count == len(record["faces"])
    if case.faces is not None:
        assert count == case.faces
    if count == 0:  # reported as such
        after = result.stderr.split(path, 1)[1].splitlines()[:2]
        assert any(line.endswith("no face") for line in after), after


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_batch_reports_bad_input_in_one_line_and_skips_it(batch, case):
    script, folder, out, result = batch
    path = os.path.join(folder, case.name)
    lines = lines_naming(result.stderr, path)
    assert len(lines) == 1 and lines[0].startswith(f"ERROR {path}: {case.error}"), lines
    stem = os.path.splitext(case.name)[0]
    assert not [name for name in os.listdir(out) if name.startswith(f"{stem}_res")]


def test_batch_summary_exit_code_and_no_partial_files(batch):
    script, folder, out, result = batch
    assert result.returncode == 1
    assert f"{len(GOOD)} image(s) succeeded, {len(BAD)} failed" in result.stderr
    assert_clean_console(result.stderr)
    assert "img/s" not in result.stderr  # no progress bar when stderr is not a terminal
    assert not leftovers(out)
    assert len(read_jsonl(os.path.join(out, "results.jsonl"))) == len(GOOD)


def test_many_small_faces_with_the_full_range_detector(batch_inputs, tmp_path, contract_manifest):
    inputs = [os.path.join(batch_inputs, name) for name in ("many_faces_16.jpg", "many_faces_64.jpg")]
    result = run_cli("plugin", "-i", *inputs, "-s", str(tmp_path) + os.sep, "-w", "--detector", "full",
                     manifest=contract_manifest)
    assert result.returncode == 0, result.stderr
    for path in inputs:
        record = read_json(tmp_path / (os.path.splitext(os.path.basename(path))[0] + "_res.json"))
        assert reported_faces(result.stderr, path) == len(record["faces"]) <= 64
    assert reported_faces(result.stderr, inputs[0]) >= 4  # most of the 16 are found at this size


# ---- single inputs that stop the run --------------------------------------------------------------------------------
def _not_a_video(folder):
    path = os.path.join(folder, "notes.avi")
    Path(path).write_text("not a video\n")
    return path


def _random_bytes_video(folder):
    path = os.path.join(folder, "noise.mp4")
    Path(path).write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return path


def _empty_folder(folder):
    path = os.path.join(folder, "empty_album")
    os.makedirs(path)
    Path(path, "readme.txt").write_text("no images here")
    return path


SINGLE_CASES = [  # (id, flag, make input in folder -> path, exit code, reason)
    ("missing image", "-i", lambda f: os.path.join(f, "nope.jpg"), 1, "no such file or folder"),
    ("folder without images", "-i", _empty_folder, 2, "folder contains no images"),
    ("missing video", "-v", lambda f: os.path.join(f, "nope.mp4"), 1, "no such video file"),
    ("text file as video", "-v", _not_a_video, 1, "cannot be opened as a video"),
    ("random bytes as video", "-v", _random_bytes_video, 1, "cannot be opened as a video"),
    ("webcam that does not exist", "-v", lambda f: "97", 1, "cannot be opened (no such camera"),
]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("flag,make,exit_code,reason", [c[1:] for c in SINGLE_CASES],
                         ids=[c[0] for c in SINGLE_CASES])
def test_single_bad_input_is_one_clear_line(tmp_path, contract_manifest, script, flag, make, exit_code, reason):
    target = make(str(tmp_path))
    out = tmp_path / "out"
    result = run_cli(script, flag, target, "-s", str(out / "result.mp4" if flag == "-v" else out / "r.png"), "-w",
                     manifest=contract_manifest)
    assert result.returncode == exit_code
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and target in errors[0] and reason in errors[0], result.stderr
    assert_clean_console(result.stderr)
    assert not out.exists() or not os.listdir(out)


def test_unreadable_file_is_reported_and_skipped(tmp_path, astronaut_bgr, contract_manifest, monkeypatch, capsys):
    """Permission denied. Root reads anything, so there the denial is simulated where the file is opened."""
    good, locked = str(tmp_path / "good.png"), str(tmp_path / "locked.png")
    write_image(good, astronaut_bgr)
    write_image(locked, astronaut_bgr)
    os.chmod(locked, 0)
    if os.geteuid() == 0:
        def open_denying_locked(path, *args, **kwargs):
            if path == locked:
                raise PermissionError(13, "Permission denied", path)
            return builtins.open(path, *args, **kwargs)

        monkeypatch.setattr(image_utils, "open", open_denying_locked, raising=False)
    exit_code = run_in_process("plugin", ["-i", good, locked, "-s", str(tmp_path / "out") + os.sep, "--onnx",
                                          "--manifest", contract_manifest])
    stderr = capsys.readouterr().err
    assert exit_code == 1
    assert f"ERROR {locked}: cannot be read (Permission denied)" in stderr
    assert "1 image(s) succeeded, 1 failed" in stderr
    assert os.listdir(tmp_path / "out") == ["good_res.png"]


def run_in_process(script, argv):
    """The command's main in this process (logging restored afterwards)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"cli_{script}", SCRIPTS[script])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        if hasattr(module, "main"):
            return module.main(argv)
        from face_recognition.ax_facial_features.app import run

        return run(module.parse_args(argv))
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)


# ---- huge images: bounded memory ------------------------------------------------------------------------------------
RSS_WRAPPER = """
import resource, runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def test_8000x6000_photo_is_processed_within_bounded_memory(tmp_path, astronaut_bgr, contract_manifest):
    canvas = np.full((6000, 8000, 3), 120, np.uint8)
    canvas[:, 1000:7000] = cv2.resize(astronaut_bgr, (6000, 6000), interpolation=cv2.INTER_LINEAR)
    photo = str(tmp_path / "huge.jpg")
    cv2.imwrite(photo, canvas, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del canvas
    out = tmp_path / "huge_res.jpg"
    result = subprocess.run([sys.executable, "-c", RSS_WRAPPER, SCRIPTS["plugin"], "-i", photo, "-s", str(out), "-w",
                             "--onnx", "--manifest", contract_manifest], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert reported_faces(result.stderr, photo) == 1 and cv2.imread(str(out)).shape == (6000, 8000, 3)
    peak_mb = int(re.search(r"peak_rss_kb (\d+)", result.stderr).group(1)) / 1024
    # The decoded photo is 137 MB; runtime and models about 200 MB. Measured: about 430 MB.
    assert peak_mb < 1024, f"peak RSS {peak_mb:.0f} MB"


# ---- outputs: complete or absent --------------------------------------------------------------------------------
def test_failed_run_keeps_the_earlier_good_output(tmp_path, astronaut_bgr):
    good, bad = str(tmp_path / "good.png"), str(tmp_path / "bad.png")
    write_image(good, astronaut_bgr)
    Path(bad).write_bytes(_truncated(astronaut_bgr, ".png"))
    out = tmp_path / "result.png"
    assert run_cli("facemesh", "-i", good, "-s", str(out), "-w").returncode == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("result.png", "result.json")}
    result = run_cli("facemesh", "-i", bad, "-s", str(out), "-w")
    assert result.returncode == 1 and "truncated" in result.stderr
    assert {name: (tmp_path / name).read_bytes() for name in before} == before and not leftovers(str(tmp_path))


def test_output_that_cannot_be_written_is_one_line(tmp_path, astronaut_bgr):
    source = str(tmp_path / "face.png")
    write_image(source, astronaut_bgr)
    (tmp_path / "a_file").write_text("a file where the output folder should be")
    target = str(tmp_path / "a_file" / "out.png")
    result = run_cli("facemesh", "-i", source, "-s", target)
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("ERROR")] == \
        [f"ERROR {source}: {target}: cannot be written ({tmp_path / 'a_file'} is a file, not a folder)"]
    assert_clean_console(result.stderr)


def _write_video(path, frames, size=128, source=None):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (size, size))
    image = cv2.resize(source, (size, size)) if source is not None else np.zeros((size, size, 3), np.uint8)
    for index in range(frames):
        writer.write(np.roll(image, index % 16, axis=1))
    writer.release()
    return path


def count_frames(path):
    capture = cv2.VideoCapture(path)
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_ctrl_c_during_video_finalises_what_was_written(tmp_path, astronaut_bgr, contract_manifest, script):
    video = _write_video(str(tmp_path / "long.avi"), 1500, source=astronaut_bgr)
    out = tmp_path / "annotated.mp4"
    process = subprocess.Popen([sys.executable, SCRIPTS[script], "-v", video, "-s", str(out), "-w",
                                *cli_args(script, contract_manifest)], stderr=subprocess.PIPE, text=True,
                               env=without_display())
    jsonl_tmp = tmp_path / "annotated.tmp.jsonl"
    deadline = time.monotonic() + 120
    while not (tmp_path / "annotated.tmp.mp4").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few more frames
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 130, stderr
    assert "interrupted after" in stderr and "Traceback" not in stderr
    frames = count_frames(str(out))
    records = read_jsonl(tmp_path / "annotated.jsonl")
    assert 0 < frames < 1500 and len(records) == frames
    assert [r["frame"] for r in records] == list(range(frames))
    assert not jsonl_tmp.exists() and not leftovers(str(tmp_path))


def _fake_frame_job(fail_at, error):
    def analyse_frame(frame, index):
        if index == fail_at:
            raise error
        return None, {"frame": index}

    return analyse_frame


def test_interrupt_in_process_keeps_the_frames_done(tmp_path):
    video = _write_video(str(tmp_path / "clip.avi"), 10)
    out = str(tmp_path / "out.mp4")
    exit_code = run_video(video, _fake_frame_job(4, KeyboardInterrupt()), lambda frame, result, mirror: frame,
                          savepath=out, jsonl_path=str(tmp_path / "out.jsonl"), quiet=True)
    assert exit_code == 130 and count_frames(out) == 4
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 4 and not leftovers(str(tmp_path))


def test_unexpected_failure_mid_video_keeps_the_earlier_output(tmp_path):
    video = _write_video(str(tmp_path / "clip.avi"), 10)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    out.write_bytes(b"an earlier, good result")
    jsonl.write_text("{}\n")
    with pytest.raises(RuntimeError):
        run_video(video, _fake_frame_job(5, RuntimeError("boom")), lambda frame, result, mirror: frame,
                  savepath=str(out), jsonl_path=str(jsonl), quiet=True)
    assert out.read_bytes() == b"an earlier, good result" and jsonl.read_text() == "{}\n"
    assert not leftovers(str(tmp_path))


def test_a_frame_that_fails_is_reported_and_the_video_goes_on(tmp_path, caplog):
    video = _write_video(str(tmp_path / "clip.avi"), 6)
    out = str(tmp_path / "out.mp4")
    with caplog.at_level(logging.INFO):
        exit_code = run_video(video, _fake_frame_job(2, InputError("degenerate crop")),
                              lambda frame, result, mirror: frame, savepath=out,
                              jsonl_path=str(tmp_path / "out.jsonl"), quiet=True)
    assert exit_code == 1 and count_frames(out) == 6
    assert [record["frame"] for record in read_jsonl(tmp_path / "out.jsonl")] == [0, 1, 3, 4, 5]
    assert f"{video} frame 2: degenerate crop" in caplog.text and "5 frame(s) processed, 1 failed" in caplog.text


def test_unexpected_error_on_one_image_is_reported_and_the_batch_goes_on(caplog):
    from util.runner import InputItem

    def process_one(item, image):
        if item.name == "image 1":
            raise ValueError("a bug")

    items = [InputItem(f"image {i}", image=np.zeros((8, 8, 3), np.uint8)) for i in range(3)]
    with caplog.at_level(logging.INFO):
        assert run_image_batch(items, process_one, quiet=True) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["image 1: internal error (ValueError: a bug); run with --debug for the traceback"]
    assert "2 image(s) succeeded, 1 failed" in caplog.text


def test_interrupted_batch_stops_with_a_summary(caplog):
    done = []

    def process_one(item, image):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(item.name)

    from util.runner import InputItem

    items = [InputItem(f"image {i}", image=np.zeros((8, 8, 3), np.uint8)) for i in range(5)]
    with caplog.at_level(logging.INFO):
        assert run_image_batch(items, process_one, quiet=True) == 130
    assert done == ["image 0", "image 1"]
    assert "interrupted: 2 image(s) succeeded, 0 failed, 3 not processed" in caplog.text


# ---- models ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def damaged_manifest(tmp_path, contract_manifest):
    """A copy of the contract models whose face model is cut in half; returns (manifest path, model path)."""
    folder = tmp_path / "models"
    shutil.copytree(os.path.dirname(contract_manifest), folder)
    model = folder / "test_face.onnx"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    return str(folder / "manifest.json"), str(model)


def _without_sha256(manifest_path):
    manifest = read_json(manifest_path)
    for entry in manifest["sets"]["own"]["models"]:
        entry["sha256"] = None
    Path(manifest_path).write_text(json.dumps(manifest))
    return manifest_path


@pytest.mark.parametrize("known_sha256", [True, False], ids=["sha256 mismatch", "not a valid ONNX"])
def test_damaged_classifier_is_refused_before_use(tmp_path, astronaut_bgr, damaged_manifest, known_sha256):
    manifest, model = damaged_manifest
    if not known_sha256:
        _without_sha256(manifest)
    source = str(tmp_path / "face.png")
    write_image(source, astronaut_bgr)
    result = run_cli("plugin", "-i", source, "-s", str(tmp_path / "out.png"), manifest=manifest)
    assert result.returncode == 2
    expected = "corrupted or not the expected version" if known_sha256 else "truncated or not a valid ONNX model"
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and expected in errors[0] and model in errors[0] and "delete it" in errors[0]
    assert_clean_console(result.stderr)
    assert not (tmp_path / "out.png").exists()


def test_invalid_converted_face_mesh_file_is_rebuilt(tmp_path, astronaut_bgr):
    models = tmp_path / "models"
    models.mkdir()
    for model in (model_files.DETECTOR_MODELS["short"], model_files.LANDMARK_MODEL):
        shutil.copy(model_files.model_path(model), models)
    landmark = models / model_files.LANDMARK_MODEL.onnx_name
    landmark.write_bytes(landmark.read_bytes()[:100_000])
    source = str(tmp_path / "face.png")
    write_image(source, astronaut_bgr)
    result = run_cli("facemesh", "-i", source, "-s", str(tmp_path / "out.png"), "--model_dir", str(models))
    assert result.returncode == 0, result.stderr
    assert "not a valid face_landmark.onnx model" in result.stderr and reported_faces(result.stderr, source) == 1
    assert model_files.is_valid_model(str(landmark), model_files.LANDMARK_MODEL) and not leftovers(str(models))


def test_face_mesh_file_that_cannot_be_rebuilt_is_a_model_error(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(ModelError, match="face_detection_short_range.onnx: cannot be written.*--model_dir"):
        model_files.ensure_models(str(tmp_path / "a_file" / "models"))


class _BrokenResponse(io.BytesIO):
    """An HTTP response that announces ``announced`` bytes and then breaks off (or ends early)."""

    def __init__(self, body, announced, error=None):
        super().__init__(body)
        self.headers = {"Content-Length": str(announced)}
        self._error = error

    def read(self, size=-1):
        chunk = super().read(size)
        if not chunk and self._error:
            raise self._error
        return chunk


@pytest.mark.parametrize("error", [None, ConnectionResetError(104, "Connection reset by peer"),
                                   http.client.IncompleteRead(b"")],
                         ids=["ends early", "connection reset", "incomplete read"])
def test_download_that_breaks_off_leaves_no_file(tmp_path, monkeypatch, error):
    monkeypatch.setattr(model_utils.urllib.request, "urlopen",
                        lambda url, timeout: _BrokenResponse(b"x" * 5000, 20000, error))
    target = tmp_path / "model.onnx"
    with pytest.raises(ModelError, match="cannot download https://example.invalid/model.onnx.*nothing was saved"):
        model_utils.download("https://example.invalid/model.onnx", str(target), show_progress=False)
    assert os.listdir(tmp_path) == []


def test_download_that_fails_verification_leaves_no_file(tmp_path, monkeypatch, contract_manifest):
    body = Path(os.path.dirname(contract_manifest), "test_face.onnx").read_bytes()
    monkeypatch.setattr(model_utils.urllib.request, "urlopen",
                        lambda url, timeout: _BrokenResponse(body, len(body)))
    with pytest.raises(ModelError, match=r"unusable \(does not match its expected sha256\); nothing was saved"):
        model_utils.download("https://example.invalid/m.onnx", str(tmp_path / "m.onnx"), sha256="0" * 64,
                             show_progress=False)
    assert os.listdir(tmp_path) == []
    model_utils.download("https://example.invalid/m.onnx", str(tmp_path / "m.onnx"),
                         sha256=hashlib.sha256(body).hexdigest(), show_progress=False)
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_verify_file_checks_onnx_structure_only_without_a_sha256(tmp_path, contract_manifest):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07garbage that is not a model")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        model_utils.verify_file(str(model))
    model_utils.verify_file(str(model), sha256_of_file(str(model)))  # the manifest's sha256 is the authority
    obfuscated = tmp_path / "ax_eyelids.opt.obf.onnx"  # ailia-only format: not ONNX-checkable
    obfuscated.write_bytes(b"obfuscated")
    model_utils.verify_file(str(obfuscated))


# ---- progress -------------------------------------------------------------------------------------------------------
def run_in_terminal(args):
    """Run a command with stderr on a pseudo-terminal (where the progress bar shows); returns (exit code, output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=slave, env=without_display())
    os.close(slave)
    output = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(), output.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory, astronaut_bgr):
    folder = tmp_path_factory.mktemp("three")
    for index in range(3):
        write_image(str(folder / f"{index}.png"), cv2.resize(astronaut_bgr, (128, 128)))
    return str(folder)


@pytest.mark.parametrize("quiet", [False, True], ids=["terminal", "quiet"])
def test_progress_bar_over_a_folder(small_folder, tmp_path, quiet):
    exit_code, output = run_in_terminal([sys.executable, SCRIPTS["facemesh"], "-i", small_folder, "-s",
                                         str(tmp_path) + os.sep, "--onnx", *(["-q"] if quiet else [])])
    assert exit_code == 0, output
    if quiet:
        assert "img/s" not in output and "/3" not in output
    else:
        assert re.search(r"\b[0-3]/3\b", output) and "img/s" in output, output


def test_progress_bar_over_a_video(tmp_path, astronaut_bgr):
    video = _write_video(str(tmp_path / "clip.avi"), 12, source=astronaut_bgr)
    exit_code, output = run_in_terminal([sys.executable, SCRIPTS["facemesh"], "-v", video, "-s",
                                         str(tmp_path / "out.mp4"), "--onnx"])
    assert exit_code == 0, output
    assert re.search(r"\b\d+/12\b", output) and "frame/s" in output, output


# ---- soak, tiny -----------------------------------------------------------------------------------------------------
def test_soak_script_runs_and_reports_memory(tmp_path, contract_manifest):
    from scripts import soak

    out = tmp_path / "soak.json"
    exit_code = soak.main(["--frames", "40", "--checkpoint", "20", "--scene_frames", "20", "--size", "160x120",
                           "--manifest", contract_manifest, "--workdir", str(tmp_path / "work"), "--out", str(out),
                           "--tolerance", "1.0"])
    report = json.loads(out.read_text())
    assert exit_code == 0 and report["video_exit_code"] == 0 and report["frames_with_face"] > 0
    assert set(report["checkpoints"]) == {"20", "40"}
    assert report["smallest_face_height_fraction"] >= 0.25
    assert count_frames(str(tmp_path / "work" / "soak_annotated.mp4")) == 40
