"""Drawing of Face Mesh results on a copy of the image (no inference here)."""
import cv2
import numpy as np

POINT_COLOUR = (80, 220, 80)  # BGR
ROI_COLOUR = (255, 160, 0)
ROI_TOP_COLOUR = (0, 0, 255)  # the crop's top edge: shows the face orientation
TEXT_COLOUR = (255, 255, 255)


def _pixel(point):
    return tuple(int(round(v)) for v in point[:2])


def draw_roi(canvas, corners, thickness, colour=ROI_COLOUR, top_colour=ROI_TOP_COLOUR):
    """ROI outline from corners ordered top-left, top-right, bottom-left, bottom-right; the top edge in
    ``top_colour`` shows the face's orientation."""
    top_left, top_right, bottom_left, bottom_right = (_pixel(p) for p in corners)
    for a, b in ((top_left, bottom_left), (bottom_left, bottom_right), (bottom_right, top_right)):
        cv2.line(canvas, a, b, colour, thickness, cv2.LINE_AA)
    cv2.line(canvas, top_left, top_right, top_colour, thickness, cv2.LINE_AA)


def draw_landmarks(canvas, landmarks, radius):
    for point in landmarks:
        cv2.circle(canvas, _pixel(point), radius, POINT_COLOUR, -1, cv2.LINE_AA)


def _mirrored(points, width):
    flipped = np.array(points, dtype=np.float64)
    flipped[:, 0] = width - 1 - flipped[:, 0]
    return flipped


def draw_faces(image_bgr, faces, *, mirror=False, show_roi=True, show_scores=True):
    """A copy of ``image_bgr`` with each face's mesh points, ROI and scores; ``mirror`` flips it first (webcam)."""
    width = image_bgr.shape[1]
    canvas = np.ascontiguousarray(image_bgr[:, ::-1]) if mirror else image_bgr.copy()
    shorter_side = min(canvas.shape[:2])
    thickness = max(1, int(round(shorter_side / 400)))
    for face in faces:
        landmarks, roi = np.asarray(face.landmarks), np.asarray(face.roi, dtype=np.float64)
        if mirror:  # left and right corners swap in a mirror
            landmarks, roi = _mirrored(landmarks, width), _mirrored(roi, width)[[1, 0, 3, 2]]
        face_size = float(np.linalg.norm(roi[1] - roi[0]))
        draw_landmarks(canvas, landmarks, radius=max(1, int(round(face_size / 250))))
        if show_roi:
            draw_roi(canvas, roi, thickness)
        if show_scores:
            x, y = _pixel(roi.min(axis=0))
            text = f"det {face.detection_score:.2f} mesh {face.presence_score:.2f}"
            cv2.putText(canvas, text, (max(x, 0), max(y - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                        max(0.35, shorter_side / 1200), TEXT_COLOUR, 1, cv2.LINE_AA)
    return canvas
