#!/usr/bin/env python3
"""Writes the crafted checkpoints of fuzz/corpus/checkpoint/crafted_*.ckpt from a valid seed.

Each file is the seed with one header field made hostile and the checksum recomputed, so only the
bounds and type checks stand between it and an out-of-bounds read, an overflow or undefined
behaviour (issue 14 item 2). tests/nn/checkpoint_test.cpp crafts the same cases in C++; tests/capi
loads every crafted_* file here and expects MT_ERR_CHECKPOINT.
    fuzz/make_crafted_checkpoints.py   (rewrites the files from fuzz/corpus/checkpoint/maml_1-4-4-1.ckpt)
"""
import json
import pathlib
import struct

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus" / "checkpoint"
U64 = 2**64


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % U64
    return h


def split(blob: bytes):
    (header_len,) = struct.unpack_from("<Q", blob, 12)
    header = json.loads(blob[20:20 + header_len])
    return blob[:12], header, blob[20 + header_len:-8]


def join(prefix: bytes, header, data: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    body = prefix + struct.pack("<Q", len(text)) + text + data
    return body + struct.pack("<Q", fnv1a(body))


def first(h):
    return h["sections"]["params"][0]


def set_fields(**fields):
    def edit(h):
        first(h).update(fields)
    return edit


def options(h):
    return h["config"]["options"]


CASES = {
    # offset + bytes wraps past 2^64 to a small end: the old check passed and memcpy read before
    # the data block (inside the header).
    "offset_wrap_small": lambda h: first(h).update(offset=U64 - 8),
    "offset_wrap_zero": lambda h: first(h).update(offset=U64 - first(h)["bytes"]),
    "offset_negative": set_fields(offset=-8),
    "offset_float": set_fields(offset=1.5),
    "bytes_huge": set_fields(offset=1, bytes=U64 - 1),
    # A 1 TiB tensor whose offset + bytes wraps to 8: passed the old range check, then allocated.
    "big_tensor_wrap": set_fields(offset=U64 - 2**40, bytes=2**40 + 8, shape=[2**38 + 2]),
    # 2^32 * 2^32 * 4 wraps to 0 bytes.
    "shape_overflow": set_fields(shape=[2**32, 2**32], bytes=0),
    "shape_negative": set_fields(shape=[-4, -1]),
    "generator_word": lambda h: h["generator"]["words"].__setitem__(0, "abc"),
    "step_float": lambda h: h.update(step=1e300),
    # Learner options whose conversion to int was undefined behaviour, and a bogus class count.
    "option_inner_steps": lambda h: options(h).update(inner_steps=1e300),
    "num_classes_negative": lambda h: h["config"].update(task_kind="classification", num_classes=-1),
}


def main():
    prefix, header, data = split((CORPUS / "maml_1-4-4-1.ckpt").read_bytes())
    for name, edit in CASES.items():
        h = json.loads(json.dumps(header))
        edit(h)
        (CORPUS / f"crafted_{name}.ckpt").write_bytes(join(prefix, h, data))
        print(f"wrote crafted_{name}.ckpt")


if __name__ == "__main__":
    main()
