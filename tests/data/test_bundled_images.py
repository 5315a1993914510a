"""The bundled image datasets: `shapes` (synthetic, generated per index) and `digits`
(scikit-learn's load_digits)."""

import re

import numpy as np
import pytest

from sora_jax.data.datasets import digits, shapes
from sora_jax.data.datasets.digits import DigitsSource
from sora_jax.data.datasets.shapes import COLOR_RGB, BACKGROUND_RGB, COLORS, SHAPES, SIZES, ShapesSource

HOLDOUT = (("red", "triangle"), ("blue", "circle"))
RECORD_KEYS = {"image", "caption", "qa", "label", "label_name", "_file", "_record"}


def assert_same_record(a, b):
    assert a.keys() == b.keys()
    np.testing.assert_array_equal(a["image"], b["image"])
    assert {k: v for k, v in a.items() if k != "image"} == {k: v for k, v in b.items() if k != "image"}


def combos(record):
    return {(o["color"], o["shape"]) for o in record["objects"]}


# ---------------------------------------------------------------- shapes: API and determinism


def test_shapes_defaults_and_record_format():
    assert len(ShapesSource()) == 20000
    assert len(ShapesSource("validation")) == 1000
    assert len(ShapesSource("train", num_examples=7)) == 7
    record = ShapesSource()[3]
    assert RECORD_KEYS <= record.keys()
    assert record["_file"] == "shapes:train" and record["_record"] == 3
    assert isinstance(record["caption"], str) and record["qa"]
    assert all(isinstance(q, str) and isinstance(a, str) for q, a in record["qa"])
    for obj in record["objects"]:
        assert {type(v) for k, v in obj.items() if k != "box"} <= {str, float}
        assert all(type(v) is int for v in obj["box"])


def test_shapes_is_deterministic_per_index():
    source = ShapesSource("train", holdout=HOLDOUT)
    for index in (0, 1, 17, 19999):
        assert_same_record(source[index], source[index])
        assert_same_record(source[index], ShapesSource("train", holdout=HOLDOUT)[index])
    assert_same_record(source[np.int64(5)], source[5])


def test_shapes_seed_and_split_change_the_data():
    first = [ShapesSource("train")[i]["image"] for i in range(20)]
    other_seed = [ShapesSource("train", seed=1)[i]["image"] for i in range(20)]
    validation = [ShapesSource("validation")[i]["image"] for i in range(20)]
    assert sum(np.array_equal(a, b) for a, b in zip(first, other_seed)) <= 2
    assert sum(np.array_equal(a, b) for a, b in zip(first, validation)) <= 2


def test_train_and_validation_never_share_an_image():
    train = {ShapesSource("train", seed=seed)[i]["image"].tobytes() for seed in (0, 1) for i in range(300)}
    validation = {ShapesSource("validation")[i]["image"].tobytes() for i in range(200)}
    assert not train & validation


def test_index_out_of_range():
    source = ShapesSource(num_examples=5)
    for bad in (5, -1, 100):
        with pytest.raises(IndexError):
            source[bad]


@pytest.mark.parametrize("kwargs, bad_value", [
    (dict(split="test"), "test"),
    (dict(label_kind="colour"), "colour"),
    (dict(holdout=[("pink", "circle")]), "pink"),
    (dict(holdout=[("red", "hexagon")]), "hexagon"),
    (dict(holdout=("red", "triangle")), "red"),  # a bare pair instead of a list of pairs
    (dict(image_size=8), "8"),
])
def test_bad_arguments_name_the_bad_value(kwargs, bad_value):
    with pytest.raises(ValueError, match=re.escape(bad_value)):
        ShapesSource(**kwargs)


def test_holdout_split_needs_holdout():
    with pytest.raises(ValueError, match="holdout"):
        ShapesSource("holdout")


# ---------------------------------------------------------------- shapes: images


def object_mask(image, obj):
    return np.all(image == np.array(COLOR_RGB[obj["color"]], np.uint8), axis=-1)


@pytest.mark.parametrize("image_size", [16, 32, 64])
def test_objects_are_drawn_inside_their_boxes_on_plain_background(image_size):
    source = ShapesSource(image_size=image_size)
    for index in range(40):
        record = source[index]
        image = record["image"]
        assert image.dtype == np.uint8 and image.shape == (image_size, image_size, 3)
        outside = np.ones(image.shape[:2], bool)
        for obj in record["objects"]:
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= image_size and 0 <= y0 < y1 <= image_size
            assert obj["x"] == (x0 + x1) / 2 and obj["y"] == (y0 + y1) / 2
            # A triangle fills about half its box, a circle ~3/4, a square all of it.
            coverage = object_mask(image[y0:y1, x0:x1], obj).mean()
            assert coverage > {"triangle": 0.35, "circle": 0.6, "square": 0.99}[obj["shape"]]
            outside[y0:y1, x0:x1] = False
        assert np.all(image[outside] == np.array(BACKGROUND_RGB, np.uint8))


@pytest.mark.parametrize("image_size", [16, 32, 64])
def test_objects_do_not_overlap_and_large_is_larger(image_size):
    source = ShapesSource(image_size=image_size)
    for index in range(100):
        boxes = [o["box"] for o in source[index]["objects"]]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                separated = a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
                assert separated, (index, a, b)
    assert shapes.object_side("large", image_size) >= shapes.object_side("small", image_size) + 3


# ---------------------------------------------------------------- shapes: text and labels


def parse_descriptions(text):
    words = "|".join
    pattern = rf"a ({words(SIZES)}) ({words(COLORS)}) ({words(SHAPES)})"
    return [dict(zip(("size", "color", "shape"), m)) for m in re.findall(pattern, text)]


def attributes(obj):
    return {k: obj[k] for k in ("size", "color", "shape")}


def test_captions_describe_the_objects():
    source = ShapesSource()
    seen_counts = set()
    for index in range(200):
        record = source[index]
        objects, text = record["objects"], record["caption"]
        seen_counts.add(len(objects))
        described = parse_descriptions(text)
        if len(objects) == 1:
            assert text == shapes.describe(objects[0])
        elif len(objects) == 2:
            # The upper object first when they differ most vertically, else the left one.
            a, b = objects
            vertical = abs(a["y"] - b["y"]) >= abs(a["x"] - b["x"])
            if (a["y"] > b["y"]) if vertical else (a["x"] > b["x"]):
                a, b = b, a
            assert described == [attributes(a), attributes(b)]
            relation = text[len(shapes.describe(a)) + 1:-len(shapes.describe(b)) - 1]
            assert relation == ("above" if vertical else "to the left of"), (text, a, b)
            swapped = shapes.caption([objects[1], objects[0]])
            assert swapped == text  # drawing order is invisible, so it must not change the words
        else:
            assert described == [attributes(o) for o in sorted(objects, key=lambda o: (o["x"], o["y"]))]
            assert ", " in text and " and " in text
    assert seen_counts == {1, 2, 3}


def test_relation_words():
    at = lambda x, y: {"x": x, "y": y}  # noqa: E731
    assert shapes.relation(at(10, 2), at(12, 20)) == "above"
    assert shapes.relation(at(10, 30), at(12, 20)) == "below"
    assert shapes.relation(at(1, 10), at(20, 12)) == "to the left of"
    assert shapes.relation(at(30, 10), at(20, 12)) == "to the right of"


def answer_from_objects(question, objects):
    """Recomputes each answer from the objects; None marks a question that must not be asked."""
    def only(**match):
        found = [o for o in objects if all(o[k] == v for k, v in match.items())]
        return found[0] if len(found) == 1 else None

    if m := re.fullmatch(r"what color is the (\w+)\?", question):
        return (only(shape=m[1]) or {}).get("color")
    if m := re.fullmatch(r"what size is the (\w+)\?", question):
        return (only(shape=m[1]) or {}).get("size")
    if m := re.fullmatch(r"what shape is the (\w+) object\?", question):
        return (only(color=m[1]) or {}).get("shape")
    if question == "how many objects are there?":
        return shapes.COUNT_WORDS[len(objects)]
    if m := re.fullmatch(r"how many (\w+)s are there\?", question):
        return shapes.COUNT_WORDS[sum(o["shape"] == m[1] for o in objects)]
    if m := re.fullmatch(r"is there a (\w+) (\w+)\?", question):
        return "yes" if any(o["color"] == m[1] and o["shape"] == m[2] for o in objects) else "no"
    raise AssertionError(f"unexpected question {question!r}")


def test_questions_have_correct_unambiguous_answers():
    source = ShapesSource()
    answers = []
    for index in range(200):
        record = source[index]
        assert record["qa"]
        for question, answer in record["qa"]:
            assert answer == answer_from_objects(question, record["objects"]), (question, record["objects"])
            answers.append(answer)
        questions = [q for q, _ in record["qa"]]
        assert len(questions) == len(set(questions))
        assert {f"how many {s}s are there?" for s in SHAPES} <= set(questions)
    assert answers.count("yes") == answers.count("no")  # existence questions are balanced
    assert {"zero", "one", "two", "three", "small", "large"} <= set(answers)


def test_existence_share_sets_the_rate_of_existence_questions_in_train_only():
    natural, weighted = ShapesSource("train"), ShapesSource("train", existence_share=0.6)
    existence_only = 0
    for index in range(400):
        full, record = natural[index], weighted[index]
        assert record["caption"] == full["caption"] and record["objects"] == full["objects"]
        kinds = {q.startswith("is there") for q, _ in record["qa"]}
        assert len(kinds) == 1  # one kind per record: a pair drawn from it is existence at the set rate
        existence_only += kinds == {True}
        # The same questions as the natural record's, split by kind (the "no" ones drawn the same way).
        assert all(pair in full["qa"] for pair in record["qa"])
        assert {tuple(p) for p in full["qa"] if p[0].startswith("is there") in kinds} == {
            tuple(p) for p in record["qa"]}
    assert abs(existence_only / 400 - 0.6) < 4 * (0.6 * 0.4 / 400) ** 0.5
    assert ShapesSource("train", existence_share=0.0)[3]["qa"] == natural[3]["qa"]
    with pytest.raises(ValueError, match="existence_share"):
        ShapesSource(existence_share=1.5)


def test_existence_share_leaves_evaluation_splits_alone_and_bad_values_name_the_key():
    from sora_jax.data.config import data_config
    from sora_jax.data.datasets import open_dataset
    from sora_jax.data.errors import DataError
    cfg = data_config()
    cfg.shapes.existence_share = 1.0
    train, _, _ = open_dataset("shapes", "train", cfg, None)
    validation, _, _ = open_dataset("shapes", "validation", cfg, None)
    assert all(q.startswith("is there") for q, _ in train[0]["qa"])
    assert validation[0]["qa"] == ShapesSource("validation")[0]["qa"]
    cfg.shapes.existence_share = -0.1
    with pytest.raises(DataError, match="data.shapes.*existence_share must be in"):
        open_dataset("shapes", "train", cfg, None)


@pytest.mark.parametrize("label_kind", ["shape", "count"])
def test_labels(label_kind):
    source = ShapesSource(label_kind=label_kind)
    names = shapes.label_names(label_kind)
    assert len(names) == 3
    labels = set()
    for index in range(100):
        record = source[index]
        objects = record["objects"]
        if label_kind == "count":
            expected = len(objects) - 1
        else:
            largest = next((o for o in objects if o["size"] == "large"), objects[0])
            expected = SHAPES.index(largest["shape"])
        assert record["label"] == expected and record["label_name"] == names[expected]
        labels.add(record["label"])
    assert labels == {0, 1, 2}


def test_object_labels_and_single_object_scenes():
    """label_kind="object": colour x shape of the largest object (the text-to-image judge's classes);
    max_objects=1: scenes of one object, captioned by it alone."""
    names = shapes.label_names("object")
    assert len(names) == len(COLORS) * len(SHAPES) and names[0] == f"{COLORS[0]} {SHAPES[0]}"
    source = ShapesSource("train", image_size=16, label_kind="object", max_objects=1)
    seen = set()
    for index in range(200):
        record = source[index]
        (obj,) = record["objects"]
        assert record["label"] == COLORS.index(obj["color"]) * len(SHAPES) + SHAPES.index(obj["shape"])
        assert record["label_name"] == f"{obj['color']} {obj['shape']}"
        assert record["caption"] == f"a {obj['size']} {obj['color']} {obj['shape']}"
        seen.add(record["label"])
    assert len(seen) == len(names)
    # The default (up to three objects) is unchanged by the option's existence.
    assert ShapesSource("train", image_size=16)[5]["caption"] == ShapesSource("train", image_size=16,
                                                                               max_objects=3)[5]["caption"]
    with pytest.raises(ValueError, match="max_objects"):
        ShapesSource(max_objects=4)


# ---------------------------------------------------------------- shapes: held-out combinations


def test_holdout_combinations_never_reach_train_or_validation():
    for split in ("train", "validation"):
        source = ShapesSource(split, holdout=HOLDOUT)
        for index in range(300):
            record = source[index]
            assert not combos(record) & set(HOLDOUT), (split, index)
            asked = " ".join(q for q, _ in record["qa"])
            assert "red triangle" not in asked and "blue circle" not in asked


def test_holdout_split_always_contains_a_held_out_combination():
    source = ShapesSource("holdout", holdout=HOLDOUT)
    assert len(source) == 1000
    seen = set()
    for index in range(200):
        record = source[index]
        assert record["_file"] == "shapes:holdout"
        seen |= combos(record) & set(HOLDOUT)
        assert combos(record) & set(HOLDOUT), index
    assert seen == set(HOLDOUT)


def test_holdout_order_does_not_matter():
    a = ShapesSource("holdout", holdout=HOLDOUT)
    b = ShapesSource("holdout", holdout=list(reversed(HOLDOUT)) + [HOLDOUT[0]])
    for index in range(10):
        assert_same_record(a[index], b[index])


# ---------------------------------------------------------------- digits


def test_digits_split_sizes_cover_the_dataset_once():
    train, validation = DigitsSource("train"), DigitsSource("validation")
    assert (len(train), len(validation)) == (1617, 180)
    together = np.concatenate([train.indices, validation.indices])
    np.testing.assert_array_equal(np.sort(together), np.arange(1797))
    assert np.all(validation.indices % 10 == 0)


@pytest.mark.parametrize("image_size", [8, 32, 64])
def test_digits_records(image_size):
    from sklearn.datasets import load_digits

    targets = load_digits().target
    source = DigitsSource("validation", image_size=image_size)
    for index in (0, 1, 57, 179):
        record = source[index]
        assert RECORD_KEYS <= record.keys()
        image = record["image"]
        assert image.dtype == np.uint8 and image.shape == (image_size, image_size, 3)
        assert image.max() > 200 and image.min() < 30  # the full 0..255 range is used
        np.testing.assert_array_equal(image[..., 0], image[..., 1])
        np.testing.assert_array_equal(image[..., 0], image[..., 2])
        label = int(targets[10 * index])
        word = digits.NUMBER_WORDS[label]
        assert (record["label"], record["label_name"]) == (label, word)
        assert record["caption"] == f"a handwritten {word}"
        assert record["qa"] == [["what digit is this?", word]]
        assert (record["_file"], record["_record"]) == ("digits:validation", index)
    assert_same_record(source[3], DigitsSource("validation", image_size=image_size)[3])


def test_digits_8x8_keeps_the_original_pixels():
    images, _ = digits.load_digit_images()
    record = DigitsSource("train", image_size=8)[0]  # train record 0 is dataset image 1
    np.testing.assert_array_equal(record["image"][..., 0], images[1])
    assert images.max() == 255


def test_digits_errors():
    with pytest.raises(ValueError, match="test"):
        DigitsSource("test")
    with pytest.raises(IndexError):
        DigitsSource("validation")[180]
