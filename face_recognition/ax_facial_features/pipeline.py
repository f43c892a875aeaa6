"""The ax Facial Features pipeline as a library: BGR image -> one FaceFeatures record per face.

Stages: detect + mesh (the facemesh sibling) -> crops -> classify. Each face is one record that the stages fill in.

    from face_recognition.ax_facial_features.pipeline import FacialFeatures
    analyser = FacialFeatures()                 # all three tasks, the project's own models without ailia
    faces = analyser.process(image_bgr)         # image_bgr: HxWx3 uint8, OpenCV (BGR) channel order
    faces[0].results["eyelids"].label           # "double" or "single"
    faces[0].results["eyelids"].status          # "ok", or "unclear" (then .reason says why)

With ``per_eye=True`` each face also gets ``per_eye`` ({"right", "left"}: the subject's own eyes) and
``eyelids_type`` (double, single, hybrid, or unclear).
"""
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from face_detection.facemesh.pipeline import Face, FaceMesh, FaceTracker
from face_recognition.ax_facial_features.classifiers import Classifiers
from face_recognition.ax_facial_features.constants import (
    CLASS_NAMES, DEFAULT_FACIAL_HAIR_THRESHOLD, EYE_CROP_KINDS, EYELID_TYPES, FACE, MULTI_LABEL_TASKS, PER_EYE_CROP,
    PER_EYE_EYELID, PER_EYE_ORDER, STATUS_OK, STATUS_UNCLEAR, TASK_CROP, TASKS, UNCLEAR_OUTPUTS)
from face_recognition.ax_facial_features.crops import kind_corners, make_crop, preprocess, source_width
from face_recognition.ax_facial_features.geometry import face_geometry
from face_recognition.ax_facial_features.unclear import gate_signals, model_only_decision
from util.errors import InputError
from util.image_utils import check_bgr_image
from util.timing import StageTimer


@dataclass
class TaskResult:
    """Probabilities of one task for one face (or one eye), with the chosen label(s) and whether the answer can be
    trusted: ``status`` "ok" or "unclear" (then ``reason`` says why); ``unclear_score`` is the gate's score (or the
    model's unclear probability), None when the model has no unclear output. Unclear results keep their labels."""
    task: str
    probs: dict
    labels: list
    status: str = STATUS_OK
    reason: str = None
    unclear_score: float = None

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
    per_eye: dict = None       # per-eye eyelids: subject's eye ("right", "left") -> TaskResult
    eyelids_type: str = None   # per-eye eyelids combined: double, single, hybrid or unclear
    carried: bool = False      # video: answers carried over from the track's last classified frame

    @property
    def roi(self):
        """Corners (4, 2) of the face crop: top-left, top-right, bottom-left, bottom-right (the original's ROI)."""
        return self.corners(FACE)

    def corners(self, kind):
        """Corners of a crop kind: the cut crop's, or from the landmarks when it was not cut (a video frame whose
        answers were carried over from the track's last classified frame)."""
        crop = self.crops.get(kind)
        return crop.corners if crop is not None else kind_corners(self.mesh.landmarks, kind).astype(np.float32)

    @cached_property
    def geometry(self):
        """Eye openness and head angles from the mesh (geometry.FaceGeometry), computed once: every task's and
        every eye's unclear gate reads them."""
        return face_geometry(self.mesh.landmarks)

    def carry_answers_from(self, previous):
        """Take ``previous``'s answers (same track, an earlier frame)."""
        self.results, self.per_eye, self.eyelids_type = previous.results, previous.per_eye, previous.eyelids_type
        self.carried = True


def make_task_result(task, probabilities, threshold=DEFAULT_FACIAL_HAIR_THRESHOLD, decision=(STATUS_OK, None, None)):
    """``decision``: (status, reason, unclear score), as task_status gives it."""
    names = CLASS_NAMES[task]
    probs = {name: float(p) for name, p in zip(names, probabilities)}
    if task in MULTI_LABEL_TASKS:
        labels = [name for name in names if probs[name] >= threshold]
    else:
        labels = [names[int(np.argmax(probabilities))]]
    status, reason, score = decision
    return TaskResult(task=task, probs=probs, labels=labels, status=status, reason=reason,
                      unclear_score=None if score is None else float(score))


def task_status(gate, unclear_probability, signals):
    """(status, reason, score): the manifest's gate when there is one, else the model's own unclear output at 0.5,
    else (a model without one, e.g. the official set) "ok". ``signals()`` gives the gate's inputs (lazily: only a
    gate needs the mesh geometry)."""
    if gate is not None:
        return gate.decide(signals())
    if unclear_probability is not None:
        return model_only_decision(unclear_probability)
    return STATUS_OK, None, None


def eyelid_type_of_labels(right_label, left_label):
    """The face's eyelid type from its two eyes' labels: their common label, or hybrid when they differ."""
    return right_label if right_label == left_label else EYELID_TYPES[2]


def combine_eyelid_types(per_eye):
    """``per_eye``: {"right", "left"} -> TaskResult. Unclear when either eye is unclear."""
    if any(result.status == STATUS_UNCLEAR for result in per_eye.values()):
        return STATUS_UNCLEAR
    return eyelid_type_of_labels(*(per_eye[eye].label for eye in PER_EYE_ORDER))


def _row_or_none(scores, output, row):
    values = scores.get(output)
    return None if values is None else float(values[row][0])


class FacialFeatures:
    """Finds every face, fits the mesh, cuts the crops and classifies the requested tasks."""

    def __init__(self, tasks=TASKS, *, detector="short", max_faces=None, env_id=-1, force_onnx=False,
                 model_dir=None, manifest_path=None, facial_hair_threshold=DEFAULT_FACIAL_HAIR_THRESHOLD,
                 per_eye=False):
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise InputError(f"unknown task(s): {', '.join(unknown)} (choose from {', '.join(TASKS)})")
        self.tasks = tuple(t for t in TASKS if t in tasks)
        self.facial_hair_threshold = facial_hair_threshold
        self.per_eye = per_eye
        self.face_mesh = FaceMesh(detector=detector, max_faces=max_faces, env_id=env_id, force_onnx=force_onnx,
                                  model_dir=model_dir)
        self.classifiers = Classifiers(self.tasks, per_eye=per_eye, model_dir=model_dir, manifest_path=manifest_path,
                                       env_id=env_id, force_onnx=force_onnx)
        # The face crop is always cut: its corners are the reported ROI, as in the original.
        eye_kinds = set(EYE_CROP_KINDS.values()) if per_eye else set()
        self.crop_kinds = sorted({FACE} | {TASK_CROP[t] for t in self.tasks} | eye_kinds)
        self._crop_pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="crops")
        self.timer = StageTimer()

    def cut_crops(self, image_bgr, faces):
        """Every crop kind of every face. With several faces the warps run on a small thread pool: OpenCV releases
        the GIL, and one crop alone does not keep two cores busy (4 faces: 7.3 -> 4.7 ms on 2 cores; for one face
        the pool's overhead outweighs the gain)."""
        jobs = [(face, kind) for face in faces for kind in self.crop_kinds]
        mapper = self._crop_pool.map if len(faces) > 1 else map
        crops = mapper(lambda job: make_crop(image_bgr, job[0].mesh.landmarks, job[1]), jobs)
        for (face, kind), crop in zip(jobs, crops):
            face.crops[kind] = crop
        return faces

    def classify(self, faces):
        """Runs each model once on the batch of all faces' crops and fills ``results`` (and ``per_eye``)."""
        if not faces:
            return faces
        batches = {kind: preprocess(self._crop_images(faces, kind)) for kind in self.classifiers.crop_kinds}
        self.timer.lap("preprocess")
        scores = self.classifiers.classify(batches, self.timer)
        for index, face in enumerate(faces):
            for task in self.tasks:
                decision = self._decide(task, face, TASK_CROP[task], _row_or_none(scores, UNCLEAR_OUTPUTS[task], index))
                face.results[task] = make_task_result(task, scores[task][index], self.facial_hair_threshold, decision)
            if self.per_eye:
                self._fill_per_eye(face, scores, first_row=len(PER_EYE_ORDER) * index)
        return faces

    @staticmethod
    def _crop_images(faces, kind):
        """One crop per face; for the per-eye model, the eyes of each face in PER_EYE_ORDER, face after face."""
        if kind == PER_EYE_CROP:
            return [face.crops[EYE_CROP_KINDS[eye]].image for face in faces for eye in PER_EYE_ORDER]
        return [face.crops[kind].image for face in faces]

    def _fill_per_eye(self, face, scores, first_row):
        face.per_eye = {}
        for offset, eye in enumerate(PER_EYE_ORDER):
            row = first_row + offset
            decision = self._decide(PER_EYE_EYELID, face, EYE_CROP_KINDS[eye],
                                    _row_or_none(scores, UNCLEAR_OUTPUTS[PER_EYE_EYELID], row), eye=eye)
            face.per_eye[eye] = make_task_result(PER_EYE_EYELID, scores[PER_EYE_EYELID][row], decision=decision)
        face.eyelids_type = combine_eyelid_types(face.per_eye)

    def _decide(self, task, face, crop_kind, unclear_probability, eye=None):
        """Status of one task for one face (or one of its eyes), from its gate's signals: the mesh geometry and the
        width in source pixels of the crop the task reads."""
        def signals():  # the same signal functions as the gate fit (scripts/training/gates.py)
            width = source_width(face.corners(crop_kind))
            return gate_signals(unclear_probability, face.geometry, width, eye=eye)

        return task_status(self.classifiers.gates.get(task), unclear_probability, signals)

    def process(self, image_bgr):
        """BGR uint8 HxWx3 image -> list of FaceFeatures, highest detection score first."""
        return self.analyse(image_bgr, lambda image: self.face_mesh.process(image, self.timer))

    def analyse(self, image_bgr, find_faces, carried=None):
        """The stages after ``find_faces(image) -> list[Face]`` (detection + mesh, or tracking in video).
        ``carried(face) -> FaceFeatures or None``: an earlier record whose answers this face takes instead of being
        cropped and classified again (video). ``self.timer.last`` then holds each stage's milliseconds."""
        check_bgr_image(image_bgr)
        self.timer.start()
        faces = [FaceFeatures(mesh=face) for face in find_faces(image_bgr)]
        fresh = []
        for face in faces:
            previous = carried(face) if carried else None
            if previous is None:
                fresh.append(face)
            else:
                face.carry_answers_from(previous)
        self.cut_crops(image_bgr, fresh)
        self.timer.lap("crops")
        self.classify(fresh)
        return faces

    def model_info(self):
        return self.classifiers.model_info()


class VideoAnalyser:
    """Video frames: faces tracked from the previous frame's landmarks (the detector runs only when needed, see
    FaceTracker), and optionally each track's probabilities smoothed over time.

    ``smoothing`` in [0, 1): weight of the previous smoothed probabilities in an exponential moving average
    (0 = off; 0.6 keeps about the last 2-3 frames' worth). Labels are chosen again from the smoothed values.

    ``classify_interval`` N: a tracked face is cropped and classified on its first frame and then every N-th
    frame; in between it keeps its last answers (eyelids, lashes and facial hair do not change within a fraction
    of a second) while its mesh and ROI follow every frame. 1 classifies every frame.
    """

    def __init__(self, analyser, redetect_interval=10, smoothing=0.0, classify_interval=1):
        if not 0.0 <= smoothing < 1.0:
            raise InputError(f"smoothing must be in [0, 1), got {smoothing}")
        if classify_interval < 1:
            raise InputError(f"classify_interval must be at least 1, got {classify_interval}")
        self.analyser = analyser
        self.tracker = FaceTracker(analyser.face_mesh, redetect_interval=redetect_interval)
        self.smoothing = smoothing
        self.classify_interval = int(classify_interval)
        self._smoothed = {}  # (track id, task) -> probability vector
        self._last_classified = {}  # track id -> (frames since, FaceFeatures of that frame)

    def process(self, frame_bgr):
        faces = self.analyser.analyse(frame_bgr, self._track, carried=self._carried)
        if self.smoothing:
            self._smooth(faces)
        self._remember(faces)
        return faces

    def _carried(self, face):
        """The track's last classified record while it is younger than the interval, else None (classify)."""
        entry = self._last_classified.get(face.mesh.track_id)
        if entry is None or entry[0] + 1 >= self.classify_interval:
            return None
        return entry[1]

    def _remember(self, faces):
        remembered = {}
        for face in faces:
            entry = self._last_classified.get(face.mesh.track_id)
            remembered[face.mesh.track_id] = (entry[0] + 1, entry[1]) if face.carried else (0, face)
        self._last_classified = remembered  # forget faces that left the picture

    def _track(self, frame_bgr):
        faces = self.tracker.process(frame_bgr)
        self.analyser.timer.lap("track+mesh")
        return faces

    def _smooth(self, faces):
        """Smooths probabilities (per task, and per eye); the status stays this frame's own (an eye closing is
        unclear at once)."""
        alive = {}
        for face in faces:
            track = face.mesh.track_id
            if face.carried:  # its answers are the smoothed ones of its last classified frame
                alive.update({key: value for key, value in self._smoothed.items() if key[0] == track})
                continue
            face.results = {task: self._smoothed_result((track, task), result, alive)
                            for task, result in face.results.items()}
            if face.per_eye is not None:
                face.per_eye = {eye: self._smoothed_result((track, PER_EYE_EYELID, eye), result, alive)
                                for eye, result in face.per_eye.items()}
                face.eyelids_type = combine_eyelid_types(face.per_eye)
        self._smoothed = alive  # forget faces that left the picture

    def _smoothed_result(self, key, result, alive):
        current = np.array(list(result.probs.values()))
        previous = self._smoothed.get(key)
        smoothed = current if previous is None else self.smoothing * previous + (1 - self.smoothing) * current
        alive[key] = smoothed
        relabelled = make_task_result(result.task, smoothed, self.analyser.facial_hair_threshold)
        return replace(result, probs=relabelled.probs, labels=relabelled.labels)
