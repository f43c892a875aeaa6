"""Constants of the ax Facial Features plugin: landmark index sets, tasks and class names."""

# Face Mesh landmark indices (468-point topology). "Left"/"right" are the SUBJECT's: the subject's left eye is on
# the IMAGE-right side of a photo taken from the front.
LEFT_EYE_CONTOUR = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
RIGHT_EYE_CONTOUR = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
MOUTH_INNER_CONTOUR = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)

# Crop kinds, with the original's geometry: half-size factor and how much of the `down` vector is kept.
FACE = "face"
EYE_BAND = "eye_band"
CROP_SCALE = {FACE: 1.8, EYE_BAND: 1.0}
CROP_DOWN_FACTOR = {FACE: 1.0, EYE_BAND: 0.33}

# Per-eye crop (hybrid eyelids): a square around one eye, side = PER_EYE_SIDE x the distance between the eye centres,
# centred PER_EYE_UP x that distance above the eye centre so that the lid crease and the brow are inside.
SUBJECT_LEFT = "left"
SUBJECT_RIGHT = "right"
PER_EYE_SIDE = 0.9
PER_EYE_UP = 0.08
# Crop kinds of the per-eye model: one per eye, both in the subject's-right-eye orientation (the left one mirrored),
# cut at PER_EYE_INPUT_SIZE (an eye is ~50 source pixels wide in a 224 px portrait: 128 keeps all of its detail).
EYE_CROP_KINDS = {SUBJECT_RIGHT: "eye_right", SUBJECT_LEFT: "eye_left"}
PER_EYE_INPUT_SIZE = 128
# The manifest's crop name of a per-eye model: it gets both eyes of every face in one batch, in this order per face.
PER_EYE_CROP = "eye"
PER_EYE_ORDER = (SUBJECT_RIGHT, SUBJECT_LEFT)

# Landmarks for geometric quality signals: eye corners (outer, inner) and lids (upper, lower) of each eye.
EYE_CORNERS = {SUBJECT_RIGHT: (33, 133), SUBJECT_LEFT: (263, 362)}
EYE_LIDS = {SUBJECT_RIGHT: (159, 145), SUBJECT_LEFT: (386, 374)}
NOSE_TIP = 1
FACE_SIDES = (234, 454)  # image-left and image-right edges of the face oval

CLASSIFIER_INPUT_SIZE = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Tasks, their classes (model output order) and which crop feeds them.
EYELIDS = "eyelids"
EYELASHES = "eyelashes"
FACIAL_HAIR = "facial_hair"
TASKS = (EYELIDS, EYELASHES, FACIAL_HAIR)
CLASS_NAMES = {
    EYELIDS: ("double", "single"),
    EYELASHES: ("dense", "moderate", "sparse"),
    FACIAL_HAIR: ("moustache", "beard", "mouth_side_hair"),
}
TASK_CROP = {EYELIDS: EYE_BAND, EYELASHES: EYE_BAND, FACIAL_HAIR: FACE}
MULTI_LABEL_TASKS = (FACIAL_HAIR,)

# Per-eye eyelids (flag --per-eye): one double/single answer per eye, combined into a face-level type.
PER_EYE_EYELID = "per_eye_eyelid"
CLASS_NAMES[PER_EYE_EYELID] = CLASS_NAMES[EYELIDS]
EYELID_TYPES = ("double", "single", "hybrid")

# "Unclear" outputs: one sigmoid per task, trained on the annotators' unclear labels (closed eyes, glasses across
# the lid, blur, occlusion, a turned head). With the mesh's geometric signals they feed the task's unclear gate.
UNCLEAR_OUTPUTS = {task: f"{task}_unclear" for task in (EYELIDS, EYELASHES, FACIAL_HAIR, PER_EYE_EYELID)}
for _output in UNCLEAR_OUTPUTS.values():
    CLASS_NAMES[_output] = ("unclear",)
# Outputs passed through a sigmoid (trained with binary cross entropy), one independent probability per class.
SIGMOID_OUTPUTS = MULTI_LABEL_TASKS + tuple(UNCLEAR_OUTPUTS.values())
# Everything a classifier model may serve (the manifest's "outputs" keys).
MODEL_OUTPUTS = TASKS + (PER_EYE_EYELID,) + tuple(UNCLEAR_OUTPUTS.values())
STATUS_OK = "ok"
STATUS_UNCLEAR = "unclear"
DEFAULT_FACIAL_HAIR_THRESHOLD = 0.5
