"""What the ax_facial_features.py command does with its parsed flags: image batches, video, benchmark."""
import logging
import os

from face_recognition.ax_facial_features.drawing import draw_results
from face_recognition.ax_facial_features.pipeline import FacialFeatures
from face_recognition.ax_facial_features.report import frame_record, image_record, log_results
from util.arg_utils import plan_savepaths
from util.backend import describe_ailia_environments
from util.errors import AxError
from util.file_utils import write_json_atomic
from util.image_utils import SAMPLE_PORTRAIT_NAME, imwrite, load_sample_portrait
from util.runner import InputItem, JsonLinesWriter, benchmark, output_sidecar, run_image_batch, run_video

logger = logging.getLogger(__name__)


def run(args):
    """Exit code of one command run (0 success, 1 some input failed, 2 nothing could run)."""
    if args.env_list:
        for line in describe_ailia_environments():
            print(line)
        return 0
    try:
        analyser = FacialFeatures(args.mode, detector=args.detector, max_faces=args.max_faces, env_id=args.env_id,
                                  force_onnx=args.onnx, model_dir=args.model_dir, manifest_path=args.manifest,
                                  facial_hair_threshold=args.threshold)
        if args.video is not None:
            return run_on_video(analyser, args)
        return run_on_images(analyser, args)
    except AxError as e:
        logger.error("%s", e)
        return 2


def input_items(args):
    if args.input:
        return [InputItem.from_path(path) for path in args.input]
    return [InputItem(SAMPLE_PORTRAIT_NAME, image=load_sample_portrait())]


def run_on_images(analyser, args):
    items = input_items(args)
    savepaths = dict(zip((item.name for item in items), plan_savepaths(args.savepath, [
        item.path or "astronaut" for item in items])))
    records = []

    def process_one(item, image):
        if args.benchmark:
            faces = benchmark(lambda: analyser.process(image), args.benchmark_count)
        else:
            faces = analyser.process(image)
        logger.info("%s: %d face(s)", item.name, len(faces))
        log_results(faces, analyser.tasks)
        savepath = savepaths[item.name]
        imwrite(savepath, draw_results(image, faces, analyser.tasks))
        logger.info("saved %s", savepath)
        if args.write_json:
            record = image_record(item.name, image.shape, faces, analyser.tasks, analyser.model_info())
            write_json_atomic(output_sidecar(savepath, ".json"), record)
            records.append(record)

    exit_code = run_image_batch(items, process_one, quiet=args.quiet)
    if args.write_json and len(items) > 1 and records:
        folder = os.path.dirname(next(iter(savepaths.values()))) or "."
        jsonl = JsonLinesWriter(os.path.join(folder, "results.jsonl"))
        for record in records:
            jsonl.write(record)
        jsonl.close()
    return exit_code


def run_on_video(analyser, args):
    video_out = args.savepath if _is_video_path(args.savepath) else None
    jsonl_path = output_sidecar(video_out or args.savepath, ".jsonl") if args.write_json else None

    def analyse_frame(frame, index):
        faces = analyser.process(frame)
        return faces, frame_record(index, faces, analyser.tasks)

    def render(frame, faces, mirror):
        return draw_results(frame, faces, analyser.tasks, mirror=mirror)

    return run_video(args.video, analyse_frame, render, savepath=video_out, jsonl_path=jsonl_path,
                     show=args.show, quiet=args.quiet)


def _is_video_path(path):
    return os.path.splitext(path)[1].lower() in (".mp4", ".avi", ".mov", ".mkv")
