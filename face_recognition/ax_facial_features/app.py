"""What the ax_facial_features.py command does with its parsed flags (images, video, benchmark)."""
import logging

from face_detection.facemesh.app import run_guarded
from face_recognition.ax_facial_features.drawing import draw_results
from face_recognition.ax_facial_features.pipeline import FacialFeatures, VideoAnalyser
from face_recognition.ax_facial_features.report import frame_record, image_record, log_results
from util.runner import ModelJob

logger = logging.getLogger(__name__)


def make_job(analyser, video=False, redetect_interval=10, smoothing=0.0, classify_interval=1):
    """Stills: detect every image. Video: track faces between frames, classify each track every
    ``classify_interval`` frames (and smooth when asked)."""
    def report(name, faces):
        logger.info("%s: %d face(s)", name, len(faces))
        log_results(faces, analyser.tasks)

    analyse = (VideoAnalyser(analyser, redetect_interval, smoothing, classify_interval).process if video
               else analyser.process)
    return ModelJob(
        analyse=analyse,
        render=lambda image, faces, mirror: draw_results(image, faces, analyser.tasks, mirror=mirror),
        image_record=lambda name, image, faces: image_record(name, image.shape, faces, analyser.tasks,
                                                             analyser.model_info()),
        frame_record=lambda index, faces: frame_record(index, faces, analyser.tasks),
        report=report)


def run(args):
    """Exit code of one command run (0 success, 1 some input failed, 2 nothing could run)."""
    def build_job():
        analyser = FacialFeatures(args.mode, detector=args.detector, max_faces=args.max_faces, env_id=args.env_id,
                                  force_onnx=args.onnx, model_dir=args.model_dir, manifest_path=args.manifest,
                                  facial_hair_threshold=args.threshold, per_eye=args.per_eye)
        return make_job(analyser, video=args.video is not None, redetect_interval=args.redetect_interval,
                        smoothing=args.smoothing, classify_interval=args.classify_interval)

    return run_guarded(args, build_job)
