"""Command-line flags shared by every model script, as users of ailia MODELS know them.

``get_base_parser`` builds the common parser, the script adds its own flags, and ``update_parser`` parses, expands
input folders, decides whether a window may be shown and configures logging.
"""
import argparse
import logging
import os
import sys

from util.errors import InputError
from util.image_utils import is_image_path

DEFAULT_BENCHMARK_COUNT = 5


def get_base_parser(description, default_input=None, default_save="output.png"):
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-i", "--input", nargs="+", default=[default_input] if default_input else None,
                        metavar="PATH", help="image files or folders (a folder is expanded to its images, sorted)")
    parser.add_argument("-v", "--video", default=None, metavar="VIDEO",
                        help="video file, or a webcam index such as 0")
    parser.add_argument("-s", "--savepath", default=default_save, metavar="PATH",
                        help="output file (one input), or folder receiving <input stem>_res.<ext>")
    parser.add_argument("-b", "--benchmark", action="store_true", help="time each inference and print ms")
    parser.add_argument("-bc", "--benchmark_count", type=int, default=DEFAULT_BENCHMARK_COUNT,
                        help="number of timed runs with --benchmark")
    parser.add_argument("-e", "--env_id", type=int, default=-1, help="ailia environment id (-1: automatic)")
    parser.add_argument("--env_list", action="store_true", help="list ailia environments and exit")
    parser.add_argument("--onnx", action="store_true", help="use onnxruntime instead of the ailia SDK")
    parser.add_argument("-w", "--write_json", action="store_true", help="also write results as JSON")
    parser.add_argument("--model_dir", default=None, metavar="DIR",
                        help="where model files are looked for (default: next to the script that owns them)")
    parser.add_argument("--no-show", dest="no_show", action="store_true",
                        help="never open a window (automatic when there is no display)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings and errors only")
    parser.add_argument("--debug", action="store_true", help="verbose logging")
    return parser


def has_display():
    """False where cv2.imshow would kill the process (Linux without X11/Wayland)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def folder_images(path):
    """The images of a folder, sorted (hidden files such as macOS '._x.jpg' resource forks are not images)."""
    return sorted(os.path.join(path, name) for name in os.listdir(path)
                  if is_image_path(name) and not name.startswith(".") and os.path.isfile(os.path.join(path, name)))


def expand_inputs(paths):
    """Files stay as given (a missing one is reported when read); folders become their sorted images.

    A folder without images stays in the list (it is reported as a failed input while the others run), unless
    nothing at all is left to process.
    """
    expanded = []
    for path in paths:
        if os.path.isdir(path):
            expanded.extend(folder_images(path) or [path])
        else:
            expanded.append(path)
    if all(os.path.isdir(path) for path in expanded):
        raise InputError(f"{expanded[0]}: folder contains no images")
    return expanded


def configure_logging(debug=False, quiet=False):
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", force=True)


def update_parser(parser, argv=None):
    args = parser.parse_args(argv)
    configure_logging(args.debug, args.quiet)
    args.show = not args.no_show and has_display()
    if args.benchmark_count < 1:
        parser.error("--benchmark_count must be at least 1")
    if args.video is None and args.input:
        try:
            args.input = expand_inputs(args.input)
        except InputError as e:
            parser.exit(2, f"ERROR {e}\n")
    return args


def is_folder_path(path):
    """A save path names a folder when it exists as one, ends with a separator, or has no extension.

    Unlike upstream, a leading dot (``./out``) does not make a path a file: only the last component counts.
    """
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        return True
    return os.path.splitext(os.path.basename(path))[1] == ""


def _output_folder_and_ext(savepath, ext=None):
    if is_folder_path(savepath):
        return savepath, ext or ".png"
    return os.path.dirname(savepath) or ".", ext or os.path.splitext(savepath)[1]


def get_savepath(savepath, input_path, n_inputs=1, ext=None, suffix="_res"):
    """Output path of one input: one input + a file path -> that file; else `<folder>/<input stem>_res<ext>`."""
    if n_inputs == 1 and not is_folder_path(savepath):
        return savepath
    folder, ext = _output_folder_and_ext(savepath, ext)
    stem = os.path.splitext(os.path.basename(input_path))[0] or "input"
    return os.path.join(folder, f"{stem}{suffix}{ext}")


def plan_savepaths(savepath, input_paths, ext=None):
    """get_savepath for every input, so that several inputs never share one output file.

    Equal stems from different folders get a numbered suffix.
    """
    planned, used = [], set()
    for input_path in input_paths:
        candidate = get_savepath(savepath, input_path, len(input_paths), ext)
        stem, candidate_ext = os.path.splitext(candidate)
        number = 2
        while candidate in used:
            candidate = f"{stem}_{number}{candidate_ext}"
            number += 1
        used.add(candidate)
        planned.append(candidate)
    return planned
