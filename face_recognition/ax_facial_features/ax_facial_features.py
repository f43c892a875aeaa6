#!/usr/bin/env python3
"""ax Facial Features: eyelids, eyelashes and facial hair of every face in images, videos or a webcam.

    python3 ax_facial_features.py                      # the astronaut sample (scikit-image), saves output.png
    python3 ax_facial_features.py -i photo.jpg -w      # also writes output.json
    python3 ax_facial_features.py -v 0                 # webcam
    python3 ax_facial_features.py --per-eye            # also eyelids per eye (double / single / hybrid)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from face_detection.facemesh.app import add_face_finding_flags  # noqa: E402
from face_recognition.ax_facial_features.app import run  # noqa: E402
from face_recognition.ax_facial_features.constants import DEFAULT_FACIAL_HAIR_THRESHOLD, TASKS  # noqa: E402
from util.arg_utils import get_base_parser, update_parser  # noqa: E402


def parse_args(argv=None):
    parser = get_base_parser("ax Facial Features: eyelids, eyelashes and facial hair classification",
                             default_input=None, default_save="output.png")
    parser.add_argument("-m", "--mode", nargs="+", choices=TASKS, default=list(TASKS),
                        help="tasks to run")
    parser.add_argument("--threshold", type=float, default=DEFAULT_FACIAL_HAIR_THRESHOLD,
                        help="facial hair: probability from which a label is reported")
    parser.add_argument("--per-eye", action="store_true",
                        help="also classify each eye's eyelid (needs a per-eye model in the manifest) and report "
                             "the face's eyelid type: double, single, hybrid (one of each) or unclear")
    add_face_finding_flags(parser)
    parser.add_argument("--smoothing", type=float, default=0.0,
                        help="video: weight of the previous frames in an exponential moving average of each "
                             "tracked face's probabilities, in [0, 1) (0 = off)")
    parser.add_argument("--classify_interval", type=int, default=3, metavar="N",
                        help="video: classify each tracked face on its first frame and then every N-th frame, "
                             "keeping its answers in between (its mesh and ROI follow every frame); 1 = every "
                             "frame")
    parser.add_argument("--manifest", default=None, metavar="JSON",
                        help="model manifest naming the classifier files (default: the plugin's manifest.json)")
    return update_parser(parser, argv)


if __name__ == "__main__":
    sys.exit(run(parse_args()))
