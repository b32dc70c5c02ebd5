"""Throwaway servers on loopback for the storage tests, each started and stopped by the test.

* ``postgres_cluster``: a PostgreSQL cluster of Debian's ``postgresql`` package
  (``initdb`` into a temporary folder, ``pg_ctl start`` on a free port of
  127.0.0.1, trust authentication, no fsync); as root, run as the ``postgres``
  user, since the server refuses to run as root.
* ``moto_s3``: moto's S3 server (``ThreadedMotoServer``) on a free port of 127.0.0.1.
* ``sftp_server``: an SFTP server built on paramiko's server side, serving a
  folder, accepting one user's public key, and logging the order of renames.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- PostgreSQL ---------------------------------------------------------------------------

def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _missing(what: str) -> None:
    """Skip on a developer's machine without the server; fail in CI, where
    scripts/test.sh installs it (a skipped test must not pass for a tested one)."""
    message = f"{what} not installed (scripts/test.sh installs Debian's postgresql)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yield the URL of a fresh cluster's ``postgres`` database (user ``simrecon``)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        _missing("PostgreSQL (initdb, pg_ctl)")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="simrecon-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _missing("the postgres system user")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    try:
        run(initdb, "-D", str(data), "-A", "trust", "-U", "simrecon", "-E", "UTF8",
            "--no-sync", "--no-instructions")
        run(pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
            "-o", f"-F -p {port} -h 127.0.0.1 -k {folder}", "start")
        try:
            yield f"postgresql://simrecon@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60, check=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def new_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the cluster; its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


# --- S3 (moto) ----------------------------------------------------------------------------

@contextlib.contextmanager
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Moto's S3 server on loopback; the AWS environment points at it (fake keys)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield endpoint
    finally:
        server.stop()



@contextlib.contextmanager
def s3_bucket(bucket: str, files: dict[str, Path]) -> Iterator:
    """Moto's S3 server with ``bucket`` holding ``files`` (key -> local file), and an
    s3fs client of it; the AWS environment points at the server while it runs."""
    import s3fs

    with pytest.MonkeyPatch.context() as patch, moto_s3(patch):
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir(bucket)
        for key, local in files.items():
            fs.put_file(str(local), f"{bucket}/{key}")
        try:
            yield fs
        finally:
            s3fs.S3FileSystem.clear_instance_cache()

# --- SFTP (paramiko server side) ----------------------------------------------------------

@dataclass
class SftpServer:
    port: int
    root: Path
    host_key: object
    user: str
    client_key_file: Path
    known_hosts: Path
    renames: list[str] = field(default_factory=list)


def _sftp_interface(root: Path, renames: list[str]):  # type: ignore[no-untyped-def]
    import paramiko
    from paramiko import SFTPAttributes, SFTPHandle, SFTPServerInterface
    from paramiko.sftp import SFTP_FAILURE, SFTP_OK, SFTP_PERMISSION_DENIED

    def error(exc: OSError) -> int:
        return paramiko.SFTPServer.convert_errno(exc.errno) if exc.errno else SFTP_FAILURE

    class Handle(SFTPHandle):
        def stat(self):  # type: ignore[no-untyped-def]
            try:
                return SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
            except OSError as exc:
                return error(exc)

    class Interface(SFTPServerInterface):
        def _real(self, path: str) -> str:
            real = os.path.realpath(os.path.join(root, self.canonicalize(path).lstrip("/")))
            if not (real == str(root) or real.startswith(f"{root}/")):
                raise PermissionError(path)
            return real

        def list_folder(self, path):  # type: ignore[no-untyped-def]
            try:
                real = self._real(path)
                out = []
                for name in os.listdir(real):
                    attr = SFTPAttributes.from_stat(os.stat(os.path.join(real, name)))
                    attr.filename = name
                    out.append(attr)
                return out
            except PermissionError:
                return SFTP_PERMISSION_DENIED
            except OSError as exc:
                return error(exc)

        def stat(self, path):  # type: ignore[no-untyped-def]
            try:
                return SFTPAttributes.from_stat(os.stat(self._real(path)))
            except PermissionError:
                return SFTP_PERMISSION_DENIED
            except OSError as exc:
                return error(exc)

        lstat = stat

        def open(self, path, flags, attr):  # type: ignore[no-untyped-def]
            try:
                real = self._real(path)
                fd = os.open(real, flags | getattr(os, "O_BINARY", 0), 0o644)
            except PermissionError:
                return SFTP_PERMISSION_DENIED
            except OSError as exc:
                return error(exc)
            if flags & os.O_WRONLY:
                mode = "ab" if flags & os.O_APPEND else "wb"
            elif flags & os.O_RDWR:
                mode = "a+b" if flags & os.O_APPEND else "r+b"
            else:
                mode = "rb"
            handle = Handle(flags)
            stream = os.fdopen(fd, mode)
            handle.filename = real
            handle.readfile = stream
            handle.writefile = stream
            return handle

        def remove(self, path):  # type: ignore[no-untyped-def]
            try:
                os.remove(self._real(path))
            except OSError as exc:
                return error(exc)
            return SFTP_OK

        def posix_rename(self, oldpath, newpath):  # type: ignore[no-untyped-def]
            try:
                os.replace(self._real(oldpath), self._real(newpath))
            except OSError as exc:
                return error(exc)
            renames.append(str(Path(self._real(newpath)).relative_to(root)))
            return SFTP_OK

        def rename(self, oldpath, newpath):  # type: ignore[no-untyped-def]
            if os.path.exists(self._real(newpath)):
                return SFTP_FAILURE
            return self.posix_rename(oldpath, newpath)

        def mkdir(self, path, attr):  # type: ignore[no-untyped-def]
            try:
                os.mkdir(self._real(path))
            except OSError as exc:
                return error(exc)
            return SFTP_OK

        def rmdir(self, path):  # type: ignore[no-untyped-def]
            try:
                os.rmdir(self._real(path))
            except OSError as exc:
                return error(exc)
            return SFTP_OK

        def chattr(self, path, attr):  # type: ignore[no-untyped-def]
            return SFTP_OK

    return Interface


@contextlib.contextmanager
def sftp_server(tmp: Path, user: str = "simrecon") -> Iterator[SftpServer]:
    """An SFTP server on 127.0.0.1 serving ``tmp/root`` to ``user`` (public key only)."""
    import paramiko

    root = (tmp / "root").resolve()
    root.mkdir()
    host_key = paramiko.RSAKey.generate(2048)
    client_key = paramiko.RSAKey.generate(2048)
    key_file = tmp / "client_key"
    client_key.write_private_key_file(str(key_file))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    known_hosts = tmp / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n",
                           encoding="ascii")
    state = SftpServer(port, root, host_key, user, key_file, known_hosts)
    interface = _sftp_interface(root, state.renames)

    class Auth(paramiko.ServerInterface):
        def check_auth_publickey(self, username, key):  # type: ignore[no-untyped-def]
            ok = username == user and key.get_base64() == client_key.get_base64()
            return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

        def get_allowed_auths(self, username):  # type: ignore[no-untyped-def]
            return "publickey"

        def check_channel_request(self, kind, chanid):  # type: ignore[no-untyped-def]
            return paramiko.OPEN_SUCCEEDED if kind == "session" else \
                paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    stop = threading.Event()
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transports.append(transport)
            transport.add_server_key(host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, interface)
            try:
                transport.start_server(server=Auth())
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()  # e.g. the client refused our host key

    thread = threading.Thread(target=serve, name="sftp-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for transport in transports:
            transport.close()
