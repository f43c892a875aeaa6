"""The ax Facial Features pipeline as a library: BGR image -> one FaceFeatures record per face.

Stages: detect + mesh (the facemesh sibling) -> crops -> classify. Each face is one record that the stages fill in.

    from face_recognition.ax_facial_features.pipeline import FacialFeatures
    analyser = FacialFeatures()                 # all three tasks, the project's own models without ailia
    faces = analyser.process(image_bgr)         # image_bgr: HxWx3 uint8, OpenCV (BGR) channel order
    faces[0].results["eyelids"].label           # "double" or "single"
"""
from dataclasses import dataclass, field

import numpy as np

from face_detection.facemesh.pipeline import Face, FaceMesh, FaceTracker
from face_recognition.ax_facial_features.classifiers import Classifiers
from face_recognition.ax_facial_features.constants import (
    CLASS_NAMES, DEFAULT_FACIAL_HAIR_THRESHOLD, FACE, MULTI_LABEL_TASKS, TASK_CROP, TASKS)
from face_recognition.ax_facial_features.crops import make_crop, preprocess
from util.errors import InputError
from util.image_utils import check_bgr_image
from util.timing import StageTimer


@dataclass
class TaskResult:
    """Probabilities of one task for one face, with the chosen label(s)."""
    task: str
    probs: dict
    labels: list

    @property
    def label(self):
        """The single-label answer (eyelids, eyelashes); for multi-label tasks, the labels joined by '+'."""
        return "+".join(self.labels) if self.task in MULTI_LABEL_TASKS else self.labels[0]


@dataclass
class FaceFeatures:
    """One face: its mesh (detection, landmarks), its crops and its per-task results."""
    mesh: Face
    crops: dict = field(default_factory=dict)    # crop kind -> Crop
    results: dict = field(default_factory=dict)  # task -> TaskResult

    @property
    def roi(self):
        """Corners (4, 2) of the face crop: top-left, top-right, bottom-left, bottom-right (the original's ROI)."""
        return self.crops[FACE].corners


def make_task_result(task, probabilities, threshold=DEFAULT_FACIAL_HAIR_THRESHOLD):
    names = CLASS_NAMES[task]
    probs = {name: float(p) for name, p in zip(names, probabilities)}
    if task in MULTI_LABEL_TASKS:
        labels = [name for name in names if probs[name] >= threshold]
    else:
        labels = [names[int(np.argmax(probabilities))]]
    return TaskResult(task=task, probs=probs, labels=labels)


class FacialFeatures:
    """Finds every face, fits the mesh, cuts the crops and classifies the requested tasks."""

    def __init__(self, tasks=TASKS, *, detector="short", max_faces=None, env_id=-1, force_onnx=False,
                 model_dir=None, manifest_path=None, facial_hair_threshold=DEFAULT_FACIAL_HAIR_THRESHOLD):
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise InputError(f"unknown task(s): {', '.join(unknown)} (choose from {', '.join(TASKS)})")
        self.tasks = tuple(t for t in TASKS if t in tasks)
        self.facial_hair_threshold = facial_hair_threshold
        self.face_mesh = FaceMesh(detector=detector, max_faces=max_faces, env_id=env_id, force_onnx=force_onnx,
                                  model_dir=model_dir)
        self.classifiers = Classifiers(self.tasks, model_dir=model_dir, manifest_path=manifest_path,
                                       env_id=env_id, force_onnx=force_onnx)
        # The face crop is always cut: its corners are the reported ROI, as in the original.
        self.crop_kinds = sorted({FACE} | {TASK_CROP[t] for t in self.tasks})
        self.timer = StageTimer()


    def cut_crops(self, image_bgr, faces):
        for face in faces:
            for kind in self.crop_kinds:
                face.crops[kind] = make_crop(image_bgr, face.mesh.landmarks, kind)
        return faces

    def classify(self, faces):
        """Runs each model once on the batch of all faces' crops and fills ``results``."""
        if not faces:
            return faces
        batches = {kind: preprocess([face.crops[kind].image for face in faces])
                   for kind in self.classifiers.crop_kinds}
        self.timer.lap("preprocess")
        scores = self.classifiers.classify(batches, self.timer)
        for task in self.tasks:
            for face, probabilities in zip(faces, scores[task]):
                face.results[task] = make_task_result(task, probabilities, self.facial_hair_threshold)
        return faces

    def process(self, image_bgr):
        """BGR uint8 HxWx3 image -> list of FaceFeatures, highest detection score first."""
        return self.analyse(image_bgr, lambda image: self.face_mesh.process(image, self.timer))

    def analyse(self, image_bgr, find_faces):
        """The stages after ``find_faces(image) -> list[Face]`` (detection + mesh, or tracking in video).
        ``self.timer.last`` then holds each stage's milliseconds."""
        check_bgr_image(image_bgr)
        self.timer.start()
        faces = [FaceFeatures(mesh=face) for face in find_faces(image_bgr)]
        self.cut_crops(image_bgr, faces)
        self.timer.lap("crops")
        self.classify(faces)
        return faces

    def model_info(self):
        return self.classifiers.model_info()


class VideoAnalyser:
    """Video frames: faces tracked from the previous frame's landmarks (the detector runs only when needed, see
    FaceTracker), and optionally each track's probabilities smoothed over time.

    ``smoothing`` in [0, 1): weight of the previous smoothed probabilities in an exponential moving average
    (0 = off; 0.6 keeps about the last 2-3 frames' worth). Labels are chosen again from the smoothed values.
    """

    def __init__(self, analyser, redetect_interval=10, smoothing=0.0):
        if not 0.0 <= smoothing < 1.0:
            raise InputError(f"smoothing must be in [0, 1), got {smoothing}")
        self.analyser = analyser
        self.tracker = FaceTracker(analyser.face_mesh, redetect_interval=redetect_interval)
        self.smoothing = smoothing
        self._smoothed = {}  # (track id, task) -> probability vector

    def process(self, frame_bgr):
        faces = self.analyser.analyse(frame_bgr, self._track)
        if self.smoothing:
            self._smooth(faces)
        return faces

    def _track(self, frame_bgr):
        faces = self.tracker.process(frame_bgr)
        self.analyser.timer.lap("track+mesh")
        return faces

    def _smooth(self, faces):
        alive = {}
        for face in faces:
            for task, result in face.results.items():
                key = (face.mesh.track_id, task)
                current = np.array(list(result.probs.values()))
                previous = self._smoothed.get(key)
                smoothed = current if previous is None else self.smoothing * previous + (1 - self.smoothing) * current
                alive[key] = smoothed
                face.results[task] = make_task_result(task, smoothed, self.analyser.facial_hair_threshold)
        self._smoothed = alive  # forget faces that left the picture
