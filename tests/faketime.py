"""libfaketime for the clock fault scenarios: the wall clock of one process moved while it runs.

Debian's libfaketime 0.9.10 breaks Python 3.11's timed waits (``sem_clockwait`` is not
intercepted: every ``Event.wait(t)`` hangs; with the monotonic clock left real, ``time.sleep``
raises EINVAL). The shim below, preloaded before it, turns each absolute deadline on the faked
clock into the same deadline on the kernel's (shared/notes/hq-and-time-recipes.md, section 1).
With ``FAKETIME_DONT_FAKE_MONOTONIC`` only the wall clock moves, as with a real NTP step.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

# Debian's multiarch directory: x86_64-linux-gnu here, aarch64-linux-gnu on a store board.
LIBFAKETIME = next(
    iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
)

SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
/* absolute deadline on the clock the app sees (maybe faked) -> same deadline on the kernel clock */
static struct timespec to_real(clockid_t c, const struct timespec *abs) {
    struct timespec seen, real, r;
    clock_gettime(c, &seen);              /* via libfaketime */
    syscall(SYS_clock_gettime, c, &real); /* kernel, unfaked */
    long long ns = (abs->tv_sec - seen.tv_sec) * 1000000000LL + (abs->tv_nsec - seen.tv_nsec);
    ns = (ns < 0 ? 0 : ns) + real.tv_nsec;
    r.tv_sec = real.tv_sec + ns / 1000000000LL; r.tv_nsec = ns % 1000000000LL;
    return r;
}
int clock_nanosleep(clockid_t c, int fl, const struct timespec *req, struct timespec *rem) {
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (c == CLOCK_REALTIME) {
        if (!next) next = dlsym(RTLD_NEXT, "clock_nanosleep");
        return next(c, fl, req, rem);
    }
    if (!(fl & TIMER_ABSTIME)) return syscall(SYS_clock_nanosleep, c, fl, req, rem) ? errno : 0;
    struct timespec r = to_real(c, req);
    return syscall(SYS_clock_nanosleep, c, fl, &r, NULL) ? errno : 0;
}
int sem_clockwait(sem_t *s, clockid_t c, const struct timespec *abs) {
    static int (*next)(sem_t *, clockid_t, const struct timespec *);
    if (!next) next = dlsym(RTLD_NEXT, "sem_clockwait");
    struct timespec r = to_real(c, abs);
    return next(s, c, &r);
}
"""


class FakeTime:
    """The wall-clock offset of the processes started with ``env``, changed by ``set``."""

    def __init__(self, workdir: Path, shim: Path, offset: str = "+0") -> None:
        self.file = workdir / "faketime.rc"
        self.set(offset)
        self.env = {
            "LD_PRELOAD": f"{shim}:{LIBFAKETIME}",
            "FAKETIME_TIMESTAMP_FILE": str(self.file),
            "FAKETIME_NO_CACHE": "1",  # the next call sees a change (6.6 us per time() call)
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def set(self, offset: str) -> None:
        """``+0``, ``-3h``, ``+3600``...: written whole (a half-written file makes libfaketime
        exit the process)."""
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(offset + "\n")
        os.replace(tmp, self.file)


def build_shim(directory: Path) -> Path:
    """Compile the shim (0.2 s); skip the test where gcc or libfaketime is missing."""
    gcc = shutil.which("gcc")
    if gcc is None or not LIBFAKETIME.exists():
        pytest.skip("needs gcc and Debian's faketime (scripts/test.sh installs them)")
    source = directory / "ftshim.c"
    source.write_text(SHIM_C)
    shim = directory / "ftshim.so"
    subprocess.run([gcc, "-O2", "-shared", "-fPIC", "-o", str(shim), str(source), "-ldl"], check=True)
    return shim


def remove_leftovers(pid: int) -> None:
    """A faked process killed by a signal leaves its shared memory behind."""
    for path in glob.glob(f"/dev/shm/*faketime_*_{pid}"):
        Path(path).unlink(missing_ok=True)
