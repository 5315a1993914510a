"""File sources and the prepare command (ArrayRecord shards + manifest)."""

import io
import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image

from sora_jax.data import loader
from sora_jax.data.config import data_config
from sora_jax.data.errors import DataError
from sora_jax.data.prepare import MANIFEST, prepare
from sora_jax.data.sources import ArrayRecordSource, ImageFolderSource, JsonlSource, TextSource, TsvSource
from sora_jax.data.tokenizers import ByteTokenizer, load_tokenizer


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def png_bytes(color, size=12):
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def test_jsonl_records_carry_their_place_and_bad_lines_are_named(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"text": "héllo"}\n\n{"text": "two", "n": 2}\n{oops\n[1, 2]\n')
    src = JsonlSource(path)
    assert len(src) == 4  # the blank line is not a record
    assert src[0] == {"text": "héllo", "_file": path, "_record": 1}
    assert src[1]["n"] == 2 and src[1]["_record"] == 3
    with pytest.raises(DataError, match=rf"^{path}:4: invalid JSON"):
        src[2]
    with pytest.raises(DataError, match=rf"^{path}:5: expected a JSON object, got list"):
        src[3]


def test_tsv_and_text_sources(tmp_path):
    tsv = write(tmp_path / "pairs.tsv", "source\ttarget\nhi\tsalut\nbye\tau revoir\nbroken line\n")
    src = TsvSource(tsv)
    assert src[1] == {"source": "bye", "target": "au revoir", "_file": tsv, "_record": 3}
    with pytest.raises(DataError, match=rf"^{tsv}:4: expected 2 tab-separated columns"):
        src[2]
    folder = tmp_path / "docs"
    write(folder / "a.txt", "line one\nline two\n")
    write(folder / "b.txt", "line three\n")
    lines = TextSource(str(folder), mode="line")
    assert [lines[i]["text"] for i in range(len(lines))] == ["line one", "line two", "line three"]
    files = TextSource(str(folder), mode="file")
    assert len(files) == 2 and files[0]["text"] == "line one\nline two\n"
    with pytest.raises(DataError, match="no such file or directory"):
        TextSource(str(tmp_path / "missing*.txt"))


def test_image_folders_with_metadata_or_class_folders(tmp_path):
    meta_dir = tmp_path / "captioned"
    os.makedirs(meta_dir)
    (meta_dir / "red.png").write_bytes(png_bytes("red"))
    write(meta_dir / "metadata.jsonl", '{"file_name": "red.png", "caption": "a red square"}\n'
                                       '{"file_name": "gone.png", "caption": "missing"}\n')
    src = ImageFolderSource(str(meta_dir))
    assert src[0]["caption"] == "a red square" and src[0]["image"] == png_bytes("red")
    with pytest.raises(DataError, match=r"metadata.jsonl:2: field 'image': cannot read image"):
        src[1]
    classes = tmp_path / "classes"
    for name, color in (("cat", "white"), ("dog", "black")):
        os.makedirs(classes / name)
        (classes / name / "1.png").write_bytes(png_bytes(color))
    src = ImageFolderSource(str(classes))
    assert [(src[i]["label"], src[i]["label_name"]) for i in range(2)] == [(0, "cat"), (1, "dog")]


def test_prepare_round_trips_jsonl_and_images(tmp_path):
    records = [{"text": f"record {i}", "label": i % 3, "score": i / 2, "tags": ["a", "b"]} for i in range(25)]
    src = write(tmp_path / "in.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    out = str(tmp_path / "out")
    manifest = prepare("jsonl", src, out, num_shards=3, log=lambda *_: None)
    assert manifest["count"] == 25 and manifest["skipped"] == 0 and len(manifest["shards"]) == 3
    assert manifest["fields"] == {"text": "text", "label": "int", "score": "float", "tags": "list"}
    assert json.load(open(os.path.join(out, MANIFEST))) == manifest
    ar = ArrayRecordSource(out)
    assert len(ar) == 25
    for i, want in enumerate(records):
        got = {k: v for k, v in ar[i].items() if not k.startswith("_")}
        assert got == want
    assert ar[10]["_file"].endswith(".array_record")
    from array_record.python.array_record_module import ArrayRecordReader
    sizes = [ArrayRecordReader(os.path.join(out, name)).num_records() for name in manifest["shards"]]
    assert sizes == [9, 8, 8]  # balanced: no shard more than one record longer than another

    images = tmp_path / "imgs"
    os.makedirs(images)
    for i, color in enumerate(("red", "blue")):
        (images / f"{i}.png").write_bytes(png_bytes(color))
    write(images / "metadata.jsonl", "".join(json.dumps({"file_name": f"{i}.png", "caption": c}) + "\n"
                                             for i, c in enumerate(("red", "blue"))))
    out_img = str(tmp_path / "imgs_ar")
    prepare("images", str(images), out_img, log=lambda *_: None)
    ar = ArrayRecordSource(out_img)
    assert ar[1]["caption"] == "blue" and ar[1]["image"] == png_bytes("blue")


def test_prepared_data_trains_through_the_loader(tmp_path):
    src = write(tmp_path / "pairs.jsonl", "".join(json.dumps({"source": f"q{i}", "target": f"a{i}"}) + "\n"
                                                  for i in range(12)))
    prepare("jsonl", src, str(tmp_path / "ar"), tokenizer="byte", log=lambda *_: None)
    tok = load_tokenizer(str(tmp_path / "ar" / "tokenizer"))
    cfg = ml_collections.ConfigDict({"seed": 0, "data": data_config()})
    cfg.data.update(dict(name="array_record", task="seq2seq", train_path=str(tmp_path / "ar"), batch_size=4,
                         image_size=0, text_len=8, decoder_len=8))
    batch = next(iter(loader.train_dataset(cfg, tok)))
    assert batch["weight"].sum() == 4
    assert {tok.decode(t) for t in batch["text"]} <= {f"q{i}" for i in range(12)}


def test_prepare_skips_and_counts_or_fails_without_writing(tmp_path):
    src = write(tmp_path / "in.jsonl", '{"text": "ok"}\n{"text": ""}\n{bad json\n{"text": "fine"}\n')
    out = str(tmp_path / "out")
    with pytest.raises(DataError, match=r"in.jsonl:2: field 'text': empty text"):
        prepare("jsonl", src, out, log=lambda *_: None)
    assert not os.path.exists(out) and not [p for p in os.listdir(tmp_path) if "partial" in p]
    manifest = prepare("jsonl", src, out, on_error="skip", log=lambda *_: None)
    assert (manifest["count"], manifest["skipped"]) == (2, 2)
    before = sorted(os.listdir(out))
    with pytest.raises(DataError, match="refusing to overwrite"):
        prepare("jsonl", src, out, log=lambda *_: None)
    assert sorted(os.listdir(out)) == before and len(ArrayRecordSource(out)) == 2


@pytest.mark.parametrize("case, message", [
    ("num_shards=-3", r"flags: --num_shards must be 1\.\.64 .*got -3"),
    ("num_shards=1000", r"flags: --num_shards must be 1\.\.64 .*got 1000"),
    ("num_shards=4", r"good.jsonl: --num_shards 4 is more than the 1 record\(s\): some shards would be empty"),
    ("output under a file", r"afile/out: cannot create the output folder \(Not a directory\)"),
    ("empty input", r"empty.jsonl: no records"),
    ("every record skipped", r"bad.jsonl: no usable records \(all 1 skipped as bad\)"),
])
def test_prepare_bad_input_names_the_flag_or_file_and_writes_nothing(tmp_path, case, message):
    good, empty, bad = (write(tmp_path / n, t) for n, t in [("good.jsonl", '{"text": "ok"}\n'), ("empty.jsonl", ""),
                                                             ("bad.jsonl", '{"text": ""}\n')])
    write(tmp_path / "afile", "x")
    out = str(tmp_path / ("afile/out" if case == "output under a file" else "out"))
    kwargs = {"num_shards": int(case.split("=")[1])} if case.startswith("num_shards") else {}
    src = {"empty input": empty, "every record skipped": bad}.get(case, good)
    with pytest.raises(DataError, match=message):
        prepare("jsonl", src, out, on_error="skip", log=lambda *_: None, **kwargs)
    assert sorted(os.listdir(tmp_path)) == ["afile", "bad.jsonl", "empty.jsonl", "good.jsonl"]  # no .partial left


def test_prepare_command_line(tmp_path):
    src = write(tmp_path / "corpus.txt", "".join(f"sentence number {i} about things\n" for i in range(300)))
    out = tmp_path / "corpus_ar"
    cmd = [sys.executable, "-m", "sora_jax.data.prepare", "--format=text", f"--input={src}", f"--output={out}",
           "--train_sentencepiece=300"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "wrote 300 records" in done.stdout
    tok = load_tokenizer(str(out / "tokenizer"))
    assert tok.kind == "sentencepiece" and tok.decode(tok.encode("sentence 7")) == "sentence 7"
    from sentencepiece import sentencepiece_model_pb2
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString((out / "tokenizer" / "spm.model").read_bytes())
    assert model.trainer_spec.model_type == model.trainer_spec.BPE  # data.sentencepiece_type's default
    bad = subprocess.run(cmd[:-1] + [f"--input={tmp_path / 'missing.txt'}", f"--output={tmp_path / 'x'}"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "missing.txt: no such file or directory" in bad.stderr
    flags = subprocess.run(cmd[:3] + ["--format=csv"], capture_output=True, text=True, timeout=120)
    assert flags.returncode == 2 and flags.stderr.strip().count("\n") == 0, flags.stderr  # not argparse's usage
    assert "argument --format: invalid choice: 'csv'" in flags.stderr


def test_a_tsv_header_must_name_fields(tmp_path):
    jsonl = write(tmp_path / "records.jsonl", '{"text": "a"}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=r"records.jsonl:1: header column '\{\"text\": \"a\"\}' is not a field name"):
        TsvSource(jsonl)
    with pytest.raises(DataError, match=r"twice.tsv:1: header names text more than once"):
        TsvSource(write(tmp_path / "twice.tsv", "text\ttext\na\tb\n"))
    assert TsvSource(write(tmp_path / "ok.tsv", "image path\tlabel-2\nx.png\t1\n"))[0]["label-2"] == "1"
    # Spreadsheet exports: any name, and an empty last column.
    assert TsvSource(write(tmp_path / "sheet.tsv", "caption (en)\tid:x\t\nhi\t3\t\n"))[0]["caption (en)"] == "hi"


def test_tsv_quotes_are_text(tmp_path):
    tsv = write(tmp_path / "q.tsv", 'source\ttarget\nhe said "hi"\t"quoted" reply\n')
    assert TsvSource(tsv)[0]["target"] == '"quoted" reply'


def test_image_paths_are_relative_to_their_file_and_prepare_stores_the_bytes(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(png_bytes("lime"))
    src = write(tmp_path / "meta" / "train.jsonl", json.dumps({"image": "../pics/a.png", "caption": "green"}) + "\n")
    from sora_jax.data.schema import ExampleSpec
    from sora_jax.data.tasks import make_builder
    ex = make_builder("caption", ExampleSpec(decoder_len=8, image_size=8), ByteTokenizer())(JsonlSource(src)[0],
                                                                                           np.random.default_rng(0))
    assert ex["image"][..., 1].mean() > 0.99 and ex["image"][..., 0].mean() < -0.99  # (0, 255, 0)
    prepare("jsonl", src, str(tmp_path / "ar"), log=lambda *_: None)
    assert ArrayRecordSource(str(tmp_path / "ar"))[0]["image"] == png_bytes("lime")


def test_array_record_round_trips_arrays_and_nested_values(tmp_path):
    from sora_jax.data.records import decode_record, encode_record
    record = {"image": np.arange(12, dtype=np.uint8).reshape(2, 2, 3), "ids": np.arange(5, dtype=np.int32),
              "qa": [["q?", "a"]], "meta": {"w": 1.5}, "flag": False}
    back = decode_record(encode_record(record))
    np.testing.assert_array_equal(back["image"], record["image"])
    assert back["image"].dtype == np.uint8 and back["ids"].dtype == np.int32
    assert back["qa"] == [["q?", "a"]] and back["meta"] == {"w": 1.5} and back["flag"] is False
