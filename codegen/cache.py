"""The kernel cache's size: entries, a limit, least-recently-used eviction.

An entry is one kernel: its source ``k_<key>.py`` and the files Numba keeps
for it in ``__pycache__`` (``k_<key>.*``).  Using an entry sets its source's
access time (never its modification time: Numba before 0.68 stamps its
cache with the source's mtime), so an entry's last use is the later of the
two.  Numba files whose source is gone form an entry of their own.  After a
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
import math
import os
import time
import warnings
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
        value = math.nan
    size = int(value * _UNITS[unit]) if unit in _UNITS and math.isfinite(value) and value >= 0 else -1
    if size < 0 or (size == 0 and value != 0):
        raise ValueError(f"SYMJAC_CACHE_MAX must be a size such as 300M, 2G or a number of bytes (0: no limit), "
                         f"got {text!r}")
    return size


_WARNED = set()


def _setting(name, parse, default):
    """An environment setting; a malformed one warns once and gives the default
    (a bad cache setting must not fail the kernel that was just written)."""
    env = os.environ.get(name)
    if not env:
        return default
    try:
        return parse(env)
    except ValueError as e:
        if env not in _WARNED:
            _WARNED.add(env)
            warnings.warn(f"symjac: {e}; using the default", RuntimeWarning, stacklevel=3)
        return default


def _seconds(text):
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"SYMJAC_CACHE_GRACE must be a number of seconds, got {text!r}")
    return value


def limit_bytes():
    return _setting("SYMJAC_CACHE_MAX", parse_size, DEFAULT_MAX)


def grace_seconds():
    return _setting("SYMJAC_CACHE_GRACE", _seconds, DEFAULT_GRACE)


def touch(path):
    """Mark the entry of kernel file ``path`` as used now (its access time)."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))


def _last_use(st):
    return max(st.st_atime, st.st_mtime)


def entries(root):
    """{stem: (last use, bytes, [files])} of the kernels in cache directory ``root``."""
    root = Path(root)
    found = {}
    with contextlib.suppress(OSError):
        for e in os.scandir(root):
            if e.name.startswith("k_") and e.name.endswith(".py") and e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                found[e.name[:-3]] = [_last_use(st), st.st_size, [Path(e.path)]]
    with contextlib.suppress(OSError):
        for e in os.scandir(root / "__pycache__"):
            stem = e.name.split(".", 1)[0]
            if stem.startswith("k_") and e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                if stem not in found:  # Numba's files of an evicted source (a compile that ended late)
                    found[stem] = [_last_use(st), 0, [None]]
                else:
                    found[stem][0] = max(found[stem][0], _last_use(st))
                found[stem][1] += st.st_size
                found[stem][2].append(Path(e.path))
    return {k: tuple(v) for k, v in found.items()}


def info(root):
    """(entries, files, bytes) in ``root``."""
    es = entries(root)
    return len(es), sum(len([x for x in f if x is not None]) for _, _, f in es.values()), \
        sum(b for _, b, _ in es.values())


def _remove(files):
    for f in files:
        if f is not None:
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
    if sum(b for _, b, _ in es.values()) <= limit:
        return 0
    evicted = 0
    with _exclusive(root) as mine:
        if not mine:
            return 0
        es = entries(root)  # again, under the lock
        total = sum(b for _, b, _ in es.values())
        for stem, (used, size, files) in sorted(es.items(), key=lambda kv: kv[1][0]):
            if total <= limit:
                break
            if now - used < grace:
                break  # the rest were used more recently still
            if files[0] is not None:
                with contextlib.suppress(OSError):
                    if now - _last_use(os.stat(files[0])) < grace:
                        continue  # used since the snapshot: another process is loading it
            _remove(files[1:] + files[:1])
            total -= size
            evicted += 1
    return evicted
