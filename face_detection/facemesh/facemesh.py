#!/usr/bin/env python3
"""Face Mesh (mediapipe's BlazeFace + 468-point mesh, converted to ONNX): landmarks of every face.

    python3 facemesh.py                              # the astronaut sample (scikit-image), saves output.png
    python3 facemesh.py -i photo.jpg -s out.png -w   # also writes out.json (schema facemesh/1)
    python3 facemesh.py -v 0                         # webcam
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from face_detection.facemesh.app import add_face_finding_flags, run  # noqa: E402
from util.arg_utils import get_base_parser, update_parser  # noqa: E402


def parse_args(argv=None):
    parser = get_base_parser("Face Mesh: 468 facial landmarks per face", default_input=None,
                             default_save="output.png")
    add_face_finding_flags(parser)
    return update_parser(parser, argv)


def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
