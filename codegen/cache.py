"""The kernel cache's size: entries, a limit, least-recently-used eviction.

An entry is one kernel: its source ``k_<key>.py`` and the files Numba keeps
for it in ``__pycache__`` (``k_<key>.*``).  Using an entry touches its source
file, so the source's modification time is the entry's last use.  After a
new entry is written, entries are evicted, least recently used first, until
the cache is under ``SYMJAC_CACHE_MAX`` (default 300 MB; ``"500M"``,
``"2G"``, a number of bytes, or ``0`` for no limit).  An entry used in the
last ``SYMJAC_CACHE_GRACE`` seconds (default 60) is never evicted: another
process may be loading it.  A process that has loaded a kernel keeps it in
memory, so evicting its files never breaks a running process; one eviction
at a time per directory (a lock file).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

__all__ = ["limit_bytes", "entries", "info", "clear", "evict", "touch", "parse_size"]

DEFAULT_MAX = 300 << 20
DEFAULT_GRACE = 60.0
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}


def parse_size(text):
    """Bytes in ``text`` ("300M", "2G", "1048576"); raises ValueError naming the setting."""
    t = str(text).strip().upper()
    num = t.rstrip("KMGB")
    unit = t[len(num):]
    try:
        value = float(num)
    except ValueError:
        value = -1
    if value < 0 or unit not in _UNITS:
        raise ValueError(f"SYMJAC_CACHE_MAX must be a size such as 300M, 2G or a number of bytes (0: no limit), "
                         f"got {text!r}")
    return int(value * _UNITS[unit])


def limit_bytes():
    env = os.environ.get("SYMJAC_CACHE_MAX")
    return DEFAULT_MAX if not env else parse_size(env)


def grace_seconds():
    env = os.environ.get("SYMJAC_CACHE_GRACE")
    try:
        return float(env) if env else DEFAULT_GRACE
    except ValueError:
        raise ValueError(f"SYMJAC_CACHE_GRACE must be a number of seconds, got {env!r}") from None


def touch(path):
    """Mark the entry of kernel file ``path`` as used now."""
    with contextlib.suppress(OSError):
        os.utime(path)


def entries(root):
    """{stem: (last use, bytes, [files])} of the kernels in cache directory ``root``."""
    root = Path(root)
    found = {}
    with contextlib.suppress(OSError):
        for e in os.scandir(root):
            if e.name.startswith("k_") and e.name.endswith(".py") and e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                found[e.name[:-3]] = [st.st_mtime, st.st_size, [Path(e.path)]]
    with contextlib.suppress(OSError):
        for e in os.scandir(root / "__pycache__"):
            stem = e.name.split(".", 1)[0]
            if stem in found and e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                found[stem][1] += st.st_size
                found[stem][2].append(Path(e.path))
    return {k: tuple(v) for k, v in found.items()}


def info(root):
    """(entries, files, bytes) in ``root``."""
    es = entries(root)
    return len(es), sum(len(f) for _, _, f in es.values()), sum(b for _, b, _ in es.values())


def _remove(files):
    for f in files:
        with contextlib.suppress(OSError):
            f.unlink()


def clear(root):
    """Remove every kernel entry of ``root``; returns how many.  Processes that
    loaded a kernel keep running it; a later one compiles it again."""
    es = entries(root)
    for _, _, files in es.values():
        _remove(files[1:] + files[:1])  # the source last: an entry is gone once its source is
    return len(es)


@contextlib.contextmanager
def _exclusive(root):
    """True while this process holds the eviction lock of ``root`` (False: another does)."""
    try:
        import fcntl
    except ImportError:  # no flock: evict anyway (files vanish one by one; a loader recompiles)
        yield True
        return
    try:
        fd = os.open(Path(root) / ".evict.lock", os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def evict(root, limit=None, grace=None, now=None):
    """Evict least-recently-used entries of ``root`` until its size is at most
    ``limit`` bytes (entries used within ``grace`` seconds stay); returns the
    number evicted."""
    limit = limit_bytes() if limit is None else limit
    if limit <= 0:
        return 0
    grace = grace_seconds() if grace is None else grace
    now = time.time() if now is None else now
    es = entries(root)
    total = sum(b for _, b, _ in es.values())
    if total <= limit:
        return 0
    evicted = 0
    with _exclusive(root) as mine:
        if not mine:
            return 0
        for stem, (used, size, files) in sorted(es.items(), key=lambda kv: kv[1][0]):
            if total <= limit:
                break
            if now - used < grace:
                break  # the rest were used more recently still
            _remove(files[1:] + files[:1])
            total -= size
            evicted += 1
    return evicted
