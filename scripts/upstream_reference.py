"""The upstream ax_facial_features algorithm, run on this project's models, as the benchmark's baseline.

Upstream (ailia MODELS' ax_facial_features.py) loads its anchor file on every frame, detects faces on every frame
(no tracking), runs the mesh one face at a time, and runs each classifier once per face and per task (eyelids and
eyelashes are separate networks there, so the eye band goes through a network twice). This class does the same
with the same model files, so that speed is compared side by side and outputs can be checked equal on stills.
Benchmark use only: the plugin never runs this.
"""
import os
import tempfile

import numpy as np

from face_detection.facemesh.pipeline import associate
from face_recognition.ax_facial_features.constants import TASK_CROP
from face_recognition.ax_facial_features.crops import make_crop, preprocess
from face_recognition.ax_facial_features.pipeline import FaceFeatures, make_task_result


class UpstreamReference:
    def __init__(self, analyser):
        self.analyser = analyser
        self.detector = analyser.face_mesh.detector
        # removed with this object (or at exit): benchmarks and tests make many of these
        self._anchors_folder = tempfile.TemporaryDirectory(prefix="upstream_anchors_")
        self.anchors_path = os.path.join(self._anchors_folder.name, "anchors.npy")
        np.save(self.anchors_path, self.detector.anchors)
        self.model_of_task = {out.task: model for model in analyser.classifiers.models for out in model.spec.outputs}

    def process(self, image_bgr):
        computed = self.detector.anchors
        self.detector.anchors = np.load(self.anchors_path)  # upstream reads its anchors file every frame
        try:
            candidates = associate(self.analyser.face_mesh.detect(image_bgr))
        finally:
            self.detector.anchors = computed
        meshes = [face for candidate in candidates for face in self.analyser.face_mesh.fit(image_bgr, [candidate])]
        meshes.sort(key=lambda face: -face.detection_score)
        faces = []
        for mesh in meshes:
            face = FaceFeatures(mesh=mesh)
            for kind in self.analyser.crop_kinds:
                face.crops[kind] = make_crop(image_bgr, mesh.landmarks, kind)
            for task in self.analyser.tasks:
                batch = preprocess([face.crops[TASK_CROP[task]].image])
                probabilities = self.model_of_task[task].run(batch)[task][0]
                face.results[task] = make_task_result(task, probabilities, self.analyser.facial_hair_threshold)
            faces.append(face)
        return faces


def max_probability_difference(faces_a, faces_b):
    """Largest |p_a - p_b| over matching faces and all classes (inf when the face counts differ)."""
    if len(faces_a) != len(faces_b):
        return float("inf")
    worst = 0.0
    for a, b in zip(faces_a, faces_b):
        for task, result in a.results.items():
            for name, p in result.probs.items():
                worst = max(worst, abs(p - b.results[task].probs[name]))
    return worst
