"""`shapes`: a seeded synthetic multimodal world: images of 1-3 coloured shapes with a
compositional caption, question/answer pairs and a class label.

    source = ShapesSource("train", image_size=32, holdout=[("red", "triangle")])
    len(source)   -> 20000
    source[7]     -> {"image": uint8 [32, 32, 3], "caption": "a small red circle above a large
                      blue square", "qa": [[question, answer], ...], "label": 0,
                      "label_name": "circle", "objects": [...], "_file": "shapes:train",
                      "_record": 7}

Every record is a pure function of (seed, split, index): no files, no global state, so any
worker process can produce any record and a restored iterator sees the same data.

Splits never share an image: a scene belongs to validation or to train according to a stable
hash of its content (not of the seed), so even train sets drawn with other seeds stay disjoint
from validation. Held-out (color, shape) combinations never appear in train or validation; the
"holdout" split has at least one in every image, to measure generalisation to unseen compositions.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow", "purple", "white")
SIZES = ("small", "large")
SPLITS = ("train", "validation", "holdout")
LABEL_KINDS = ("shape", "count", "object")  # object: color and shape of the largest object
COUNT_WORDS = ("zero", "one", "two", "three")
RELATIONS = ("above", "below", "to the left of", "to the right of")

# Saturated and far apart in RGB, so a colour is never a matter of judgement.
COLOR_RGB = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (160, 60, 220),
    "white": (245, 245, 245),
}
BACKGROUND_RGB = (20, 22, 30)

MAX_OBJECTS = 3
MIN_IMAGE_SIZE = 16  # below this a small triangle is no longer recognisable
DEFAULT_NUM_EXAMPLES = {"train": 20000, "validation": 1000, "holdout": 1000}
# One scene in VALIDATION_BUCKETS (by content hash) is reserved for validation.
VALIDATION_BUCKETS = 10
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
# Free space between objects, so two objects never touch and merge into one blob.
_GAP = 1
_PLACEMENT_TRIES = 50
_SCENE_TRIES = 10_000


def label_names(label_kind: str = "shape") -> tuple[str, ...]:
    """Class names for `label_kind`, in label order."""
    _check_choice("label_kind", label_kind, LABEL_KINDS)
    if label_kind == "object":
        return tuple(f"{color} {shape}" for color in COLORS for shape in SHAPES)
    return SHAPES if label_kind == "shape" else COUNT_WORDS[1:MAX_OBJECTS + 1]


def object_side(size: str, image_size: int) -> int:
    """Side in pixels of an object's square bounding box (8 and 14 at 32x32)."""
    small = max(4, round(image_size * 0.25))
    # At least 3 pixels more than small, so "large" stays obvious at 16x16.
    return small if size == "small" else max(small + 3, round(image_size * 0.44))


class ShapesSource:
    """Random-access source of `shapes` records (grain style: len() and [index])."""

    def __init__(self, split: str = "train", *, image_size: int = 32, num_examples: int | None = None,
                 seed: int = 0, holdout: Iterable = (), label_kind: str = "shape", max_objects: int = MAX_OBJECTS,
                 existence_share: float = 0.0):
        """existence_share > 0: each record's "qa" list holds only its "is there a C S?" questions
        with this probability, and only the other questions otherwise, so a VQA task drawing one pair
        per record asks existence questions at this rate (0: every question, ~28% existence)."""
        _check_choice("split", split, SPLITS)
        if not 0.0 <= existence_share <= 1.0:
            raise ValueError(f"shapes: existence_share must be in [0, 1], got {existence_share}")
        self.existence_share = float(existence_share)
        if not 1 <= max_objects <= MAX_OBJECTS:
            raise ValueError(f"shapes: max_objects must be in [1, {MAX_OBJECTS}], got {max_objects}")
        self.max_objects = max_objects
        _check_choice("label_kind", label_kind, LABEL_KINDS)
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"shapes: image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
        self.holdout = _parse_holdout(holdout)
        if split == "holdout" and not self.holdout:
            raise ValueError("shapes: split 'holdout' needs held-out combinations, e.g. "
                             "holdout=[('red', 'triangle')]; none were given")
        if len(self.holdout) == len(COLORS) * len(SHAPES):
            raise ValueError("shapes: holdout lists every (color, shape) combination; train would be empty")
        self.num_examples = DEFAULT_NUM_EXAMPLES[split] if num_examples is None else int(num_examples)
        if self.num_examples < 0:
            raise ValueError(f"shapes: num_examples must be >= 0, got {num_examples}")
        self.split, self.image_size, self.seed, self.label_kind = split, image_size, seed, label_kind
        self.label_names = label_names(label_kind)

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index) -> dict:
        index = operator.index(index)
        if not 0 <= index < self.num_examples:
            raise IndexError(f"shapes:{self.split}: index {index} out of range [0, {self.num_examples})")
        rng = np.random.default_rng([self.seed, _SPLIT_IDS[self.split], index])
        objects = self._sample_scene(rng)
        # Held-out combinations are never asked about in train/validation either: a "no" answer
        # would teach the model that they cannot exist.
        unaskable = self.holdout if self.split != "holdout" else ()
        label = _label(objects, self.label_kind)
        qa = questions_and_answers(objects, rng, unaskable)
        if self.existence_share:
            existence = rng.random() < self.existence_share
            qa = [pair for pair in qa if pair[0].startswith("is there") == existence]
        return {
            "image": draw_scene(objects, self.image_size),
            "caption": caption(objects),
            "qa": qa,
            "label": label,
            "label_name": self.label_names[label],
            "objects": objects,
            "_file": f"shapes:{self.split}",
            "_record": index,
        }

    def __repr__(self) -> str:
        return (f"ShapesSource(split={self.split!r}, image_size={self.image_size}, "
                f"num_examples={self.num_examples}, seed={self.seed}, holdout={self.holdout}, "
                f"label_kind={self.label_kind!r}, max_objects={self.max_objects}, "
                f"existence_share={self.existence_share})")

    def _sample_scene(self, rng: np.random.Generator) -> list[dict]:
        """Redraws whole scenes until one belongs to this split (rejection keeps splits disjoint)."""
        for _ in range(_SCENE_TRIES):
            boxes = _sample_layout(rng, self.image_size, self.max_objects)
            objects = _sample_attributes(rng, boxes, self.holdout, force_holdout=self.split == "holdout")
            if self.split == "holdout" or _is_validation_scene(objects) == (self.split == "validation"):
                return objects
        raise RuntimeError(f"shapes:{self.split}: no scene found in {_SCENE_TRIES} tries")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"shapes: unknown {name} {value!r}; expected one of {list(choices)}")


def _parse_holdout(holdout: Iterable) -> tuple[tuple[str, str], ...]:
    """Validated, de-duplicated and sorted: a set's iteration order differs between processes,
    and the order decides which combination the holdout split draws."""
    pairs = set()
    for pair in holdout:
        if isinstance(pair, str) or not isinstance(pair, Iterable) or len(tuple(pair)) != 2:
            raise ValueError(f"shapes: holdout entries must be (color, shape) pairs, got {pair!r}")
        color, shape = tuple(pair)
        _check_choice("holdout color", color, COLORS)
        _check_choice("holdout shape", shape, SHAPES)
        pairs.add((color, shape))
    return tuple(sorted(pairs, key=lambda p: (COLORS.index(p[0]), SHAPES.index(p[1]))))


def _sample_layout(rng: np.random.Generator, image_size: int,
                   max_objects: int = MAX_OBJECTS) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Object sizes and non-overlapping boxes (x0, y0, x1, y1; end exclusive), fully inside the
    image. A scene that does not fit (three large objects at 16x16) is redrawn from scratch."""
    for _ in range(_SCENE_TRIES):
        placed = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            size = SIZES[rng.integers(len(SIZES))]
            box = _place(rng, object_side(size, image_size), [b for _, b in placed], image_size)
            if box is None:
                break
            placed.append((size, box))
        else:
            return placed
    raise RuntimeError(f"shapes: could not lay out a scene at image_size={image_size}")


def _place(rng, side, boxes, image_size):
    for _ in range(_PLACEMENT_TRIES):
        x0, y0 = (int(v) for v in rng.integers(0, image_size - side + 1, size=2))
        box = (x0, y0, x0 + side, y0 + side)
        if all(_apart(box, other) for other in boxes):
            return box
    return None


def _apart(a, b) -> bool:
    """True when boxes a and b are separated by at least _GAP pixels along some axis."""
    return (a[2] + _GAP <= b[0] or b[2] + _GAP <= a[0]
            or a[3] + _GAP <= b[1] or b[3] + _GAP <= a[1])


def _sample_attributes(rng, layout, holdout, *, force_holdout: bool) -> list[dict]:
    """Colour and shape per object. Outside the holdout split a held-out combination is redrawn;
    inside it one randomly chosen object is given a held-out combination."""
    forced = int(rng.integers(len(layout))) if force_holdout else -1
    objects = []
    for i, (size, box) in enumerate(layout):
        if i == forced:
            color, shape = holdout[rng.integers(len(holdout))]
        else:
            while True:
                color, shape = COLORS[rng.integers(len(COLORS))], SHAPES[rng.integers(len(SHAPES))]
                if force_holdout or (color, shape) not in holdout:
                    break
        objects.append({"shape": shape, "color": color, "size": size,
                        "x": (box[0] + box[2]) / 2, "y": (box[1] + box[3]) / 2, "box": list(box)})
    return objects


def _is_validation_scene(objects: list[dict]) -> bool:
    """Stable content hash (independent of seed, draw order and process) -> validation or train."""
    key = repr(sorted((o["shape"], o["color"], o["size"], *o["box"]) for o in objects))
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % VALIDATION_BUCKETS == 0


def draw_scene(objects: list[dict], image_size: int) -> np.ndarray:
    """uint8 [S, S, 3]: each object filled with its flat colour inside its box, on a dark background."""
    image = Image.new("RGB", (image_size, image_size), BACKGROUND_RGB)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        x0, y0, x1, y1 = obj["box"]
        last_x, last_y = x1 - 1, y1 - 1  # Pillow's coordinates are inclusive
        fill = COLOR_RGB[obj["color"]]
        if obj["shape"] == "circle":
            draw.ellipse([x0, y0, last_x, last_y], fill=fill)
        elif obj["shape"] == "square":
            draw.rectangle([x0, y0, last_x, last_y], fill=fill)
        else:
            draw.polygon([((x0 + last_x) / 2, y0), (x0, last_y), (last_x, last_y)], fill=fill)
    return np.array(image, dtype=np.uint8)


def describe(obj: dict) -> str:
    return f"a {obj['size']} {obj['color']} {obj['shape']}"


def relation(a: dict, b: dict) -> str:
    """Where a is relative to b, along the axis on which their centres differ most (y grows
    downwards; a tie counts as vertical)."""
    dx, dy = a["x"] - b["x"], a["y"] - b["y"]
    if abs(dy) >= abs(dx):
        return "above" if dy < 0 else "below"
    return "to the left of" if dx < 0 else "to the right of"


def caption(objects: list[dict]) -> str:
    """One object: "a small red circle"; two: "A above B" or "A to the left of B", A being the
    upper (or left) object, so the image alone decides the words (drawing order is invisible);
    three: listed left to right, "A, B and C"."""
    if len(objects) == 1:
        return describe(objects[0])
    if len(objects) == 2:
        a, b = objects
        if relation(a, b) in ("below", "to the right of"):
            a, b = b, a
        return f"{describe(a)} {relation(a, b)} {describe(b)}"
    ordered = [describe(o) for o in sorted(objects, key=lambda o: (o["x"], o["y"]))]
    return ", ".join(ordered[:-1]) + " and " + ordered[-1]


def questions_and_answers(objects: list[dict], rng: np.random.Generator, unaskable=()) -> list[list[str]]:
    """Every question whose answer is unambiguous, plus as many "no" existence questions as
    "yes" ones (about combinations not in `unaskable`) so yes/no stays balanced."""
    qa = []
    for shape in SHAPES:
        same_shape = [o for o in objects if o["shape"] == shape]
        if len(same_shape) == 1:
            qa.append([f"what color is the {shape}?", same_shape[0]["color"]])
            qa.append([f"what size is the {shape}?", same_shape[0]["size"]])
    for color in COLORS:
        same_color = [o for o in objects if o["color"] == color]
        if len(same_color) == 1:
            qa.append([f"what shape is the {color} object?", same_color[0]["shape"]])
    for shape in SHAPES:
        qa.append([f"how many {shape}s are there?", COUNT_WORDS[sum(o["shape"] == shape for o in objects)]])
    qa.append(["how many objects are there?", COUNT_WORDS[len(objects)]])
    present = {(o["color"], o["shape"]) for o in objects}
    combos = [(c, s) for c in COLORS for s in SHAPES]
    qa += [[f"is there a {c} {s}?", "yes"] for c, s in combos if (c, s) in present]
    absent = [(c, s) for c, s in combos if (c, s) not in present and (c, s) not in unaskable]
    for i in sorted(rng.choice(len(absent), size=min(len(present), len(absent)), replace=False)):
        qa.append([f"is there a {absent[i][0]} {absent[i][1]}?", "no"])
    return qa


def _label(objects: list[dict], label_kind: str) -> int:
    if label_kind == "count":
        return len(objects) - 1
    largest = next((o for o in objects if o["size"] == "large"), objects[0])  # ties: first drawn
    if label_kind == "object":
        return COLORS.index(largest["color"]) * len(SHAPES) + SHAPES.index(largest["shape"])
    return SHAPES.index(largest["shape"])
