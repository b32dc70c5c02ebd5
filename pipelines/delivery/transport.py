"""Delivery of a telco's correction files: a local folder by default, SFTP or object storage
as options, configured per telco.

Configured under ``correction_cycle.delivery`` (``default`` and ``telcos.<name>``),
each a ``{kind, path, options}``:

* ``local`` copies into a folder (relative paths resolve against the run
  configuration's folder; empty = no copy, the run folder's ``corrections/`` is
  the delivery); each file is written to a temporary name and renamed.
* ``sftp`` uploads to ``sftp://user@host[:port]/folder`` (``simrecon[sftp]``,
  fsspec's SFTP filesystem over paramiko): the server's host key must be in
  ``options.known_hosts`` (a known_hosts file; default ``~/.ssh/known_hosts``),
  an unknown key refuses the connection; authentication by
  ``options.key_filename`` (a private key file) and/or a password or key
  passphrase from the environment variable named by ``options.password_env``.
  Each file is uploaded under a hidden temporary name and renamed
  (``posix-rename``), so the telco never picks up half a file.
* ``object`` (alias ``fsspec``) writes to a URL fsspec understands
  (``s3://bucket/prefix`` with ``simrecon[s3]``, ``gs://…``, ``memory://…`` in
  tests); ``options`` are fsspec storage options (e.g. ``endpoint_url``).

Credentials never go in the configuration: options that would hold a secret
(``password``, ``key``, ``secret``, ``token``…) are refused; they come from the
environment (``AWS_*``, the variable ``password_env`` names) or files it names.

Files go under ``<target>/<run date>/``. The delivery manifest
(``<telco>.manifest.json``) is removed first when an earlier delivery of the
date left one and written last, so a receiver that sees it knows every file it
lists is complete (sha256 to check).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from pipelines.storage import objectstore


class DeliveryTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "object", "fsspec", "sftp"] = "local"
    path: str = ""  # local folder, sftp:// URL, or object-storage URL
    options: dict[str, str] = {}  # storage / SSH options, never secrets (use the env)

    @field_validator("options")
    @classmethod
    def _no_secrets(cls, options: dict[str, str]) -> dict[str, str]:
        secret = sorted(k for k in options if k.lower() in objectstore.SECRET_OPTIONS)
        if secret:
            raise ValueError(f"option(s) {secret} would put a secret in the configuration: "
                             "use the environment (e.g. options.password_env for SFTP)")
        return options

    @model_validator(mode="after")
    def _path_fits_kind(self) -> DeliveryTarget:
        if objectstore.has_password(self.path):
            raise ValueError("no password in the delivery URL: use the environment")
        if self.kind == "sftp" and self.path and objectstore.protocol(self.path) != "sftp":
            raise ValueError("an sftp delivery path is sftp://user@host[:port]/folder")
        if self.kind in ("object", "fsspec") and self.path \
                and not objectstore.is_url(self.path):
            raise ValueError("an object-storage delivery path is a URL (s3://bucket/prefix)")
        if self.kind == "local" and objectstore.is_url(self.path):
            raise ValueError("a local delivery path is a folder; use kind sftp or object "
                             "for a URL")
        return self


class DeliverySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: DeliveryTarget = DeliveryTarget()
    telcos: dict[str, DeliveryTarget] = {}

    def for_telco(self, telco: str) -> DeliveryTarget:
        return self.telcos.get(telco, self.default)


def _copy_local(root: Path, ordered: list[str], folder: Path) -> None:
    manifest = folder / ordered[-1]
    manifest.unlink(missing_ok=True)
    for name in ordered:
        dest = folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
        try:
            shutil.copyfile(root / name, tmp)
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)


def _ssh_options(options: dict[str, str], base_dir: Path) -> dict[str, str]:
    """SFTP options with the files they name resolved against the configuration's folder."""
    out = dict(options)
    for name in ("known_hosts", "key_filename"):
        if out.get(name):
            out[name] = str((base_dir / os.path.expanduser(out[name])).resolve())
    return out


def deliver(root: Path, names: list[str], manifest: str, target: DeliveryTarget,
            run_date: str, base_dir: Path) -> str | None:
    """Send ``names`` (paths relative to ``root``), then ``manifest``; return where to.

    Relative paths are kept (``resolved/<telco>.csv`` stays apart from
    ``<telco>.csv``). None when the target has no path: nothing to send.
    """
    if not target.path:
        return None
    if target.kind == "local":
        folder = (base_dir / target.path).resolve() / run_date
        _copy_local(root, [*names, manifest], folder)
        return str(folder)
    url = f"{target.path.rstrip('/')}/{run_date}"
    options = _ssh_options(target.options, base_dir) if target.kind == "sftp" \
        else dict(target.options)
    return objectstore.put_files(root, names, manifest, url, options)
