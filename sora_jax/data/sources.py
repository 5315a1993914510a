"""Random-access data sources (grain's `__len__` / `__getitem__` protocol) over files.

Each record is a dict with the file's fields plus provenance: "_file" (path) and "_record"
(1-based line number for line-oriented files, 0-based index otherwise), so any later error
can name where the bad record came from. Line-oriented files are indexed once (byte offsets
of non-empty lines) and read by seeking, so large files are not held in memory.
"""

from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np

from sora_jax.data.errors import DataError
from sora_jax.data.images import is_image_file
from sora_jax.data.records import decode_record


def expand_paths(pattern: str, *, suffixes=None) -> list[str]:
    """A file, a directory (its files, sorted) or a glob; comma-separated lists allowed."""
    paths = []
    for part in [p for p in pattern.split(",") if p]:
        if os.path.isdir(part):
            found = sorted(os.path.join(part, f) for f in os.listdir(part) if not f.startswith("."))
            paths += [f for f in found if os.path.isfile(f) and (suffixes is None or f.endswith(tuple(suffixes)))]
        else:
            matches = sorted(glob.glob(part))
            if not matches:
                raise DataError("no such file or directory", file=part)
            paths += matches
    if not paths:
        raise DataError("no data files found", file=pattern)
    return paths


class _LineIndexed:
    """Shared machinery: file, byte range and line number of every non-empty line, in numpy
    arrays (compact, cheap to send to worker processes). Reads use os.pread on a file
    descriptor opened once per process: no seek, so concurrent reader threads are safe."""

    def __init__(self, paths: list[str], skip_header: bool = False):
        self._paths = list(paths)
        files, starts, ends, lines = [], [], [], []
        for file_index, path in enumerate(self._paths):
            with open(path, "rb") as f:
                offset = 0
                for line_no, line in enumerate(f, start=1):
                    if line.strip() and not (skip_header and line_no == 1):
                        files.append(file_index)
                        starts.append(offset)
                        ends.append(offset + len(line))
                        lines.append(line_no)
                    offset += len(line)
        self._file = np.asarray(files, np.int32)
        self._start = np.asarray(starts, np.int64)
        self._end = np.asarray(ends, np.int64)
        self._line = np.asarray(lines, np.int64)
        self._fds = {}

    def __getstate__(self):  # file descriptors do not travel to worker processes
        return {**self.__dict__, "_fds": {}}

    def __len__(self):
        return len(self._line)

    def _read_line(self, index):
        if not 0 <= index < len(self._line):
            raise IndexError(index)
        path, line_no = self._paths[self._file[index]], int(self._line[index])
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        start = int(self._start[index])
        raw = os.pread(fd, int(self._end[index]) - start, start)
        try:
            return raw.decode("utf-8").rstrip("\r\n"), path, line_no
        except UnicodeDecodeError as e:
            raise DataError(f"not valid UTF-8 ({e.reason} at byte {e.start})", file=path, record=line_no) from None


class JsonlSource(_LineIndexed):
    """JSON Lines: one JSON object per line."""

    def __init__(self, pattern: str):
        super().__init__(expand_paths(pattern, suffixes=(".jsonl", ".json")))

    def __getitem__(self, index):
        line, path, line_no = self._read_line(index)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg} at column {e.colno})", file=path, record=line_no) from None
        if not isinstance(record, dict):
            raise DataError(f"expected a JSON object, got {type(record).__name__}", file=path, record=line_no)
        return {**record, "_file": path, "_record": line_no}


class TsvSource(_LineIndexed):
    """Tab-separated values with a header row naming the fields."""

    def __init__(self, pattern: str):
        paths = expand_paths(pattern, suffixes=(".tsv", ".txt"))
        self._columns = {}
        for path in paths:
            try:
                with open(path, encoding="utf-8") as f:
                    self._columns[path] = next(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), None) or []
            except UnicodeDecodeError as e:
                raise DataError(f"header is not valid UTF-8 ({e.reason})", file=path, record=1) from None
            _check_header(self._columns[path], path)
        super().__init__(paths, skip_header=True)

    def __getitem__(self, index):
        line, path, line_no = self._read_line(index)
        values = next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))  # quotes are text
        columns = self._columns[path]
        if len(values) != len(columns):
            raise DataError(f"expected {len(columns)} tab-separated columns ({', '.join(columns)}), "
                            f"got {len(values)}", file=path, record=line_no)
        return {**dict(zip(columns, values)), "_file": path, "_record": line_no}


def _check_header(columns, path):
    """The header row must name fields: a JSON line is not a header."""
    first = columns[0].lstrip() if columns else ""
    if first.startswith(("{", "[")):
        raise DataError(f"header column {columns[0][:60]!r} is not a field name (the first line must be "
                        f"tab-separated field names; is this a TSV file?)", file=path, record=1)
    repeated = sorted({name for name in columns if name and columns.count(name) > 1})
    if repeated:
        raise DataError(f"header names {', '.join(repeated)} more than once", file=path, record=1)


class TextSource(_LineIndexed):
    """Plain text: one document per non-empty line (mode="line") or per file (mode="file"),
    as {"text": ...}."""

    def __init__(self, pattern: str, mode: str = "line"):
        if mode not in ("line", "file"):
            raise ValueError(f"text mode must be 'line' or 'file', got {mode!r}")
        self._mode = mode
        paths = expand_paths(pattern)
        if mode == "file":
            self._files = paths
        else:
            super().__init__(paths)

    def __len__(self):
        return len(self._files) if self._mode == "file" else super().__len__()

    def __getitem__(self, index):
        if self._mode == "line":
            line, path, line_no = self._read_line(index)
            return {"text": line, "_file": path, "_record": line_no}
        path = self._files[index]
        try:
            with open(path, encoding="utf-8") as f:
                return {"text": f.read(), "_file": path, "_record": 0}
        except UnicodeDecodeError as e:
            raise DataError(f"not valid UTF-8 ({e.reason} at byte {e.start})", file=path) from None


class ImageFolderSource:
    """A folder of images with their fields, in either layout:

      * metadata.jsonl (one object per image with "file_name" and any fields, e.g. "caption",
        "label") or metadata.tsv (header row with a file_name column), as Hugging Face's imagefolder;
      * one sub-folder per class (label = index of the sorted class name, label_name = the name).

    Records hold the encoded image bytes under "image"; decoding happens in the task builder.
    """

    def __init__(self, root: str):
        if not os.path.isdir(root):
            raise DataError("image folder not found", file=root)
        self._root = root
        self._items = []  # (image path, fields, provenance file, provenance record)
        jsonl, tsv = os.path.join(root, "metadata.jsonl"), os.path.join(root, "metadata.tsv")
        if os.path.exists(jsonl) or os.path.exists(tsv):
            meta = JsonlSource(jsonl) if os.path.exists(jsonl) else TsvSource(tsv)
            for i in range(len(meta)):
                record = meta[i]
                name = record.get("file_name")
                if not isinstance(name, str) or not name:
                    raise DataError("missing 'file_name'", file=record["_file"], record=record["_record"],
                                    field="file_name")
                fields = {k: v for k, v in record.items() if k not in ("file_name", "_file", "_record")}
                self._items.append((os.path.join(root, name), fields, record["_file"], record["_record"]))
        else:
            classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
            if not classes:
                raise DataError("no metadata.jsonl, metadata.tsv or class sub-folders", file=root)
            self.class_names = classes
            for label, name in enumerate(classes):
                folder = os.path.join(root, name)
                for f in sorted(os.listdir(folder)):
                    path = os.path.join(folder, f)
                    if is_image_file(path):
                        self._items.append((path, {"label": label, "label_name": name}, path, 0))

    def __len__(self):
        return len(self._items)

    def __getitem__(self, index):
        path, fields, prov_file, prov_record = self._items[index]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise DataError(f"cannot read image {path} ({e.strerror})", file=prov_file, record=prov_record,
                            field="image") from None
        return {**fields, "image": data, "_file": prov_file, "_record": prov_record}


class ArrayRecordSource:
    """ArrayRecord shards written by `python -m sora_jax.data.prepare` (msgpack records)."""

    def __init__(self, pattern: str):
        import grain  # deferred: only this source needs array_record

        self._paths = expand_paths(pattern, suffixes=(".array_record",))
        self._shards = [grain.sources.ArrayRecordDataSource([path]) for path in self._paths]
        self._starts = np.cumsum([0] + [len(s) for s in self._shards])  # first global index of each shard

    def __len__(self):
        return int(self._starts[-1])

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        local = int(index - self._starts[shard])
        try:
            record = decode_record(self._shards[shard][local])
        except Exception as e:  # a corrupt shard: say which
            raise DataError(f"undecodable record ({type(e).__name__})", file=self._paths[shard], record=local) from None
        return {**record, "_file": self._paths[shard], "_record": local}


FORMATS = {"jsonl": JsonlSource, "tsv": TsvSource, "text": TextSource, "images": ImageFolderSource,
           "array_record": ArrayRecordSource}


def open_source(fmt: str, path: str, **kwargs):
    if fmt not in FORMATS:
        raise DataError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}", file=path)
    return FORMATS[fmt](path, **kwargs)
