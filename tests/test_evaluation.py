"""scripts/evaluate.py: the whole plugin over a labelled folder, metrics with intervals, groups, missed faces."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, write_image

pytest.importorskip("scipy")


@pytest.fixture
def labelled_folder(tmp_path, astronaut_bgr):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        write_image(str(images / f"a{i}.jpg"), np.roll(astronaut_bgr, 10 * i, axis=1))
    write_image(str(images / "blank.jpg"), np.full((200, 200, 3), 128, np.uint8))
    (tmp_path / "labels_eyes.csv").write_text(
        "image,eyelid_img_left,eyelid_img_right,eyelashes,race,gender\n"
        "a0.jpg,double,double,dense,White,Female\n"
        "a1.jpg,single,single,moderate,White,Female\n"
        "a2.jpg,double,single,sparse,Black,Male\n"
        "a3.jpg,unclear,double,unclear,Black,Male\n"
        "blank.jpg,double,double,moderate,White,Male\n")
    (tmp_path / "labels_facial_hair.csv").write_text(
        "image,moustache,beard,mouth_side_hair,status,race,gender\n"
        "a0.jpg,0,0,0,ok,White,Female\n"
        "a1.jpg,1,1,0,ok,White,Female\n"
        "a2.jpg,1,0,0,ok,Black,Male\n"
        "a3.jpg,0,1,1,disputed,Black,Male\n"
        "blank.jpg,0,0,0,ok,White,Male\n")
    return tmp_path


def test_evaluate_reports_metrics_groups_and_missed_faces(labelled_folder, contract_manifest):
    out = labelled_folder / "report.json"
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "evaluate.py"), "--dataset",
                             str(labelled_folder), "--out", str(out), "--manifest", contract_manifest,
                             "--bootstrap", "50", "--groups", "race", "gender"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["images"] == 5 and report["images_without_face"] == 1
    eyelids = report["tasks"]["eyelids"]
    # Face-level eyelid labels: a0 double, a1 single, blank double (no face); a2 hybrid and a3 unclear excluded.
    assert (eyelids["labelled"], eyelids["scored"], eyelids["missed_images"]) == (3, 2, ["blank.jpg"])
    assert eyelids["confusion"]["rows_true_cols_predicted"] == ["double", "single"]
    assert np.sum(eyelids["confusion"]["matrix"]) == 2
    low, high = eyelids["overall"]["balanced_accuracy_ci95"]
    assert 0 <= low <= eyelids["overall"]["balanced_accuracy"] <= high <= 1
    hair = report["tasks"]["facial_hair"]
    assert (hair["labelled"], hair["scored"]) == (4, 3)  # the disputed row is not scored
    assert set(hair["groups"]["race"]) == {"White", "Black"}
    assert set(hair["confusion"]) == {"moustache", "beard", "mouth_side_hair"}
    assert report["hybrid_eyelids"]["faces"] == 1
    lashes = report["tasks"]["eyelashes"]
    assert lashes["groups"]["gender"]["Male"]["classes_present"] == ["sparse"]  # groups lacking classes handled


def test_evaluate_per_eye_and_clear_only_figures(labelled_folder, tmp_path):
    from tests.contract_models import build_contract_models

    manifest = build_contract_models(str(tmp_path / "models"), unclear=True, per_eye=True)
    out = labelled_folder / "report.json"
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "scripts", "evaluate.py"), "--dataset",
                             str(labelled_folder), "--out", str(out), "--manifest", manifest, "--bootstrap", "50",
                             "--groups", "race", "--per-eye"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    for task, entry in report["tasks"].items():
        unclear = entry["unclear"]
        assert unclear["clear"] + unclear["unclear"] == entry["scored"]
        assert unclear["coverage"] == pytest.approx(unclear["clear"] / entry["scored"])
    per_eye = report["per_eye"]
    # Eyes labelled double/single on detected faces: a0 2, a1 2, a2 2 (one of each), a3 1 (other eye unclear).
    assert per_eye["eyes"]["scored"] == 7 and np.sum(per_eye["eyes"]["confusion"]["matrix"]) == 7
    # Face types: a0 double, a1 single, a2 hybrid (a3 has an unclear eye; blank.jpg has no face).
    face_type = per_eye["face_type"]["all"]
    assert face_type["count"] == 3 and face_type["confusion"]["rows_true_cols_predicted"] == ["double", "single",
                                                                                              "hybrid"]
    assert [sum(row) for row in face_type["confusion"]["matrix"]] == [1, 1, 1]
    agreement = per_eye["agreement_with_face_model"]
    assert 0 <= agreement["faces"] <= 4
    if agreement["faces"] >= 2:
        assert 0 <= agreement["agreement_ci95"][0] <= agreement["agreement"] <= agreement["agreement_ci95"][1] <= 1
    assert "per-eye eyelids (each eye)" in result.stderr


def test_celeba_mapping_and_metrics_on_constructed_answers():
    from scripts import evaluate_celeba_facial_hair as celeba

    truth = {"beard": np.array([True, True, False, False, True]),
             "moustache": np.array([False, True, False, False, False])}
    # face 4 missed by the detector; face 2 called unclear
    labels = [{"beard"}, {"beard", "moustache"}, {"moustache"}, set(), None]
    statuses = ["ok", "unclear", "ok", "ok", None]
    report = celeba.evaluate(labels, statuses, truth, n_resamples=20)
    assert report["faces"] == 4
    assert report["beard"]["recall"] == 1.0 and report["beard"]["precision"] == 1.0
    assert report["moustache"]["precision"] == 0.5  # one right of two predicted
    assert report["any_facial_hair"]["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    clear = celeba.evaluate(labels, statuses, truth, n_resamples=20, clear_only=True)
    assert clear["faces"] == 3 and clear["moustache"]["positives"] == 0
