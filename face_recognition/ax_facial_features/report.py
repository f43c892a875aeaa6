"""Results as JSON records and as the original's console printout."""
import logging

from face_recognition.ax_facial_features.constants import CLASS_NAMES, MULTI_LABEL_TASKS

logger = logging.getLogger(__name__)

SCHEMA = "ax_facial_features/1"
CORNER_NAMES = ("top_left", "top_right", "bottom_left", "bottom_right")


def face_record(face, tasks):
    record = {"detection_score": round(float(face.mesh.detection_score), 6),
              "roi": [[round(float(x), 2), round(float(y), 2)] for x, y in face.roi]}
    if face.mesh.track_id is not None:
        record["track_id"] = face.mesh.track_id
    for task in tasks:
        result = face.results[task]
        entry = {"probs": {name: round(p, 6) for name, p in result.probs.items()}}
        if task in MULTI_LABEL_TASKS:
            entry["labels"] = list(result.labels)
        else:
            entry["label"] = result.label
        record[task] = entry
    return record


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


def _log_task(result, log):
    names = CLASS_NAMES[result.task]
    log.info("=" * 62)
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
