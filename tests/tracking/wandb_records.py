"""Read W&B's offline transaction log (``run-*.wandb``) without wandb's internals, which
moved between releases: the file is a LevelDB-style log of protobuf ``Record``s."""
from __future__ import annotations

import struct
from pathlib import Path

_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def raw_records(path: Path | str) -> list[bytes]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, buf, out = _HEADER, b"", []
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # the rest of a block too small for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        pos += _HEADER
        chunk = data[pos:pos + length]
        pos += length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            buf = chunk
        elif kind == _MIDDLE:
            buf += chunk
        elif kind == _LAST:
            out.append(buf + chunk)
            buf = b""
    return out


def records(path: Path | str):
    """The ``wandb_internal_pb2.Record`` messages of one offline run, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    for data in raw_records(path):
        rec = pb.Record()
        rec.ParseFromString(data)
        yield rec


def run_summary(run_dir: Path | str) -> dict:
    """group, job_type, tags, exit code, history keys and summary values of the offline run
    in ``run_dir``."""
    (f,) = Path(run_dir).glob("*.wandb")
    info = {"group": None, "job_type": None, "tags": [], "exit": None, "keys": set(), "summary": {}}
    for rec in records(f):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            info.update(group=rec.run.run_group, job_type=rec.run.job_type, tags=list(rec.run.tags))
        elif kind == "exit":
            info["exit"] = rec.exit.exit_code
        elif kind == "history":
            info["keys"].update(i.key or "/".join(i.nested_key) for i in rec.history.item)
        elif kind == "summary":
            info["summary"].update({i.key or "/".join(i.nested_key): i.value_json for i in rec.summary.update})
    return info
