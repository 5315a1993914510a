"""Bad-input errors for data: every message names the file and the record (or line), and the field."""

from __future__ import annotations

ON_ERROR = ("raise", "skip")


class DataError(ValueError):
    """A data record or file is unusable. str() is one line: "FILE:RECORD: field 'x': what is wrong"."""

    def __init__(self, message: str, *, file: str | None = None, record: int | None = None,
                 field: str | None = None):
        self.file, self.record, self.field, self.reason = file, record, field, message
        if file == "config" and field:  # a bad experiment setting: name the key the user types
            text = f"config key {field}: {message}"
        else:
            where = (file or "<data>") + (f":{record}" if record is not None else "")
            text = f"{where}: field {field!r}: {message}" if field else f"{where}: {message}"
        super().__init__(text.replace("\n", " "))


def where_of(record) -> dict:
    """The provenance keys a source attaches to each record (see sources.py)."""
    return {"file": record.get("_file"), "record": record.get("_record")}
