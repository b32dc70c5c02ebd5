"""Delivery of a telco's correction files: a local folder by default, object storage as an option.

Configured per telco under ``correction_cycle.delivery`` (``default`` and
``telcos.<name>``). ``local`` copies into a folder (relative paths resolve
against the run configuration's folder; empty = no copy, the run folder's
``corrections/`` is the delivery); ``fsspec`` writes to any URL fsspec
understands (``s3://bucket/prefix``, ``gs://…``, ``memory://…`` in tests;
the matching fsspec backend, e.g. ``s3fs``, must be installed).
``sftp`` is accepted in the configuration but **not implemented**: it raises
``NotImplementedError`` so a misconfigured deployment fails loudly instead of
silently not delivering.

Files go under ``<target>/<run date>/``; the delivery manifest
(``<telco>.manifest.json``) is written last, so a receiver that sees it knows
every file it lists is complete (sha256 to check).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict


class DeliveryTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "fsspec", "sftp"] = "local"
    path: str = ""  # local folder, or fsspec URL
    options: dict[str, str] = {}  # fsspec storage options (no secrets here: use the env)


class DeliverySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: DeliveryTarget = DeliveryTarget()
    telcos: dict[str, DeliveryTarget] = {}

    def for_telco(self, telco: str) -> DeliveryTarget:
        return self.telcos.get(telco, self.default)


def deliver(root: Path, names: list[str], manifest: str, target: DeliveryTarget,
            run_date: str, base_dir: Path) -> str | None:
    """Send ``names`` (paths relative to ``root``), then ``manifest``; return where to.

    Relative paths are kept (``resolved/<telco>.csv`` stays apart from
    ``<telco>.csv``). None when the target has no path: nothing to send.
    """
    if not target.path:
        return None
    ordered = [*names, manifest]
    if target.kind == "local":
        folder = (base_dir / target.path).resolve() / run_date
        for name in ordered:
            dest = folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.copyfile(root / name, tmp)
            tmp.replace(dest)
        return str(folder)
    if target.kind == "fsspec":
        import fsspec

        url = f"{target.path.rstrip('/')}/{run_date}"
        fs, base = fsspec.core.url_to_fs(url, **target.options)
        for name in ordered:
            dest = f"{base}/{name}"
            fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(str(root / name), dest)
        return url
    raise NotImplementedError(
        f"delivery kind {target.kind!r} is not implemented yet (use local or fsspec)")
