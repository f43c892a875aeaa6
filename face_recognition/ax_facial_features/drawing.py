"""Drawing of the results: face ROI, one labelled score box per task and, with per-eye eyelids, a small box beside
each eye, on its outer side (no inference here). Unclear answers are drawn greyed out."""
import cv2
import numpy as np

from face_detection.facemesh.drawing import draw_roi
from face_recognition.ax_facial_features.constants import (
    CLASS_NAMES, EYE_CROP_KINDS, EYELIDS, MULTI_LABEL_TASKS, PER_EYE_ORDER, STATUS_UNCLEAR)

# One colour per task (BGR), light enough for black text; unclear answers in grey whatever the task.
TASK_COLOURS = {"eyelids": (255, 200, 120), "eyelashes": (140, 230, 140), "facial_hair": (120, 200, 255)}
UNCLEAR_COLOUR = (170, 170, 170)
UNCLEAR_SUFFIX = " (unclear)"
ROI_TOP_COLOUR = (0, 255, 0)   # the top edge in green shows the face orientation
ROI_COLOUR = (0, 0, 0)
EYE_INITIALS = {"right": "R", "left": "L"}  # the subject's own eyes (on the image's left and right respectively)


def task_text(result):
    names = CLASS_NAMES[result.task]
    if result.task in MULTI_LABEL_TASKS:
        parts = [f"{name} {result.probs[name] * 100:.0f}%" + ("*" if name in result.labels else "")
                 for name in names]
    else:
        parts = [f"{name} {result.probs[name] * 100:.0f}%"
                 for name in sorted(names, key=lambda n: -result.probs[n])]
    return f"{result.task}: " + ", ".join(parts) + _unclear_suffix(result)


def eye_text(eye, result):
    """Short per-eye label, e.g. "R double 93%"."""
    return f"{EYE_INITIALS[eye]} {result.label} {result.probs[result.label] * 100:.0f}%" + _unclear_suffix(result)


def _unclear_suffix(result):
    return UNCLEAR_SUFFIX if result.status == STATUS_UNCLEAR else ""


def result_colour(result, colour):
    return UNCLEAR_COLOUR if result.status == STATUS_UNCLEAR else colour


def draw_results(image_bgr, faces, tasks, mirror=False):
    """A copy of the image with each face's ROI and score boxes. ``mirror`` flips it first (webcam view)."""
    height, width = image_bgr.shape[:2]
    canvas = np.ascontiguousarray(image_bgr[:, ::-1]) if mirror else image_bgr.copy()
    font_scale = max(0.35, min(width, height) / 1000)
    thickness = max(1, int(round(min(width, height) / 400)))

    def on_canvas(corners):
        corners = np.array(corners, dtype=np.float64)
        if mirror:
            corners[:, 0] = width - 1 - corners[:, 0]
            corners = corners[[1, 0, 3, 2]]  # left and right swap in a mirror
        return corners

    for face in faces:
        corners = on_canvas(face.roi)
        draw_roi(canvas, corners, thickness, ROI_COLOUR, ROI_TOP_COLOUR)
        x = int(np.clip(corners[:, 0].min(), 2, width - 2))
        y = int(np.clip(corners[:, 1].min(), 2, height - 2))
        for task in tasks:
            result = face.results[task]
            y = _draw_label_box(canvas, task_text(result), x, y, result_colour(result, TASK_COLOURS[task]),
                                font_scale)
        if face.per_eye is not None:
            y = _draw_eyelids_type(canvas, face.eyelids_type, x, y, font_scale)
            face_centre_x = corners[:, 0].mean()
            for eye in PER_EYE_ORDER:
                _draw_eye_box(canvas, eye, face.per_eye[eye], on_canvas(face.corners(EYE_CROP_KINDS[eye])),
                              face_centre_x, font_scale)
    return canvas


def _draw_eyelids_type(canvas, eyelids_type, x, y, font_scale):
    colour = UNCLEAR_COLOUR if eyelids_type == STATUS_UNCLEAR else TASK_COLOURS[EYELIDS]
    return _draw_label_box(canvas, f"eyelids type (per eye): {eyelids_type}", x, y, colour, font_scale)


def _draw_eye_box(canvas, eye, result, eye_corners, face_centre_x, font_scale):
    """A small box level with the eye, outside its crop (corners as drawn on the canvas) on the side away from the
    face's centre: the two eyes' boxes never cover each other, whatever the mirror."""
    outward_left = eye_corners[:, 0].mean() < face_centre_x
    x = eye_corners[:, 0].min() if outward_left else eye_corners[:, 0].max()
    y = eye_corners[:, 1].mean()
    _draw_label_box(canvas, eye_text(eye, result), int(x), int(y), result_colour(result, TASK_COLOURS[EYELIDS]),
                    font_scale * 0.8, align_right=outward_left, centre_vertically=True)


def _draw_label_box(canvas, text, x, y, colour, font_scale, align_right=False, centre_vertically=False):
    """A filled box with the text; (x, y) is its top-left corner (top-right with ``align_right``; the middle of its
    left or right side with ``centre_vertically``). Returns the y below it."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, 1)
    box_w, box_h = text_w + 6, text_h + baseline + 6
    x = x - box_w if align_right else x
    y = y - box_h // 2 if centre_vertically else y
    x = int(np.clip(x, 0, max(0, canvas.shape[1] - box_w)))
    y = int(np.clip(y, 0, max(0, canvas.shape[0] - box_h)))
    cv2.rectangle(canvas, (x, y), (x + box_w, y + box_h), colour, thickness=-1)
    cv2.putText(canvas, text, (x + 3, y + text_h + 3), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return y + box_h + 2
