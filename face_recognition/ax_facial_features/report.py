"""Results as JSON records and as the original's console printout."""
import logging

from face_recognition.ax_facial_features.constants import CLASS_NAMES, MULTI_LABEL_TASKS, PER_EYE_ORDER

logger = logging.getLogger(__name__)

SCHEMA = "ax_facial_features/1"
CORNER_NAMES = ("top_left", "top_right", "bottom_left", "bottom_right")


def face_record(face, tasks):
    record = {"detection_score": round(float(face.mesh.detection_score), 6),
              "roi": [[round(float(x), 2), round(float(y), 2)] for x, y in face.roi]}
    if face.mesh.track_id is not None:
        record["track_id"] = face.mesh.track_id
    for task in tasks:
        record[task] = result_entry(face.results[task])
    if face.per_eye is not None:
        # Sorted keys ("left", "right"): the subject's own eyes, whatever side of the image they are on.
        record["eyelids_per_eye"] = {eye: result_entry(face.per_eye[eye]) for eye in sorted(PER_EYE_ORDER)}
        record["eyelids_type"] = face.eyelids_type
    return record


def result_entry(result):
    """One task's (or one eye's) JSON entry: probs, label(s), status, the reason when unclear, the unclear score
    when the model gives one."""
    entry = {"probs": {name: round(p, 6) for name, p in result.probs.items()}}
    if result.task in MULTI_LABEL_TASKS:
        entry["labels"] = list(result.labels)
    else:
        entry["label"] = result.label
    entry["status"] = result.status
    if result.reason is not None:
        entry["reason"] = result.reason
    if result.unclear_score is not None:
        entry["unclear_score"] = round(result.unclear_score, 6)
    return entry


def image_record(image_name, image_shape, faces, tasks, model_info):
    """The ax_facial_features/1 JSON record of one image (or one video frame, see frame_record)."""
    return {"schema": SCHEMA, "image": image_name, "width": int(image_shape[1]), "height": int(image_shape[0]),
            "models": {task: {"file": info["file"], "sha256": info["sha256"]} for task, info in model_info.items()},
            "faces": [face_record(face, tasks) for face in faces]}


def frame_record(frame_index, faces, tasks):
    return {"frame": frame_index, "faces": [face_record(face, tasks) for face in faces]}


def log_results(faces, tasks, log=logger):
    """Print the results as the original script did: ROI corners, then each task's classes and probabilities."""
    if not faces:
        log.info("no face")
    titles = {"eyelids": "Eyelids", "eyelashes": "Eyelashes", "facial_hair": "Facial hair"}
    for face in faces:
        log.info("ROI")
        log.info("=" * 62)
        for name, (x, y) in zip(CORNER_NAMES, face.roi):
            log.info(f"{name} = ({x:.2f}, {y:.2f}) (x, y)")
        log.info("")
        for task in tasks:
            log.info(titles[task])
            _log_task(face.results[task], log)
        if face.per_eye is not None:
            for eye in PER_EYE_ORDER:
                log.info(f"Eyelids, subject's {eye} eye")
                _log_task(face.per_eye[eye], log)
            log.info(f"Eyelids type (per eye) = {face.eyelids_type}")
            log.info("")


def _log_task(result, log):
    names = CLASS_NAMES[result.task]
    log.info("=" * 62)
    status = result.status + (f" ({result.reason})" if result.reason else "")
    score = "" if result.unclear_score is None else f", unclear score {result.unclear_score:.3f}"
    log.info(f"status = {status}{score}")
    if result.task in MULTI_LABEL_TASKS:
        log.info(f"label_count = {len(names)}")
        for index, name in enumerate(names):
            marker = "+" if name in result.labels else "-"
            log.info(f"{marker} category = {index} [{name}]")
            log.info(f"  prob = {result.probs[name]:.6f}")
    else:
        log.info(f"class_count = {len(names)}")
        ranked = sorted(range(len(names)), key=lambda i: -result.probs[names[i]])
        for rank, index in enumerate(ranked):
            log.info(f"+ idx = {rank}")
            log.info(f"  category = {index} [{names[index]}]")
            log.info(f"  prob = {result.probs[names[index]]:.6f}")
    log.info("")
