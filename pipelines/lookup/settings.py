"""Settings of the look-up index (in the run configuration) and of the service (its own file).

The run configuration's ``lookup:`` section says where the index and the service's
state live, because the pipeline writes the index and delivers verification requests.
``simrecon serve`` reads its own file (``config/lookup.yaml``): where to listen, session
and lockout policy, rate limit, the roles and the fields each role sees. It holds no
credential: agency accounts live (hashed) in the service store, database passwords in
the environment (``PGPASSWORD``/``.pgpass``), and nothing is shared with Airflow.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.storage import objectstore

# Every field a look-up can answer with (pipelines/lookup/records.py), in display order.
ANSWER_FIELDS = (
    "telco", "msisdn", "status", "flags", "province", "province_name", "id_type",
    "id_number", "full_name", "date_of_birth", "gender", "citizen_id", "line_status",
    "activation_date", "first_run", "last_run",
)
ID_FIELDS = ("id_number", "citizen_id")  # masked for a role without ``unmask_ids``


class LookupSettingsError(ValueError):
    """The service settings file cannot be used; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_password(value: str) -> str:
    if objectstore.has_password(value):
        raise ValueError("no password in a store URL: use PGPASSWORD or a .pgpass file")
    return value


class LookupSettings(_Strict):
    """The look-up index and the service's state (run configuration, ``lookup:``).

    ``index_store``: where the index lives; empty = ``<output_dir>/lookup/index.sqlite``
    (``<work_dir>/…`` when output_dir is a URL), outside every run folder; a path,
    ``sqlite:///…`` or ``postgresql://user@host/db``. It is rebuilt after each published
    run and swapped in whole. ``service_store``: accounts, sessions, the audit log and
    verification requests (never rebuilt); empty = ``<output_dir>/lookup/service.sqlite``.
    ``public_url``: where agencies reach the service; when set, the report's flagged
    numbers link to its look-up page. ``records_per_bucket`` and ``partition_rows`` shape
    the index build (docs/lookup.md, "The index"); ``keep_unseen_days``: a subscription
    no longer in the runs stays findable this long after the last run that had it.
    """

    index_store: str = ""
    service_store: str = ""
    public_url: str = ""
    records_per_bucket: int = Field(16, ge=1, le=4096)
    # Records per partition of the build (the index is the same for any value): a
    # partition and two more in flight are what it holds; 30M subscriptions:
    # 1,000,000 peaked at 3.1 GB, 500,000 at 1.7 GB, in the same time.
    partition_rows: int = Field(500_000, ge=1000)
    keep_unseen_days: int = Field(365, ge=0)

    @field_validator("index_store", "service_store")
    @classmethod
    def _no_password(cls, value: str) -> str:
        return _no_password(value)

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^\s#?]+", value):
            raise ValueError("must be an http(s) URL without query or fragment")
        return value.rstrip("/")


class RoleSettings(_Strict):
    """What a role sees: ``fields`` of each subscription (from ``ANSWER_FIELDS``), and
    whether document and citizen numbers are shown in full (``unmask_ids``)."""

    fields: list[str]
    unmask_ids: bool = False
    may_request_verification: bool = True

    @field_validator("fields")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ANSWER_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; allowed: {list(ANSWER_FIELDS)}")
        for required in ("telco", "msisdn", "status"):
            if required not in value:
                raise ValueError(f"{required!r} must be among a role's fields")
        return value


DEFAULT_ROLES = {
    # Investigators (police, the city's information department): the full identity.
    "investigator": RoleSettings(fields=list(ANSWER_FIELDS), unmask_ids=True),
    # Compliance staff: status, flags and masked document numbers; no name, no birth date.
    "compliance": RoleSettings(fields=[
        "telco", "msisdn", "status", "flags", "province", "province_name", "id_type",
        "id_number", "citizen_id", "line_status", "activation_date", "first_run",
        "last_run"], unmask_ids=False),
}


class ServeSettings(_Strict):
    """``simrecon serve`` (``config/lookup.yaml``; docs/lookup.md, "Settings").

    ``run_config``: the run configuration whose ``lookup:`` section names the stores
    (relative to this file). ``session_minutes``: a login's lifetime. After
    ``max_failed_logins`` wrong passwords in a row an account is locked for
    ``lockout_minutes``. ``lookups_per_minute``: per account, over the last 60 s, every
    look-up and request counted. ``legal_bases``: when not empty, the legal basis must
    be one of them.
    """

    run_config: str = "simrecon.yaml"
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    session_minutes: int = Field(15, ge=1, le=24 * 60)
    max_failed_logins: int = Field(5, ge=1, le=100)
    lockout_minutes: int = Field(30, ge=1)
    lookups_per_minute: int = Field(20, ge=1)
    roles: dict[str, RoleSettings] = DEFAULT_ROLES
    legal_bases: list[str] = []
    max_reason_chars: int = Field(300, ge=20, le=2000)
    settings_file: str = ""

    @field_validator("roles")
    @classmethod
    def _role_names(cls, value: dict[str, RoleSettings]) -> dict[str, RoleSettings]:
        for role in value:
            if not re.fullmatch(r"[a-z][a-z0-9_-]*", role):
                raise ValueError(f"role {role!r}: lower-case letters, digits, - and _")
        return value

    @property
    def run_config_path(self) -> Path:
        return (Path(self.settings_file).parent / self.run_config).resolve()


def load_serve_settings(path: Path | str) -> ServeSettings:
    path = Path(path).resolve()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise LookupSettingsError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise LookupSettingsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise LookupSettingsError(f"{path}: expected a mapping at the top level")
    data["settings_file"] = str(path)
    try:
        return ServeSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}"
                             for e in exc.errors())
        raise LookupSettingsError(f"{path}: {problems}") from exc
