"""Integrity helpers shared by every store: file checksums, atomic writes, stale temp-file cleanup.

Temp files are `.<final name>.tmp-<pid>`: stale at once under the writers' lock, else when the writer is gone
and older than `STALE_AGE_S`, or older than a day (pids of other namespaces are not visible).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import time
from pathlib import Path

STALE_AGE_S = 15 * 60
ANCIENT_AGE_S = 24 * 3600
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    with open(path, "rb") as fh:
        return sha256_fd(fh)


def sha256_fd(fh) -> str:
    """Hex sha256 of an open binary file, from its start (the position is left at the end)."""
    digest = hashlib.sha256()
    fh.seek(0)
    for block in iter(lambda: fh.read(1 << 22), b""):
        digest.update(block)
    return digest.hexdigest()


def temp_name(final: Path) -> Path:
    """The temp path a writer of `final` uses before renaming it into place."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file, fsync, rename over `path`."""
    tmp = temp_name(path)
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return pid != 0


def is_temp(path: Path) -> bool:
    return _TEMP_RE.match(path.name) is not None


def is_stale_temp(path: Path, *, min_age_s: float = STALE_AGE_S, now: float | None = None) -> bool:
    """True for a temp file whose writer is gone and which is older than `min_age_s` (or than a day)."""
    match = _TEMP_RE.match(path.name)
    if match is None:
        return False
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    pid = int(match.group(1))
    return age > ANCIENT_AGE_S or (age > min_age_s and not (pid == os.getpid() or _pid_alive(pid)))


def remove_temps(directory: Path, *, only_stale: bool) -> list[Path]:
    """Delete temp files/dirs in `directory` (all of them when the caller holds the writers' lock)."""
    removed = []
    try:
        children = list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for child in children:
        if not is_temp(child) or (only_stale and not is_stale_temp(child)):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed.append(child)
    return removed


def safetensors_header(fh) -> dict:
    """The parsed header of an open safetensors file; ValueError unless the file is exactly as long as it says."""
    size = os.fstat(fh.fileno()).st_size
    fh.seek(0)
    try:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > size - 8:
            raise ValueError("header longer than the file")
        header = json.loads(fh.read(n).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        end = 0
        for key, info in header.items():
            if key == "__metadata__":
                continue
            start, stop = info["data_offsets"]
            if not (isinstance(info["shape"], list) and all(isinstance(d, int) for d in info["shape"])):
                raise ValueError(f"tensor {key!r} has no valid shape")
            end = max(end, int(stop), int(start))
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable header ({type(exc).__name__})") from None
    if size != 8 + n + end:
        raise ValueError(f"{size} bytes, header says {8 + n + end} (truncated?)")
    return header
