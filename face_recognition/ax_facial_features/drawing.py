"""Drawing of the results: face ROI and one labelled score box per task (no inference here)."""
import cv2
import numpy as np

from face_detection.facemesh.drawing import draw_roi
from face_recognition.ax_facial_features.constants import CLASS_NAMES, MULTI_LABEL_TASKS

# One colour per task (BGR), light enough for black text.
TASK_COLOURS = {"eyelids": (255, 200, 120), "eyelashes": (140, 230, 140), "facial_hair": (120, 200, 255)}
ROI_TOP_COLOUR = (0, 255, 0)   # the top edge in green shows the face orientation
ROI_COLOUR = (0, 0, 0)


def task_text(result):
    names = CLASS_NAMES[result.task]
    if result.task in MULTI_LABEL_TASKS:
        parts = [f"{name} {result.probs[name] * 100:.0f}%" + ("*" if name in result.labels else "")
                 for name in names]
    else:
        parts = [f"{name} {result.probs[name] * 100:.0f}%"
                 for name in sorted(names, key=lambda n: -result.probs[n])]
    return f"{result.task}: " + ", ".join(parts)


def draw_results(image_bgr, faces, tasks, mirror=False):
    """A copy of the image with each face's ROI and score boxes. ``mirror`` flips it first (webcam view)."""
    height, width = image_bgr.shape[:2]
    canvas = np.ascontiguousarray(image_bgr[:, ::-1]) if mirror else image_bgr.copy()
    font_scale = max(0.35, min(width, height) / 1000)
    thickness = max(1, int(round(min(width, height) / 400)))
    for face in faces:
        corners = np.array(face.roi, dtype=np.float64)
        if mirror:
            corners[:, 0] = width - 1 - corners[:, 0]
            corners = corners[[1, 0, 3, 2]]  # left and right swap in a mirror
        draw_roi(canvas, corners, thickness, ROI_COLOUR, ROI_TOP_COLOUR)
        x = int(np.clip(corners[:, 0].min(), 2, width - 2))
        y = int(np.clip(corners[:, 1].min(), 2, height - 2))
        for task in tasks:
            y = _draw_label_box(canvas, task_text(face.results[task]), x, y, TASK_COLOURS[task], font_scale)
    return canvas


def _draw_label_box(canvas, text, x, y, colour, font_scale):
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, 1)
    box_w, box_h = text_w + 6, text_h + baseline + 6
    x = min(x, max(0, canvas.shape[1] - box_w))
    cv2.rectangle(canvas, (x, y), (x + box_w, y + box_h), colour, thickness=-1)
    cv2.putText(canvas, text, (x + 3, y + text_h + 3), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return y + box_h + 2
