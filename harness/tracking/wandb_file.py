"""Read a W&B offline run file (``run-<id>.wandb``) back into wandb's own protobuf records.

The W&B adapter asks it which steps an earlier attempt's file really holds: wandb-core writes the file from
a buffer (every ``x_transaction_log_flush_interval`` seconds, 15 by default), so a process killed before a
flush leaves less on disk than it logged, and a resumed run must send those rows again. The tests read runs
back with it too.

wandb >= 0.20 no longer ships a Python reader (wandb-core writes the file); the format is wandb's LevelDB-style
log: a 7-byte header (":W&B", magic 0xBEE1, version), then 32 KiB blocks of chunks, each with a CRC-32 of its
type byte and data, a 16-bit length and a type (full, first, middle, last). The chunks are checked and joined
(a torn tail, where the writer died, ends the read), and each record is parsed with
``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: Path):
    data = Path(path).read_bytes()
    if len(data) < 7:
        return
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):  # the padding at a block's end
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            return  # a torn tail: the writer died here
        pos += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def read_run(run_file: Path) -> dict:
    """{"run": RunRecord, "history": [{key: value}], "summary": {key: value}} of one offline run file."""
    # lazy: optional dependency (the trackers extra)
    from wandb.proto import wandb_internal_pb2 as pb

    out = {"run": None, "history": [], "summary": {}}
    for raw in raw_records(run_file):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = pb.RunRecord()
            out["run"].CopyFrom(record.run)
        elif kind == "history":
            out["history"].append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
        elif kind == "summary":
            out["summary"].update(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.summary.update}
            )
    return out


def offline_runs(run_dir: Path, run_id: str = "*") -> list:
    """Every offline run file under ``<run dir>/wandb/``, oldest first (a resumed run adds one)."""
    return sorted(Path(run_dir).glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))


def last_step(files) -> int:
    """The last history step the files hold (-1: none)."""
    steps = [int(row["_step"]) for f in files for row in read_run(f)["history"] if "_step" in row]
    return max(steps, default=-1)
