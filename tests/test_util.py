"""util/: argument and save-path rules, image reading, atomic outputs, activations, backend facade."""
import logging
import os

import cv2
import numpy as np
import onnx
import onnx.helper as oh
import pytest

from util import backend as backend_module
from util.arg_utils import expand_inputs, get_base_parser, is_folder_path, plan_savepaths, update_parser
from util.errors import InputError, ModelError
from util.file_utils import atomic_output, sha256_of_file, write_json_atomic
from util.image_utils import imread, load_sample_portrait
from util.math_utils import sigmoid, softmax
from util.model_utils import download, verify_file


# ---- save paths -------------------------------------------------------------------------------------------------
def test_one_input_with_file_path_writes_that_file():
    assert plan_savepaths("out/result.jpg", ["a/x.png"]) == ["out/result.jpg"]


def test_several_inputs_never_share_one_output(tmp_path):
    paths = plan_savepaths(str(tmp_path / "result.png"), ["a/x.jpg", "b/x.jpg", "c/y.png"])
    assert paths == [str(tmp_path / "x_res.png"), str(tmp_path / "x_res_2.png"), str(tmp_path / "y_res.png")]


def test_folder_savepath_receives_stem_res_files():
    assert plan_savepaths("results/", ["a/x.jpg"]) == [os.path.join("results/", "x_res.png")]


def test_dot_slash_path_without_extension_is_a_folder():
    # Upstream treated any path containing '.' as a file, so './out' became a file named 'out'.
    assert is_folder_path("./out")
    assert plan_savepaths("./out", ["a/x.jpg"]) == [os.path.join("./out", "x_res.png")]
    assert not is_folder_path("./out.png")


def test_folder_input_expands_to_sorted_images(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert expand_inputs([str(tmp_path)]) == [str(tmp_path / "a.jpg"), str(tmp_path / "b.png")]


def test_folder_without_images_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no images"):
        expand_inputs([str(tmp_path)])


def test_empty_folder_beside_other_inputs_stays_as_a_failing_item(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "._a.jpg").write_bytes(b"macOS resource fork")  # hidden: not an image
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert expand_inputs([str(empty), str(tmp_path)]) == [str(empty), str(tmp_path / "a.jpg")]
    with pytest.raises(InputError, match="folder contains no images"):
        imread(str(empty))


def test_parser_has_the_collection_flags(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    args = update_parser(get_base_parser("t"), ["-v", "0", "-s", "o.mp4", "-b", "-bc", "3", "-e", "1",
                                                "--onnx", "-w", "--debug", "--model_dir", "m"])
    assert (args.video, args.savepath, args.benchmark, args.benchmark_count, args.env_id) == ("0", "o.mp4", True, 3, 1)
    assert args.onnx and args.write_json and args.debug and args.model_dir == "m"
    assert args.show is False  # no display: never open a window


# ---- images -----------------------------------------------------------------------------------------------------
def _encode(path, image):
    ok, data = cv2.imencode(os.path.splitext(path)[1], image)
    assert ok
    data.tofile(path)


@pytest.mark.parametrize("image", [
    np.full((20, 30), 128, np.uint8),                       # grayscale
    np.full((20, 30, 3), 40000, np.uint16),                 # 16-bit
    np.dstack([np.full((20, 30, 3), 200, np.uint8), np.full((20, 30), 255, np.uint8)]),  # RGBA
], ids=["gray", "16bit", "rgba"])
def test_imread_always_returns_bgr_uint8(tmp_path, image):
    path = str(tmp_path / "pic.png")
    _encode(path, image)
    out = imread(path)
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)


def test_imread_palette_png(tmp_path):
    from PIL import Image

    path = tmp_path / "palette.png"
    Image.fromarray(np.arange(600, dtype=np.uint8).reshape(20, 30) % 7).convert("P").save(path)
    assert imread(str(path)).shape == (20, 30, 3)


def test_imread_unicode_path(tmp_path):
    path = str(tmp_path / "顔 写真.jpg")
    _encode(path, load_sample_portrait())
    assert imread(path).shape == (512, 512, 3)


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"hello, not an image", "not a readable image")])
def test_imread_rejects_bad_files(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError, match=reason):
        imread(str(path))


def test_imread_rejects_truncated_jpeg(tmp_path):
    good = str(tmp_path / "good.jpg")
    _encode(good, load_sample_portrait())
    data = open(good, "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        imread(str(tmp_path / "cut.jpg"))


def test_imread_missing_file():
    with pytest.raises(InputError, match="no such file"):
        imread("/nonexistent/x.png")


# ---- outputs ----------------------------------------------------------------------------------------------------
def test_atomic_output_keeps_previous_file_on_failure(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(str(path), {"good": 1})
    with pytest.raises(RuntimeError):
        with atomic_output(str(path)) as tmp:
            assert tmp.endswith(".tmp.json")  # the real extension is kept for writers that need it
            open(tmp, "w").write("{half")
            raise RuntimeError("interrupted")
    assert path.read_text().strip().startswith("{") and '"good": 1' in path.read_text()
    assert sorted(os.listdir(tmp_path)) == ["result.json"]


def test_activations():
    probabilities = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert np.allclose(probabilities, [[1, 0], [0.5, 0.5]])
    assert np.allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0, 0.5, 1])


# ---- model files ------------------------------------------------------------------------------------------------
def test_verify_file_detects_corruption(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"model")
    verify_file(str(path), sha256_of_file(str(path)))
    with pytest.raises(ModelError, match="sha256"):
        verify_file(str(path), "0" * 64)


def test_download_offline_names_url_and_local_path(tmp_path):
    target = tmp_path / "x.onnx"
    # An unroutable https address fails fast offline, as any download does here.
    with pytest.raises(ModelError) as error:
        download("https://127.0.0.1:9/models/x.onnx", str(target), show_progress=False)
    assert "https://127.0.0.1:9/models/x.onnx" in str(error.value) and str(target) in str(error.value)
    assert os.listdir(tmp_path) == []


def test_download_refuses_plain_http(tmp_path):
    with pytest.raises(ModelError, match="https"):
        download("http://example.com/x.onnx", str(tmp_path / "x.onnx"))


# ---- backend facade ---------------------------------------------------------------------------------------------
@pytest.fixture
def relu_model(tmp_path):
    graph = oh.make_graph([oh.make_node("Relu", ["x"], ["y"])], "g",
                          [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 3])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 3])])
    path = str(tmp_path / "relu.onnx")
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)]), path)
    return path


def test_force_onnx_uses_onnxruntime(relu_model):
    model = backend_module.create_backend(relu_model, force_onnx=True)
    assert model.name == "onnxruntime"
    assert np.array_equal(model.predict(np.array([[-1, 0, 2]]))[0], [[0, 0, 2]])
    assert np.array_equal(model.predict({"x": np.array([[3, -3, 1]])})[0], [[3, 0, 1]])


def test_fallback_when_ailia_cannot_create_a_network(relu_model, monkeypatch, caplog):
    def no_licence(*args, **kwargs):
        print("License file /root/.shalo/AILIA.lic is not found.")  # what ailia prints before failing
        raise TypeError("'<' not supported between instances of 'datetime.datetime' and 'NoneType'")

    monkeypatch.setattr(backend_module, "_ailia_failure", "")  # ailia importable
    monkeypatch.setattr(backend_module, "_fallback_warned", False)
    monkeypatch.setattr(backend_module, "AiliaBackend", no_licence)
    with caplog.at_level(logging.WARNING):
        first = backend_module.create_backend(relu_model)
        second = backend_module.create_backend(relu_model)
    assert first.name == second.name == "onnxruntime"
    warnings = [r for r in caplog.records if "onnxruntime" in r.getMessage()]
    assert len(warnings) == 1 and "TypeError" in warnings[0].getMessage()


def test_real_ailia_or_clean_fallback(relu_model, capfd):
    """Whatever this machine's ailia does (licence or not), the facade returns a working backend."""
    model = backend_module.create_backend(relu_model)
    assert model.name in ("ailia", "onnxruntime")
    assert np.array_equal(model.predict(np.array([[-1, 0, 2]], np.float32))[0], [[0, 0, 2]])
    assert "License file" not in capfd.readouterr().out  # ailia's own licence message is kept off the console


def test_missing_model_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        backend_module.create_backend(str(tmp_path / "none.onnx"))
