"""Helpers the fault tests share: damage a file the way a disk or a stray write would."""

from __future__ import annotations

import os
import struct
from pathlib import Path


def flip_bits(path: Path, *, offset_from_data: int = 64, n: int = 256, mask: int = 0x01, keep_times=False) -> None:
    """XOR `mask` into `n` bytes of a safetensors file's data section (size unchanged)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    start = 8 + header_len + offset_from_data
    for i in range(start, min(start + n, len(data))):
        data[i] ^= mask
    path.write_bytes(bytes(data))
    if keep_times:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
