"""File locks that serialize lab operations across processes."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from hostcraft.lab.state import lab_run_dir, lock_path


@contextmanager
def lab_lock(name: str) -> Iterator[None]:
    """Hold the lab's lock file, and delete it on exit when the lab no longer exists."""
    path = lock_path(name)
    with exclusive_lock(str(path)):
        try:
            yield
        finally:
            if not lab_run_dir(name).exists():
                path.unlink(missing_ok=True)


@contextmanager
def exclusive_lock(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``, creating the file if needed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    while True:
        descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        # A holder may have deleted the file while we waited. A lock on a deleted file
        # guards nothing, so open the path again.
        try:
            current = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(descriptor)
    try:
        yield
    finally:
        os.close(descriptor)
