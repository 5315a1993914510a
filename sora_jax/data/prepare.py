"""Convert JSON Lines, TSV, text files or an image folder into ArrayRecord shards + a manifest,
so large datasets are read by random access instead of being parsed every epoch.

    python -m sora_jax.data.prepare --format=jsonl --input=data/train.jsonl --output=data/train_ar
    python -m sora_jax.data.prepare --format=images --input=photos/ --output=data/photos_ar --num_shards=8
    python -m sora_jax.data.prepare --format=text --input=corpus/ --text_mode=file --output=data/corpus_ar \
        --train_sentencepiece=8000

Output: DIR/data-00000-of-0000N.array_record, DIR/manifest.json (counts, fields, tokenizer) and,
if a tokenizer was given or trained, DIR/tokenizer/. Bad input exits with code 2 and one line
naming the file and record; with --on_error=skip bad records are left out and counted. The
output is written to a temporary folder and renamed at the end; an existing output is never
overwritten.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys

from sora_jax.data.errors import ON_ERROR, DataError
from sora_jax.data.images import decode_image, resolve_image_path
from sora_jax.data.records import encode_record
from sora_jax.data.sources import FORMATS, open_source

MANIFEST = "manifest.json"
RECORD_FORMAT = "sora_jax.records/1"  # msgpack dicts, see sora_jax/data/records.py
_SOURCE_FORMATS = tuple(f for f in FORMATS if f != "array_record")
MAX_SHARDS = 64


def _field_type(value) -> str:
    return {str: "text", bytes: "bytes", bool: "bool", int: "int", float: "float", list: "list",
            dict: "dict"}.get(type(value), type(value).__name__)


def _validate(record: dict, image_fields) -> dict:
    for field in image_fields:
        if field in record:
            decode_image(record[field], file=record.get("_file"), record=record.get("_record"), field=field)
            if isinstance(record[field], str):  # store the image itself: shards must be self-contained
                with open(resolve_image_path(record[field], record.get("_file")), "rb") as f:
                    record = {**record, field: f.read()}
    for key, value in record.items():
        if isinstance(value, str) and not key.startswith("_") and not value.strip():
            raise DataError("empty text", file=record.get("_file"), record=record.get("_record"), field=key)
    return record


def _text_values(record: dict):
    for key, value in record.items():
        if isinstance(value, str) and not key.startswith("_"):
            yield value


def prepare(fmt: str, input_path: str, output: str, *, num_shards: int = 0, text_mode: str = "line",
            on_error: str = "raise", tokenizer: str = "", train_sentencepiece: int = 0, sentencepiece_type: str = "bpe",
            image_fields=("image",), log=print) -> dict:
    """Returns the manifest. Raises DataError on bad input (nothing is written then)."""
    from array_record.python.array_record_module import ArrayRecordWriter

    if fmt not in _SOURCE_FORMATS:
        raise DataError(f"--format must be one of {', '.join(_SOURCE_FORMATS)}, got {fmt!r}", file="flags")
    if on_error not in ON_ERROR:
        raise DataError(f"--on_error must be one of {', '.join(ON_ERROR)}", file="flags")
    if not 0 <= num_shards <= MAX_SHARDS:
        raise DataError(f"--num_shards must be 1..{MAX_SHARDS} (0: one per 10,000 records), got {num_shards}",
                        file="flags")
    if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
        raise DataError("output already exists; refusing to overwrite it (choose a new --output)", file=output)
    source = open_source(fmt, input_path, **({"mode": text_mode} if fmt == "text" else {}))
    if not len(source):
        raise DataError("no records (an empty input)", file=input_path)
    if num_shards > len(source):
        raise DataError(f"--num_shards {num_shards} is more than the {len(source)} record(s): some shards would be "
                        "empty", file=input_path)
    num_shards = num_shards or max(1, min(MAX_SHARDS, len(source) // 10_000))
    temp = f"{output.rstrip(os.sep)}.partial-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    try:
        os.makedirs(temp)
    except OSError as e:  # e.g. a file where a parent folder should be
        raise DataError(f"cannot create the output folder ({e.strerror})", file=output) from None
    try:
        names = [f"data-{i:05d}-of-{num_shards:05d}.array_record" for i in range(num_shards)]
        writers = [ArrayRecordWriter(os.path.join(temp, n), "group_size:1") for n in names]
        count = skipped = 0
        fields: dict[str, str] = {}
        texts = []
        for index in range(len(source)):
            try:
                record = _validate(source[index], image_fields)
            except DataError:
                if on_error == "skip":
                    skipped += 1
                    continue
                raise
            writers[index * num_shards // len(source)].write(encode_record(record))  # sizes differ by <= 1
            count += 1
            for key, value in record.items():
                if not key.startswith("_"):
                    fields.setdefault(key, _field_type(value))
            if train_sentencepiece and len(texts) < 200_000:
                texts.extend(_text_values(record))
        for w in writers:
            w.close()
        if not count:
            raise DataError(f"no usable records (all {skipped} skipped as bad)", file=input_path)
        tokenizer_dir = None
        if train_sentencepiece or tokenizer:
            from sora_jax.data.tokenizers import make_tokenizer, train_sentencepiece as train_spm
            tokenizer_dir = "tokenizer"
            target = os.path.join(temp, tokenizer_dir)
            tok = (train_spm(texts, train_sentencepiece, target, model_type=sentencepiece_type) if train_sentencepiece
                   else make_tokenizer(tokenizer))
            tok.save(target)
        manifest = {"format": RECORD_FORMAT, "source": os.path.abspath(input_path), "source_format": fmt,
                    "count": count, "skipped": skipped, "shards": names, "fields": fields,
                    "tokenizer": tokenizer_dir, "created": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        with open(os.path.join(temp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
        if os.path.isdir(output):
            os.rmdir(output)  # empty (checked above)
        os.rename(temp, output)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    log(f"wrote {count} records in {num_shards} shard(s) to {output}" +
        (f"; skipped {skipped} bad record(s)" if skipped else ""))
    return manifest


class _OneLineErrors(argparse.ArgumentParser):
    """A bad flag is one line on stderr and exit code 2, as everywhere else (not argparse's usage)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def main(argv=None) -> int:
    parser = _OneLineErrors(prog="python -m sora_jax.data.prepare", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=_SOURCE_FORMATS)
    parser.add_argument("--input", required=True, help="file, directory, glob, or comma-separated list")
    parser.add_argument("--output", required=True, help="new directory for the shards and manifest")
    parser.add_argument("--num_shards", type=int, default=0,
                        help=f"1..{MAX_SHARDS} (default 0: one per 10,000 records)")
    parser.add_argument("--text_mode", default="line", choices=("line", "file"))
    parser.add_argument("--on_error", default="raise", choices=ON_ERROR)
    parser.add_argument("--tokenizer", default="", help="save this tokenizer next to the data (byte, hf:PATH, ...)")
    parser.add_argument("--train_sentencepiece", type=int, default=0, metavar="VOCAB_SIZE",
                        help="train a SentencePiece model on the records' text fields and save it with the data")
    parser.add_argument("--sentencepiece_type", default="bpe", choices=("bpe", "unigram"),
                        help="the trained model's type, as data.sentencepiece_type (default bpe)")
    args = parser.parse_args(argv)
    try:
        prepare(args.format, args.input, args.output, num_shards=args.num_shards, text_mode=args.text_mode,
                on_error=args.on_error, tokenizer=args.tokenizer, train_sentencepiece=args.train_sentencepiece,
                sentencepiece_type=args.sentencepiece_type)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
