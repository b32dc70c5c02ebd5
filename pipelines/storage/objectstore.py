"""Files behind URLs: reading inputs from, and publishing outputs to, object storage or SFTP.

Every location in the configuration is either a local path (relative paths
resolve against the file that names them; ``file://`` URLs are local paths
too) or a URL that fsspec understands: ``s3://bucket/key`` (needs
``simrecon[s3]``, i.e. ``s3fs``), ``gs://…`` / ``az://…`` (their fsspec
backends), ``sftp://user@host:port/path`` (``simrecon[sftp]``, i.e.
``paramiko``; see ``sftp_filesystem``), ``memory://…`` in tests.

* **Inputs** (telco exports, the registry snapshot) are read in place: a CSV
  whole (as from disk), a Parquet file through random-access reads of the
  columns needed (``input_file``, ``read_parquet_schema``, ``read_parquet``).
* **Outputs**: a run is still built and swapped into place on the worker's
  local disk (``work_dir``), where a rename is atomic and ``fsync`` exists; an
  object store has neither. The published run is then copied to the output
  URL by ``publish_folder``: the date's old ``_SUCCESS`` marker is removed,
  every object is written (each PUT is atomic on its own), objects of an earlier
  publication of the same date that the new run lacks are removed, then
  ``manifest.json``, and the marker last. Readers trust a run folder only when
  its ``_SUCCESS`` is there (it names the manifest's sha256).
* **Credentials and endpoints** come from the environment (for S3 the usual
  ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_PROFILE``/instance role,
  ``AWS_ENDPOINT_URL`` for an S3-compatible server) or from fsspec's own
  configuration (``FSSPEC_CONFIG_DIR`` or ``FSSPEC_<PROTOCOL>_<OPTION>``
  variables), never from the run configuration.

Airflow's ``ObjectStoragePath`` is this same fsspec layer plus Airflow
connections; the stages use fsspec directly so that they run the same from the
CLI and the tests, where there is no Airflow connection to look up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage.files import parquet_batches

MARKER = "_SUCCESS"
# Protocols whose writes are whole-object PUTs: a reader never sees a partial object.
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory", "oss"}
# fsspec backends that are an extra of this package (the error says which to install).
_EXTRAS = {"s3": "s3", "s3a": "s3", "sftp": "sftp", "ssh": "sftp"}


class StorageError(RuntimeError):
    """A location cannot be reached or used; the message names it (never a credential)."""


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for a remote URL (``s3://…``); False for a path or a ``file://`` URL.

    A one-letter scheme is a Windows drive (``C:\\data``), not a URL.
    """
    if not isinstance(location, str):
        return False
    scheme = urlsplit(location).scheme
    return len(scheme) > 1 and "://" in location and scheme.lower() not in ("file", "local")


def resolve(location: str, base_dir: Path) -> str:
    """A URL unchanged; a path (or ``file://`` URL) made absolute against ``base_dir``."""
    if is_url(location):
        return location
    if location.startswith(("file://", "local://")):
        location = urlsplit(location).path
    return str((Path(base_dir) / location).resolve())


def protocol(url: str) -> str:
    return urlsplit(url).scheme.lower()


def has_password(url: str) -> bool:
    """True when ``url`` carries a password (``scheme://user:secret@host``)."""
    return is_url(url) and urlsplit(url).password is not None


def redact(url: str) -> str:
    """The URL without a password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for ``url``; a clear error when the backend
    is not installed. ``sftp://`` goes through ``sftp_filesystem`` (host keys checked)."""
    if protocol(url) in ("sftp", "ssh"):
        return sftp_filesystem(url, options or {})
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **dict(options or {}))
    except ImportError as exc:
        extra = _EXTRAS.get(protocol(url))
        hint = f"pip install 'simrecon[{extra}]'" if extra else "install its fsspec backend"
        raise StorageError(f"{redact(url)}: no filesystem for {protocol(url)!r} "
                           f"({exc}); {hint}") from exc
    except ValueError as exc:  # unknown protocol
        raise StorageError(f"{redact(url)}: {exc}") from exc


class RemoteFile:
    """A read-only input behind a URL, with what the readers use of ``pathlib.Path``
    (``name``, ``exists()``, ``read_bytes()``, ``str()``) plus ``open()``."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(options or {})

    def __repr__(self) -> str:
        return f"RemoteFile({redact(self.url)!r})"

    def __str__(self) -> str:
        return redact(self.url)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteFile) and (self.url, self.options) == (other.url,
                                                                                other.options)

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def name(self) -> str:
        return urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def _fs(self) -> tuple[Any, str]:
        return filesystem(self.url, self.options)

    def exists(self) -> bool:
        fs, path = self._fs()
        try:
            return bool(fs.isfile(path))
        except (PermissionError, OSError) as exc:
            raise StorageError(f"{self}: cannot be checked: {exc}") from exc

    def read_bytes(self) -> bytes:
        fs, path = self._fs()
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageError(f"{self}: cannot be read: {exc}") from exc

    def stat(self) -> os.stat_result:
        """Size and modification time (what a fingerprint of an input needs)."""
        fs, path = self._fs()
        info = fs.info(path)
        modified = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
        if isinstance(modified, datetime):
            modified = modified.timestamp()
        size = int(info.get("size") or 0)
        return os.stat_result((0o100444, 0, 0, 1, 0, 0, size, int(modified), int(modified),
                               int(modified)))

    def open(self, mode: str = "rb") -> IO[bytes]:
        if mode != "rb":
            raise ValueError("inputs are opened read-only ('rb')")
        fs, path = self._fs()
        return fs.open(path, "rb")


def input_file(location: str, base_dir: Path,
               options: Mapping[str, Any] | None = None) -> Path | RemoteFile:
    """A configured input: a ``Path`` for a local file, a ``RemoteFile`` for a URL."""
    resolved = resolve(location, base_dir)
    return RemoteFile(resolved, options) if is_url(resolved) else Path(resolved)


def read_parquet_schema(source: Path | RemoteFile) -> pa.Schema:
    """``pq.read_schema`` for a local path or a URL (only the footer is fetched)."""
    if isinstance(source, RemoteFile):
        with source.open() as handle:
            return pq.read_schema(handle)
    return pq.read_schema(source)


def read_parquet(source: Path | RemoteFile, columns: list[str] | None = None) -> pa.Table:
    """``pq.read_table`` for a local path or a URL (only the columns asked for are fetched)."""
    if isinstance(source, RemoteFile):
        with source.open() as handle:
            return pq.read_table(handle, columns=columns)
    return pq.read_table(source, columns=columns)


def parquet_rows(source: Path | RemoteFile) -> int:
    """Rows of a local or remote Parquet file (from its footer)."""
    if isinstance(source, RemoteFile):
        with source.open() as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    return pq.ParquetFile(source).metadata.num_rows


def iter_parquet_batches(source: Path | RemoteFile, columns: list[str],
                         batch_rows: int) -> Iterator[pa.Table]:
    """Tables of at most ``batch_rows`` rows of a local or remote Parquet file, read one
    row group at a time (``files.parquet_batches``: the file is never held whole, nor
    the memory of the row groups already read)."""
    if isinstance(source, RemoteFile):
        with source.open() as handle:
            yield from parquet_batches(pq.ParquetFile(handle), batch_rows, columns)
        return
    yield from parquet_batches(pq.ParquetFile(source), batch_rows, columns)


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if base else name


def _put(fs: Any, local: Path, remote: str) -> None:
    """Copy one file. An object store's PUT is atomic; elsewhere (SFTP, a mounted
    filesystem) the file is written under a hidden temporary name and renamed."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    parent, _, name = remote.rpartition("/")
    if set(protocols) & _OBJECT_STORES:
        fs.put_file(str(local), remote)
        return
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = _join(parent, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        fs.put_file(str(local), tmp)
        fs.mv(tmp, remote)
    except BaseException:
        with contextlib.suppress(Exception):  # the original error matters, not the clean-up's
            fs.rm_file(tmp)
        raise


def _remove(fs: Any, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def _exists(fs: Any, path: str) -> bool:
    if hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache()
    return bool(fs.exists(path))


def put_files(root: Path, names: Iterable[str], last: str, url: str,
              options: Mapping[str, Any] | None = None) -> str:
    """Copy ``names`` (paths relative to ``root``) under ``url``, then ``last``.

    ``last`` (a manifest) is first removed if an earlier delivery left one, so a
    receiver that finds it knows every file it lists is complete.
    """
    fs, base = filesystem(url, options)
    try:
        _remove_if_there(fs, _join(base, last))
        for name in [*names, last]:
            _put(fs, root / name, _join(base, name))
    finally:
        _close(fs)
    return redact(url)


def _remove_if_there(fs: Any, path: str) -> None:
    if _exists(fs, path):
        _remove(fs, path)


def _close(fs: Any) -> None:
    client = getattr(fs, "client", None)  # an SFTP connection opened for this call
    if client is not None and getattr(fs, "_simrecon_owned", False):
        client.close()


def publish_folder(folder: Path, url: str, *, manifest: str = "manifest.json",
                   options: Mapping[str, Any] | None = None) -> dict:
    """Publish a complete local run folder to ``url``, ``_SUCCESS`` marker last.

    Idempotent (a retry writes the same objects again). Hidden files (``.``) are
    skipped, as in the run manifest. Returns what the marker says.
    """
    folder = Path(folder)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".")
                                              for part in p.relative_to(folder).parts))
    if manifest not in names:
        raise StorageError(f"{folder}: no {manifest}: not a complete run folder")
    fs, base = filesystem(url, options)
    try:
        marker = _join(base, MARKER)
        _remove_if_there(fs, marker)  # from here on, readers do not trust this date
        for name in names:
            if name != manifest:
                _put(fs, folder / name, _join(base, name))
        wanted = {*names, MARKER}
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache()
        for found in sorted(fs.find(base)) if fs.exists(base) else []:
            relative = found[len(base.rstrip("/")) + 1:] if found.startswith(
                base.rstrip("/") + "/") else found.rsplit("/", 1)[-1]
            if relative not in wanted:
                _remove(fs, found)  # left by an earlier publication of this date
        _put(fs, folder / manifest, _join(base, manifest))
        digest = hashlib.sha256((folder / manifest).read_bytes()).hexdigest()
        stamp = {"manifest": manifest, "manifest_sha256": digest, "files": len(names),
                 "published_at": datetime.now(UTC).isoformat(timespec="seconds")}
        fs.pipe_file(marker, (json.dumps(stamp, indent=2, sort_keys=True) + "\n").encode())
    finally:
        _close(fs)
    return stamp


def published_runs(url: str, options: Mapping[str, Any] | None = None) -> list[str]:
    """Run dates under ``url`` that have their ``_SUCCESS`` marker (readers' view)."""
    fs, base = filesystem(url, options)
    try:
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache()
        if not fs.exists(base):
            return []
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(base, detail=False)
                      if fs.exists(_join(entry, MARKER)))
    finally:
        _close(fs)


# --- SFTP -------------------------------------------------------------------------------

# Options that would put a secret in the run configuration.
SECRET_OPTIONS = frozenset({"password", "passphrase", "pkey", "secret", "token", "key",
                            "secret_access_key", "aws_secret_access_key", "sas_token",
                            "account_key", "client_secret", "private_key"})
_SFTP_OPTIONS = frozenset({"known_hosts", "key_filename", "password_env", "username", "port",
                           "timeout", "allow_agent", "look_for_keys"})


def sftp_filesystem(url: str, options: Mapping[str, Any]) -> tuple[Any, str]:
    """An fsspec ``SFTPFileSystem`` that only talks to a server whose host key is known.

    fsspec's own default accepts any host key (``AutoAddPolicy``); here the key must
    be in ``options["known_hosts"]`` (an OpenSSH known_hosts file) or, without it, in
    the user's ``~/.ssh/known_hosts``; an unknown key refuses the connection before
    anything is sent. Authentication: ``key_filename`` (a private key file; its
    passphrase, if any, from the environment variable named by ``password_env``) or a
    password from the environment variable named by ``password_env``; the SSH agent
    and the default keys (``~/.ssh/id_*``) are tried as well unless switched off.
    """
    try:
        import paramiko
        from fsspec.implementations.sftp import SFTPFileSystem
    except ImportError as exc:
        raise StorageError(f"{redact(url)}: SFTP needs paramiko: pip install "
                           f"'simrecon[sftp]' ({exc})") from exc
    parts = urlsplit(url)
    if parts.password is not None:
        raise StorageError(f"{redact(url)}: no password in the URL; name an environment "
                           "variable in options.password_env")
    unknown = set(options) - _SFTP_OPTIONS
    if unknown:
        raise StorageError(f"{redact(url)}: unknown SFTP option(s) {sorted(unknown)}; "
                           f"allowed: {sorted(_SFTP_OPTIONS)}")
    if not parts.hostname:
        raise StorageError(f"{url}: no host in the SFTP URL (sftp://user@host:port/path)")
    kwargs: dict[str, Any] = {"port": int(options.get("port") or parts.port or 22),
                              "timeout": float(options.get("timeout", 30))}
    username = parts.username or options.get("username")
    if username:
        kwargs["username"] = username
    if options.get("key_filename"):
        kwargs["key_filename"] = str(options["key_filename"])
    for flag in ("allow_agent", "look_for_keys"):
        if flag in options:
            kwargs[flag] = str(options[flag]).lower() in ("1", "true", "yes")
    if options.get("password_env"):
        variable = str(options["password_env"])
        if variable not in os.environ:
            raise StorageError(f"{redact(url)}: environment variable {variable} "
                               "(options.password_env) is not set")
        secret = os.environ[variable]
        kwargs["passphrase" if "key_filename" in kwargs else "password"] = secret
    known_hosts = options.get("known_hosts")
    if known_hosts and not Path(str(known_hosts)).is_file():
        raise StorageError(f"{redact(url)}: known_hosts file {known_hosts} not found")

    class _KnownHostsSFTP(SFTPFileSystem):
        def _connect(self) -> None:
            client = paramiko.SSHClient()
            if known_hosts:
                client.load_host_keys(str(known_hosts))
            else:
                client.load_system_host_keys()
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(self.host, **self.ssh_kwargs)
            self.client = client
            self.ftp = client.open_sftp()

    try:
        fs = _KnownHostsSFTP(parts.hostname, skip_instance_cache=True, **kwargs)
    except paramiko.SSHException as exc:  # includes an unknown or changed host key
        raise StorageError(f"{redact(url)}: SFTP connection refused: {exc}") from exc
    except OSError as exc:
        raise StorageError(f"{redact(url)}: SFTP server not reachable: {exc}") from exc
    fs._simrecon_owned = True
    return fs, parts.path or "/"
