"""Native CPU kernels, compiled on first use with the machine's C compiler and cached by content.

`load(name)` returns the `ctypes.CDLL` of `kernels/<name>.c`, or None where no kernel can be had (no compiler,
a failed build, a non-CPU-native platform, or `WORKBENCH_KERNELS=off`); callers then use their torch path and
the reason is logged once. Builds are keyed by the source, the compiler's version, the flags and the CPU's
instruction-set flags (`-march=native`), written atomically under `<model cache>/_kernels/`, so two processes
building at once both end with the same file and a home shared by different CPUs never loads a foreign binary.
OpenMP: the library is loaded after torch, so its `libgomp.so.1` resolves to the copy torch already runs on
(one thread pool, no oversubscription).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch  # noqa: F401  (loaded first: the kernels share torch's OpenMP runtime)

from workbench.core.paths import model_cache_dir

SOURCE_DIR = Path(__file__).resolve().parent
ENV_SWITCH = "WORKBENCH_KERNELS"  # "off" disables every kernel
FLAGS = ("-O3", "-std=c11", "-ffp-contract=fast", "-fno-math-errno", "-fPIC", "-shared")  # c11 alone turns FMA off
_LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()
_LOADED: dict[str, ctypes.CDLL | None] = {}
_WHY: dict[str, str] = {}


def disabled() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() in {"0", "off", "false", "no"}


def why_unavailable(name: str) -> str | None:
    """Why `load(name)` returned None (after it did), else None."""
    return _WHY.get(name)


def load(name: str) -> ctypes.CDLL | None:
    """The compiled kernel library `name` (built once per machine), or None with the reason logged once."""
    if disabled():
        return None
    with _LOCK:
        if name not in _LOADED:
            try:
                _LOADED[name] = ctypes.CDLL(str(_build(name)))
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                _LOADED[name], _WHY[name] = None, str(exc)
                _LOG.warning("The native kernel %r is unavailable (%s); the torch path is used instead (slower). "
                             "Install a C compiler (cc, or set CC) to build it, or set %s=off to silence this.",
                             name, exc, ENV_SWITCH)
        return _LOADED[name]


def _compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("no C compiler found (cc, gcc or clang on PATH, or $CC)")
    return cc


def _arch_flags() -> tuple[str, ...]:
    machine = platform.machine().lower()
    if machine in {"x86_64", "amd64", "i686"}:
        return ("-march=native",)
    if machine in {"arm64", "aarch64"}:
        return ("-mcpu=native",)
    return ()


def _cpu_signature() -> str:
    """What the CPU can execute: /proc/cpuinfo's flag line(s) on Linux, else the processor's name."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = sorted({ln.split(":", 1)[1].strip() for ln in lines if ln.split(":")[0].strip() in {"flags",
                                                                                                "Features"}})
        if flags:
            return "|".join(flags)
    except OSError:
        pass
    return f"{platform.processor()}|{platform.machine()}"


def _version(cc: str) -> str:
    done = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
    return (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else cc


def _build(name: str) -> Path:
    source = SOURCE_DIR / f"{name}.c"
    if not source.is_file():
        raise RuntimeError(f"no kernel source {source}")
    cc = _compiler()
    variants = [(*FLAGS, *_arch_flags(), "-fopenmp"), (*FLAGS, *_arch_flags()), FLAGS]  # best first
    common = [source.read_bytes(), _version(cc).encode(), _cpu_signature().encode(), platform.platform().encode()]
    errors = []
    for flags in variants:
        key = hashlib.sha256(b"\0".join([*common, " ".join(flags).encode()])).hexdigest()
        target = model_cache_dir() / "_kernels" / f"{name}-{key[:20]}.so"
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            done = subprocess.run([cc, *flags, "-o", tmp, str(source), "-lm"], capture_output=True, text=True,
                                  timeout=300)
            if done.returncode == 0:
                os.replace(tmp, target)
                return target
            errors.append(f"{cc} {' '.join(flags)}: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError("the build failed: " + "; ".join(errors))
