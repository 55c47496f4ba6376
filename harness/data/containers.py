"""Container-level integrity: is a video file shorter than its own header says? (no decoding)

A truncated AVI or WebM still decodes -- the decoder stops at the cut and reports fewer frames, so
the samplers would silently pick other frames than on the complete file (decord gives 11 frames for
the first 50% of a 40-frame AVI). MP4/MOV, AVI and Matroska/WebM all declare sizes up front, so a cut
is found by reading a few header bytes:

* MP4/MOV (ISO BMFF): the top-level boxes (``ftyp``, ``moov``, ``mdat``...) must fit in the file;
* AVI (RIFF): the ``RIFF`` chunk size + 8 must not exceed the file size;
* Matroska/WebM (EBML): the ``Segment`` size must fit (unless written with "unknown size", as live
  streams are).

Valid files always satisfy these, so the check has no false positives; other containers, and damage
that keeps the size (bytes overwritten inside the stream), are left to the decoder.
"""
from __future__ import annotations

import os
import struct
import typing as tp

MP4_TOP_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid", b"moof", b"mfra",
                 b"styp", b"sidx", b"meta"}


def truncation(path: str) -> tp.Optional[str]:
    """Why ``path`` is shorter than its header declares, or None (complete, or a format not checked)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) < 12:
            return None  # too short to have a header: the decoder reports it
        if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
            declared = struct.unpack("<I", head[4:8])[0] + 8
            if declared > size:
                return f"truncated: the RIFF header declares {declared} bytes, the file has {size}"
            return None
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return _matroska(f, size)
        if head[4:8] in MP4_TOP_BOXES:
            return _mp4(f, size)
    return None


def _mp4(f: tp.BinaryIO, size: int) -> tp.Optional[str]:
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        header = f.read(16)
        box_size, kind = struct.unpack(">I", header[:4])[0], header[4:8]
        name = kind.decode("latin-1")
        if box_size == 1:  # 64-bit size follows
            if len(header) < 16:
                return f"truncated: box '{name}' at byte {offset} has no room for its 64-bit size"
            box_size = struct.unpack(">Q", header[8:16])[0]
        elif box_size == 0:  # extends to the end of the file
            return None
        if box_size < 8:
            return f"corrupt: box '{name}' at byte {offset} declares {box_size} bytes"
        if offset + box_size > size:
            return (f"truncated: box '{name}' at byte {offset} declares {box_size} bytes, "
                    f"{size - offset} are left in the file")
        offset += box_size
    return None


def _vint(f: tp.BinaryIO, keep_marker: bool = False) -> tp.Tuple[tp.Optional[int], int, bool]:
    """One EBML variable-length integer: (value, bytes read, all value bits set)."""
    first = f.read(1)
    if not first:
        return None, 0, False
    b = first[0]
    length = 1
    while length <= 8 and not b & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        return None, 1, False
    rest = f.read(length - 1)
    if len(rest) < length - 1:
        return None, 1 + len(rest), False
    value = b if keep_marker else b & (0xFF >> length)
    for byte in rest:
        value = (value << 8) | byte
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return value, length, unknown


def _matroska(f: tp.BinaryIO, size: int) -> tp.Optional[str]:
    f.seek(4)
    header_size, n, _ = _vint(f)
    if header_size is None:
        return "truncated: the EBML header is cut"
    f.seek(4 + n + header_size)
    seg_id, n_id, _ = _vint(f, keep_marker=True)
    if seg_id is None:
        return "truncated: the file ends after the EBML header"
    if seg_id != 0x18538067:
        return None  # not a Matroska segment: let the decoder judge
    seg_size, n_size, unknown = _vint(f)
    if seg_size is None:
        return "truncated: the Segment header is cut"
    if unknown:
        return None  # streamed without a size
    start = 4 + n + header_size + n_id + n_size
    if start + seg_size > size:
        return f"truncated: the Segment declares {start + seg_size} bytes, the file has {size}"
    return None
