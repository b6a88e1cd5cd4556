"""Reads a W&B offline transaction log (run-*.wandb) without a W&B server: the wandb package no longer ships a
Python reader, so this follows the LevelDB-log layout it writes. File header: b":W&B", uint16 magic 0xBEE1,
version byte. Then 32 KiB blocks of records, each: crc32c (4), length (2, LE), type (1: full, 2: first, 3: middle,
4: last), payload; a block tail shorter than a record header is zero padding. Payloads are `Record` protobufs."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1, "not a W&B transaction log"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        block_left = BLOCK - pos % BLOCK
        if block_left < HEADER:
            pos += block_left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        payload = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def history_rows(path: Path) -> list[dict]:
    """The `run.log` rows recorded in the log, as {key: value}."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows
