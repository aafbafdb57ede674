"""The machine a run trains on: its CPU model and cache sizes, and a small per-machine store of
tuned choices, so that tuning follows the machine instead of a constant.

Cache sizes are read, in order, from Linux sysfs (``/sys/devices/system/cpu/cpu0/cache/index*``:
``level``, ``type``, ``size``; one core's caches, so the L2 is per core even where ``lscpu``
prints the total over all cores, e.g. "2 MiB (2 instances)" for two 1 MiB L2s), from glibc's
``getconf LEVEL2_CACHE_SIZE`` (and levels 1 and 3), or from macOS ``sysctl hw.l2cachesize``;
a cache that none of them gives is ``None`` and callers use their own default.

Tuned choices (e.g. the fused BPR-max's row-chunk size, timed once by
:func:`warmrec.models.bpr_max_linear.tune_chunk_bytes`) are kept in ``tuning.json`` in the
user's cache directory (``$WARMREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/warmrec``, else
``~/.cache/warmrec``), keyed by :meth:`CpuInfo.key` (CPU model and cache sizes: virtual machines
often report only "AMD EPYC"). The file holds no data and can be deleted at any time; an
unreadable one is ignored and rewritten.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warmrec.io import atomic_write_text

SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
TUNING_FILE = "tuning.json"


@dataclass(frozen=True)
class CpuInfo:
    """CPU model and one core's cache sizes in bytes (``None`` where unknown)."""

    model: str
    l1d: int | None
    l2: int | None
    l3: int | None
    source: str
    """Where the sizes came from: ``sysfs``, ``getconf``, ``sysctl`` or ``none``."""

    def key(self) -> str:
        """The key of this machine's tuned choices: model and cache sizes."""
        return f"{self.model} | L1d {_fmt(self.l1d)} | L2 {_fmt(self.l2)} | L3 {_fmt(self.l3)}"

    def describe(self) -> str:
        """One line for results files: model, caches (per core; L3 as shared), CPUs."""
        return (
            f"{self.model}; caches L1d {_fmt(self.l1d)}, L2 {_fmt(self.l2)}, L3 {_fmt(self.l3)} "
            f"(per core for L1/L2, from {self.source}); {os.cpu_count()} logical CPUs"
        )


def _fmt(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} B"


def parse_size(text: str) -> int | None:
    """Bytes of a cache size as sysfs writes it (``48K``, ``1024K``, ``32M``, ``1048576``);
    ``None`` when it is not a size."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if not m:
        return None
    shift = {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]
    return int(m.group(1)) << shift


def sysfs_caches(root: Path = SYSFS_CACHE) -> dict[str, int]:
    """``{"l1d": bytes, "l2": ..., "l3": ...}`` from sysfs's cache folders of one CPU (data and
    unified caches only; an instruction cache is skipped); empty when unreadable."""
    out: dict[str, int] = {}
    for d in sorted(root.glob("index*")):
        try:
            level = int((d / "level").read_text())
            kind = (d / "type").read_text().strip()
            size = parse_size((d / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or size is None or not 1 <= level <= 3:
            continue
        out.setdefault("l1d" if level == 1 else f"l{level}", size)
    return out


def _run(cmd: list[str]) -> str | None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def getconf_caches() -> dict[str, int]:
    """Cache sizes from glibc's ``getconf`` (0 or missing entries skipped)."""
    out: dict[str, int] = {}
    for key, name in (("l1d", "LEVEL1_DCACHE_SIZE"), ("l2", "LEVEL2_CACHE_SIZE")):
        val = _run(["getconf", name])
        if val and val.isdigit() and int(val) > 0:
            out[key] = int(val)
    val = _run(["getconf", "LEVEL3_CACHE_SIZE"])
    if val and val.isdigit() and int(val) > 0:
        out["l3"] = int(val)
    return out


def sysctl_caches() -> dict[str, int]:
    """Cache sizes from macOS ``sysctl`` (``hw.l1dcachesize``, ``hw.l2cachesize``, ...)."""
    out: dict[str, int] = {}
    for key, name in (("l1d", "l1dcachesize"), ("l2", "l2cachesize"), ("l3", "l3cachesize")):
        val = _run(["sysctl", "-n", f"hw.{name}"])
        if val and val.isdigit() and int(val) > 0:
            out[key] = int(val)
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s "model name", macOS's brand string, else
    :func:`platform.processor` or the architecture)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    if platform.system() == "Darwin":
        brand = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if brand:
            return brand
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` (read once per process)."""
    caches, source = sysfs_caches(), "sysfs"
    if "l2" not in caches:
        caches, source = getconf_caches(), "getconf"
    if "l2" not in caches and platform.system() == "Darwin":
        caches, source = sysctl_caches(), "sysctl"
    if not caches:
        source = "none"
    return CpuInfo(cpu_model(), caches.get("l1d"), caches.get("l2"), caches.get("l3"), source)


def cache_dir() -> Path:
    """The user's cache directory for warmrec (see the module docstring)."""
    if os.environ.get("WARMREC_CACHE_DIR"):
        return Path(os.environ["WARMREC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "warmrec"


def _read_tuning(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def tuned(name: str, info: CpuInfo | None = None) -> Any | None:
    """The value kept for ``name`` on this machine (``info``'s key), or None."""
    info = info or cpu_info()
    entry = _read_tuning(cache_dir() / TUNING_FILE).get(info.key(), {})
    if isinstance(entry, dict) and isinstance(entry.get(name), dict):
        return entry[name].get("value")
    return None


def remember(name: str, value: Any, info: CpuInfo | None = None, **details: Any) -> Path:
    """Keep ``value`` (and ``details``, e.g. the timings it was chosen from) for ``name`` on this
    machine; returns the file. Written atomically; other machines' entries are kept."""
    info = info or cpu_info()
    path = cache_dir() / TUNING_FILE
    data = _read_tuning(path)
    entry = data.get(info.key())
    entry = entry if isinstance(entry, dict) else {}
    entry[name] = {"value": value, **details}
    data[info.key()] = entry
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path
