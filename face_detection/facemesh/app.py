"""What the facemesh.py command does with its parsed flags, and the face-finding flags both scripts share."""
import logging

from face_detection.facemesh.drawing import draw_faces
from face_detection.facemesh.pipeline import FaceMesh, FaceTracker, faces_record
from util.backend import describe_ailia_environments
from util.errors import AxError
from util.runner import ModelJob, run_job

logger = logging.getLogger("facemesh")


def add_face_finding_flags(parser):
    parser.add_argument("--detector", choices=("short", "full"), default="short",
                        help="BlazeFace model: short range (faces over ~1/5 of the frame) or full range")
    parser.add_argument("--max_faces", type=int, default=None, help="process at most this many faces")
    parser.add_argument("--redetect_interval", type=int, default=10,
                        help="video: faces are tracked from frame to frame; the detector runs when a face is lost "
                             "and at least every N frames (1 = detect every frame)")
    return parser


def run_guarded(args, build_job):
    """--env_list, or build the job (models load here) and run it; AxError -> one line, exit code 2;
    Ctrl-C while the models load -> exit code 130 without a traceback."""
    if args.env_list:
        print("\n".join(describe_ailia_environments()))
        return 0
    try:
        job = build_job()
    except AxError as e:
        logger.error("%s", e)
        return 2
    except KeyboardInterrupt:
        logger.warning("interrupted while loading the models")
        return 130
    try:
        return run_job(job, args)
    except AxError as e:
        logger.error("%s", e)
        return 2


def make_job(face_mesh, video=False, redetect_interval=10):
    def report(name, faces):
        logger.info("%s: %s", name, f"{len(faces)} face(s)" if faces else "no face")

    analyse = FaceTracker(face_mesh, redetect_interval).process if video else face_mesh.process
    return ModelJob(analyse=analyse,
                    render=lambda image, faces, mirror: draw_faces(image, faces, mirror=mirror),
                    image_record=lambda name, image, faces: faces_record(name, faces),
                    frame_record=lambda index, faces: dict(faces_record(f"frame {index}", faces), frame=index),
                    report=report)


def run(args):
    return run_guarded(args, lambda: make_job(
        FaceMesh(detector=args.detector, max_faces=args.max_faces, env_id=args.env_id, force_onnx=args.onnx,
                 model_dir=args.model_dir), video=args.video is not None, redetect_interval=args.redetect_interval))
