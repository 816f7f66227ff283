"""A throwaway PostgreSQL cluster of a test's own, to stop (``-m immediate``) and start again.

Made with the server's own ``initdb`` and ``pg_ctl`` (Debian keeps them under
``/usr/lib/postgresql/VERSION/bin``), in a directory under /tmp on a free port,
with ``fsync`` off: it lives for one test. PostgreSQL refuses to run as root,
so a root test runs them as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

COMMAND_SECONDS = 60.0


def server_binaries() -> Path | None:
    """The newest installed server's ``bin``, or wherever ``initdb`` is on the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).parent


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in Path(path).parts[4].split(".") if part.isdigit())


class Cluster:
    """One data directory and the server on it, on 127.0.0.1:``port``."""

    def __init__(self, binaries: Path, directory: Path) -> None:
        self._binaries = binaries
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self._as_user = _postgres_user() if os.geteuid() == 0 else None
        if self._as_user is not None:
            os.chown(directory, self._as_user.pw_uid, self._as_user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.directory / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [str(self._binaries / program), *args],
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            preexec_fn=self._demote(),
            check=False,
        )
        assert done.returncode == 0, f"{program} failed: {done.stdout}{done.stderr}"

    def _demote(self) -> Callable[[], None] | None:
        user = self._as_user
        if user is None:
            return None

        def demote() -> None:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        return demote


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run initdb as")


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A cluster initialised and started; stopped and deleted at the end."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("initdb/pg_ctl not found (no /usr/lib/postgresql/*/bin, none on PATH)")
    directory = Path(tempfile.mkdtemp(prefix="headrace-faults-pg-"))
    cluster = Cluster(binaries, directory)
    try:
        cluster.initdb()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
