"""Tie a process's life to its parent's: Linux's PR_SET_PDEATHSIG
(https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html) delivers SIGKILL to the
process when the thread that forked it exits, however that happens (kill -9 included).

The setting is cleared by fork(2) but kept across execve(2), so each generation sets it for
itself; the parent's pid is checked after setting it, since the parent may have died before."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: safe in a preexec_fn


def die_with_parent(parent: int) -> None:
    """Get SIGKILL when the parent exits; exit now if `parent` is not our parent any more."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:
        os._exit(1)  # orphaned before the setting took: the supervisor is gone
