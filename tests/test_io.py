"""Atomic writes keep the previous file on failure and create files with ordinary permissions."""
import os

import pytest

from dmftgen._io import atomic_path, atomic_write


def test_atomic_write_replaces_and_keeps_on_failure(tmp_path):
    f = tmp_path / "out" / "a.json"
    atomic_write(f, b"first")
    assert f.read_bytes() == b"first"
    with pytest.raises(RuntimeError):
        with atomic_path(f) as tmp:
            open(tmp, "wb").write(b"half-writ")
            raise RuntimeError("crash mid-write")
    assert f.read_bytes() == b"first"  # the earlier result survives
    assert [p.name for p in f.parent.iterdir()] == ["a.json"]  # no temp file left behind


def test_atomic_write_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "b", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o644
