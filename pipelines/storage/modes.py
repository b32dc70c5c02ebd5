"""Who may read what simrecon writes (docs/deployment.md, "Where data lands").

Every file and folder simrecon writes is owner-only (files 0600, folders 0700): the
runs hold subscribers' identities and the registry snapshot every citizen's. The
modes are set explicitly by the writers (``pipelines/storage/files.py``, the XLSX
writer), so they do not depend on the umask of whoever starts a task; the process
umask is also set to 077 when a configuration is loaded, for what third-party code
creates (SQLite files, Airflow-side temporary files).

A published run folder may be opened to one group (``outputs.group_readable``,
``outputs.group``): at publication its files become 0640 and its folders 0750, owned
by that group. The engineer-only folder (``private_dir``: normalised and quarantined
rows, the registry snapshot, the review key) is never opened to the group.
"""

from __future__ import annotations

import grp
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
GROUP_FILE_MODE = 0o640
GROUP_DIR_MODE = 0o750
UMASK = 0o077


def restrict_umask() -> None:
    """Owner-only for everything this process creates from now on (idempotent)."""
    os.umask(UMASK)


def owner_only(path: Path) -> Path:
    """Make ``path`` (a file or a folder) owner-only; returns it."""
    os.chmod(path, DIR_MODE if Path(path).is_dir() else FILE_MODE)
    return path


def make_dirs(path: Path) -> Path:
    """``mkdir -p`` whose new folders are 0700 whatever the umask (existing ones are
    left as they are: an operator may have opened a parent on purpose)."""
    path = Path(path)
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # created meanwhile by a parallel task
            continue
        os.chmod(folder, DIR_MODE)
    return path


def open_private(path: Path) -> int:
    """A new file descriptor for writing ``path``, created 0600 (never wider, even for a
    moment: the mode is given at creation, then enforced against the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def group_id(group: str | None) -> int | None:
    """The numeric id of ``group`` (a name or a number); None = leave the group as is."""
    if group is None or group == "":
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise ValueError(f"outputs.group: no group named {group!r} on this machine") from exc


def share_with_group(folder: Path, group: str | None, parents: tuple[Path, ...] = ()) -> None:
    """Open ``folder`` (recursively) to its group: files 0640, folders 0750, and the
    group set to ``group`` when given. ``parents`` (e.g. the output folder) become
    traversable by the group (0750) so that the group can reach ``folder``."""
    gid = group_id(group)
    for path in parents:
        _set(Path(path), GROUP_DIR_MODE, gid)
    _set_tree(Path(folder), GROUP_DIR_MODE, GROUP_FILE_MODE, gid)


def restrict_tree(folder: Path) -> None:
    """Make ``folder`` and everything under it owner-only (0700/0600)."""
    _set_tree(Path(folder), DIR_MODE, FILE_MODE, None)


def _set_tree(folder: Path, dir_mode: int, file_mode: int, gid: int | None) -> None:
    """``folder`` and its folders to ``dir_mode``, its files to ``file_mode``."""
    _set(folder, dir_mode, gid)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            _set(Path(root) / name, dir_mode, gid)
        for name in files:
            _set(Path(root) / name, file_mode, gid)


def _set(path: Path, mode: int, gid: int | None) -> None:
    if gid is not None:
        os.chown(path, -1, gid)
    os.chmod(path, mode)
