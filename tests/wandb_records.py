"""Read an offline W&B run file (run-*.wandb): a LevelDB-style log of protobuf Records.

W&B 0.31 reads these in Go only; this 20-line reader lets tests check what a run really holds.
"""

import json
import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768  # records never straddle a header across blocks
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # block trailer too small for a header: skip to the next block
            pos += BLOCK - pos % BLOCK
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        pending = payload if kind in (FULL, FIRST) else pending + payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def history(path: Path) -> list[dict[str, str]]:
    """Each logged step as {key: JSON value}, `_step` included."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
    return rows


def logged_table(path: Path, key: str) -> dict:
    """The wandb.Table logged under `key` ({"columns": [...], "data": [[...], ...]}), from the file that the run's
    history points to (files/media/table/... beside the run file)."""
    for row in history(path):
        if f"{key}/path" in row:
            return json.loads((Path(path).parent / "files" / json.loads(row[f"{key}/path"])).read_text())
    raise KeyError(f"no table {key!r} in {path}")


def first_of(path: Path, record_type: str):
    return next(getattr(r, record_type) for r in read_records(path) if r.WhichOneof("record_type") == record_type)
