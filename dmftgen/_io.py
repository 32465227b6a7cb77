"""Safe output: atomic files and directories, checks before computing, a rescue path on failure.

Atomic file.  Write to a temporary file ``.<name>.<pid>.<random>.tmp`` in the target's directory,
fsync, then ``os.replace`` it over the target: readers see the old or the new bytes, never a mix.
The temporary file is created with ``os.open(..., 0o666)``, so the kernel applies the process
umask exactly as for an ordinary ``open()`` -- no process-wide state (``os.umask``) is touched,
which would race with other threads.

Stale temporaries.  A process killed during a write (SIGKILL, power loss) leaves its temporary
behind.  Its name carries the writer's pid; every later write into the same directory removes
the temporaries of that target whose writer is no longer alive (:func:`clean_stale`).  Readers
never look at them (hidden names, ``.tmp`` suffix).

Atomic directory.  :func:`replace_dir` fills a temporary directory beside the target and swaps it
in with one ``renameat2(RENAME_EXCHANGE)`` where the kernel offers it (Linux >= 3.15), else with
two renames (the old directory is kept as ``.<name>.<pid>.old`` until the new one is in place).
A set of files is therefore replaced as a unit.

Checks before computing.  :func:`check_output_file` and :func:`check_output_dir` find out, before
any work, whether an output can be written (the nearest existing ancestor is a writable directory,
proved by creating and removing a probe file; the target is not a directory / not a file).

Rescue.  :func:`rescue_path` names a fallback location for a result whose final write failed
(disk full, directory removed or made read-only during the run).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from .errors import SettingsError

_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.(?:tmp|tmpdir|old)$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale(directory, name: str | None = None) -> list[Path]:
    """Remove temporaries (of target ``name``, or of every target) whose writer process is dead.

    Returns the removed paths.  Temporaries of live processes (a concurrent writer) are kept.
    """
    directory = Path(directory)
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for p in entries:
        mt = _TMP.match(p.name)
        if not mt or (name is not None and mt["name"] != name) or _pid_alive(int(mt["pid"])):
            continue
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _tmp_name(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.{kind}"


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)
    tmp = _tmp_name(path, "tmp")
    # O_EXCL: never follow or reuse an existing name; mode 0o666 & ~umask as for open()
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield str(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write(path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically (fsynced before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())


# ----------------------------------------------------------------------------------------------
# Directories replaced as a unit
# ----------------------------------------------------------------------------------------------
def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(AT_FDCWD, os.fsencode(str(a)), AT_FDCWD, os.fsencode(str(b)), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(path, files: dict) -> dict:
    """Replace directory ``path`` by one holding exactly ``files`` (name -> bytes), as a unit.

    Every file is written and fsynced into a temporary directory beside ``path`` first; only then
    is the directory swapped in.  A failure before the swap (disk full, Ctrl-C) leaves the earlier
    directory untouched and removes the temporary one.  Returns name -> final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)
    tmp = _tmp_name(path, "tmpdir")
    tmp.mkdir(mode=0o777)
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        if path.is_dir() and not path.is_symlink():
            if _exchange(tmp, path):
                shutil.rmtree(tmp)  # now the old directory
            else:
                old = _tmp_name(path, "old")
                os.rename(path, old)
                try:
                    os.rename(tmp, path)
                except BaseException:
                    os.rename(old, path)
                    raise
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {name: path / name for name in files}


# ----------------------------------------------------------------------------------------------
# Checks before computing
# ----------------------------------------------------------------------------------------------
def _existing_ancestor(path: Path, what: str) -> Path:
    anc = path.parent
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise SettingsError(f"{what} {path}: {anc} is a file, not a directory; choose another path.")
    return anc


def _probe_writable(directory: Path, what: str, path: Path) -> None:
    probe = directory / f".dmftgen-probe.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(f"{what} {path}: cannot write into {directory} ({reason}); "
                            "choose a writable location (checked before computing).") from None


def check_output_file(path, what: str = "--out") -> Path:
    """Raise SettingsError now if ``path`` cannot be written later (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise SettingsError(f"{what} {path} is a directory; give a file name (e.g. {path / 'result.json'}).")
    if path.exists() and not path.is_file():
        raise SettingsError(f"{what} {path} exists and is not a regular file.")
    _probe_writable(_existing_ancestor(path, what), what, path)
    return path


def check_output_dir(path, what: str = "--out", allowed=None) -> Path:
    """Raise SettingsError now if directory ``path`` cannot be (re)placed later.

    ``allowed`` (a predicate on file names) lists what an earlier run of the same command leaves
    in the directory; any other entry makes the directory someone else's, and it is refused
    rather than replaced (replacing it would delete those files).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SettingsError(f"{what} {path} exists and is not a directory.")
    if path.is_dir() and allowed is not None:
        foreign = sorted(p.name for p in path.iterdir() if not allowed(p.name))
        if foreign:
            raise SettingsError(f"{what} {path} holds files this command did not write "
                                f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); the "
                                "directory is replaced as a whole, so give a new or empty directory.")
    # the directory is created (or swapped) in its parent
    _probe_writable(_existing_ancestor(path, what), what, path)
    if path.is_dir():
        _probe_writable(path.parent, what, path)
    return path


def rescue_path(path) -> Path:
    """A fallback location for ``path`` after its write failed: the current directory, else the
    temporary directory, named ``dmftgen-rescued-<pid>-<name>``."""
    path = Path(path)
    name = f"dmftgen-rescued-{os.getpid()}-{path.name}"
    failed = path.parent.resolve() if path.parent.exists() else None
    for d in (Path.cwd(), Path(tempfile.gettempdir())):
        if d.resolve() == failed:
            continue
        try:
            _probe_writable(d, "rescue", d / name)
        except SettingsError:
            continue
        return d / name
    return Path(tempfile.gettempdir()) / name
