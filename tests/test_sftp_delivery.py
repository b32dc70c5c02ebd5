"""SFTP delivery of correction lists, against a real SFTP server on loopback (issue 6).

The server (paramiko's server side, tests/servers.py) serves a temporary
folder to one user with one public key; it logs the order in which uploads
are renamed into place, so the manifest can be shown to arrive last.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.delivery import transport
from pipelines.stages import run_all
from pipelines.storage import objectstore

from .conftest import write_config
from .servers import SftpServer, sftp_server

RUN_DATE = "2026-11-28"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SftpServer]:
    folder = tmp_path / "sftp"
    folder.mkdir()
    with sftp_server(folder) as running:
        yield running


def _target(server: SftpServer, known_hosts: Path | None = None) -> transport.DeliveryTarget:
    return transport.DeliveryTarget(
        kind="sftp", path=f"sftp://{server.user}@127.0.0.1:{server.port}/incoming",
        options={"known_hosts": str(known_hosts or server.known_hosts),
                 "key_filename": str(server.client_key_file),
                 "allow_agent": "false", "look_for_keys": "false"})


def _files(folder: Path) -> list[str]:
    (folder / "resolved").mkdir(parents=True)
    (folder / "viettel.csv").write_bytes("\ufeffsố,lý do\n1,NO_ID\n".encode())
    (folder / "resolved" / "viettel.csv").write_bytes(b"\xef\xbb\xbfmsisdn\n")
    (folder / "viettel.manifest.json").write_text('{"telco": "viettel"}\n', encoding="utf-8")
    return ["viettel.csv", "resolved/viettel.csv"]


def test_sftp_delivery_uploads_then_renames_manifest_last(server: SftpServer,
                                                          tmp_path: Path) -> None:
    folder = tmp_path / "corrections"
    names = _files(folder)
    where = transport.deliver(folder, names, "viettel.manifest.json", _target(server),
                             RUN_DATE, tmp_path)
    assert where == f"sftp://{server.user}@127.0.0.1:{server.port}/incoming/{RUN_DATE}"
    delivered = server.root / "incoming" / RUN_DATE
    for name in [*names, "viettel.manifest.json"]:
        assert (delivered / name).read_bytes() == (folder / name).read_bytes()
    assert server.renames[-1] == f"incoming/{RUN_DATE}/viettel.manifest.json"
    assert sorted(server.renames[:-1]) == sorted(f"incoming/{RUN_DATE}/{n}" for n in names)
    assert not [p for p in delivered.rglob(".*")]  # no temporary file left behind
    # Delivering the date again replaces the files; the old manifest goes first.
    (folder / "viettel.csv").write_bytes(b"\xef\xbb\xbfchanged\n")
    transport.deliver(folder, names, "viettel.manifest.json", _target(server), RUN_DATE, tmp_path)
    assert (delivered / "viettel.csv").read_bytes() == b"\xef\xbb\xbfchanged\n"


def test_unknown_host_key_is_refused_before_anything_is_sent(server: SftpServer,
                                                             tmp_path: Path) -> None:
    import paramiko

    impostor = paramiko.RSAKey.generate(2048)
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{server.port} ssh-rsa {impostor.get_base64()}\n",
                     encoding="ascii")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("", encoding="ascii")
    folder = tmp_path / "corrections"
    names = _files(folder)
    for known_hosts in (wrong, empty):
        with pytest.raises(objectstore.StorageError, match="refused"):
            transport.deliver(folder, names, "viettel.manifest.json",
                             _target(server, known_hosts), RUN_DATE, tmp_path)
    assert not (server.root / "incoming").exists() and server.renames == []


def test_sftp_settings_keep_secrets_out_of_the_configuration() -> None:
    with pytest.raises(ValidationError, match="secret"):
        transport.DeliveryTarget(kind="sftp", path="sftp://u@h/x", options={"password": "p"})
    with pytest.raises(ValidationError, match="no password"):
        transport.DeliveryTarget(kind="sftp", path="sftp://u:p@h/x")
    with pytest.raises(ValidationError, match="sftp://"):
        transport.DeliveryTarget(kind="sftp", path="s3://bucket/x")
    with pytest.raises(ValidationError, match="kind sftp or object"):
        transport.DeliveryTarget(kind="local", path="sftp://u@h/x")
    assert transport.DeliveryTarget(kind="fsspec", path="s3://b/x").kind == "fsspec"


def test_password_from_the_named_environment_variable(server: SftpServer, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    target = transport.DeliveryTarget(
        kind="sftp", path=f"sftp://{server.user}@127.0.0.1:{server.port}/incoming",
        options={"known_hosts": str(server.known_hosts), "password_env": "VIETTEL_SFTP_PASSWORD",
                 "allow_agent": "false", "look_for_keys": "false"})
    folder = tmp_path / "corrections"
    names = _files(folder)
    with pytest.raises(objectstore.StorageError, match=r"VIETTEL_SFTP_PASSWORD.*not set"):
        transport.deliver(folder, names, "viettel.manifest.json", target, RUN_DATE, tmp_path)
    monkeypatch.setenv("VIETTEL_SFTP_PASSWORD", "not-the-key")  # this server wants the key
    with pytest.raises(objectstore.StorageError, match="refused"):
        transport.deliver(folder, names, "viettel.manifest.json", target, RUN_DATE, tmp_path)


@pytest.mark.slow
def test_run_delivers_one_telco_by_sftp(server: SftpServer, tmp_path: Path) -> None:
    relative = server.known_hosts.relative_to(tmp_path)  # resolved against the config's folder
    config = write_config(tmp_path, correction_cycle={"delivery": {
        "default": {"kind": "local", "path": "outbox"},
        "telcos": {"viettel": {
            "kind": "sftp", "path": f"sftp://{server.user}@127.0.0.1:{server.port}/incoming",
            "options": {"known_hosts": str(relative), "key_filename": str(server.client_key_file),
                        "allow_agent": "false", "look_for_keys": "false"}}}}})
    run_dir = Path(run_all(str(config), RUN_DATE)["run_dir"])
    delivered = server.root / "incoming" / RUN_DATE
    manifest = json.loads((delivered / "viettel.manifest.json").read_text(encoding="utf-8"))
    assert manifest["telco"] == "viettel" and len(manifest["files"]) == 4
    for entry in manifest["files"]:
        assert (delivered / entry["path"]).read_bytes() == \
            (run_dir / "corrections" / entry["path"]).read_bytes()
    assert server.renames[-1] == f"incoming/{RUN_DATE}/viettel.manifest.json"
    assert not list(delivered.glob("mobifone*"))  # the others went to their local outbox
    assert (tmp_path / "outbox" / RUN_DATE / "mobifone.manifest.json").exists()
    assert not (tmp_path / "outbox" / RUN_DATE / "viettel.csv").exists()
