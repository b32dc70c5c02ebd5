"""Typed run configuration: the main YAML, one YAML mapping per telco, thresholds.

Adding a telco is a new YAML file in ``telcos_dir``, never code. Every
threshold a rule uses lives here with its default, so a policy change is a
config change that shows up in review. Relative paths resolve against the
folder of the file that names them.
"""

from __future__ import annotations

import re
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.correction_cycle.deadlines import DeadlinePolicy
from pipelines.delivery.transport import DeliverySettings
from pipelines.intake.encodings import canonical_encoding
from pipelines.lookup.settings import LookupSettings
from pipelines.schema import (
    GENDERS,
    ID_TYPES,
    LINE_STATUSES,
    REQUIRED_FIELDS,
    SUBSCRIPTION_FIELDS,
    SUBSCRIPTION_TYPES,
)
from pipelines.storage import objectstore
from pipelines.storage.modes import restrict_umask
from pipelines.storage.paths import default_private_dir


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvOptions(_Strict):
    """CSV dialect of an export (docs/data-contracts.md, "Encodings").

    ``encoding``: ``utf-8`` (a BOM is accepted), ``utf-16`` (BOM or not),
    ``windows-1258``, ``tcvn3`` (ABC), ``vni`` (VNI-Windows), or ``auto`` to
    detect; a file whose encoding ``auto`` cannot establish is refused.
    """

    delimiter: str = ","
    encoding: str = "utf-8"
    quote_char: str = '"'

    @field_validator("delimiter", "quote_char")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("must be exactly one character")
        if value in "\r\n":
            raise ValueError("cannot be a line break")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        canonical_encoding(value)  # ValueError names the allowed ones
        return value

    @model_validator(mode="after")
    def _distinct(self) -> CsvOptions:
        if self.delimiter == self.quote_char:
            raise ValueError("delimiter and quote_char must differ")
        return self


_VOCABULARY_TARGETS: dict[str, tuple[str, ...]] = {
    "gender": GENDERS,
    "id_type": ID_TYPES,
    "subscription_type": SUBSCRIPTION_TYPES,
    "line_status": LINE_STATUSES,
}


# Longest plausible value of each canonical field, in characters, after trimming
# (docs/data-contracts.md, "Plausible lengths"). A longer value is not a record
# but a defect (a column shifted into another, a runaway export): the row is
# quarantined (FIELD_TOO_LONG) instead of being matched.
DEFAULT_MAX_FIELD_LENGTHS: dict[str, int] = {
    "msisdn": 32,             # +84 91 234 5678 with separators, 11-digit legacy numbers
    "full_name": 150,         # the longest Vietnamese names run to about 60 characters
    "date_of_birth": 40,      # a date, a year, an Excel serial or an ISO timestamp
    "gender": 40,
    "id_type": 40,
    "id_number": 40,          # 12 digits; passports up to 12 with separators
    "activation_date": 40,
    "subscription_type": 40,
    "line_status": 40,
    "point_of_sale": 200,     # a dealer code, sometimes with its address
}


class IntakeSettings(_Strict):
    """Reading exports (docs/data-contracts.md, "Reading in chunks" and "Suspect text").

    ``chunk_mb``: bytes of the export read, decoded and parsed at once (whole
    records; a record longer than the chunk extends it). Peak memory of ingest is
    a few times this, whatever the size of the file. ``normalise_batch_rows``: rows
    normalised at once. ``max_field_length``: longest plausible value per canonical
    field, in characters (defaults in ``DEFAULT_MAX_FIELD_LENGTHS``; a field named
    here overrides its default). ``mojibake``: ``repair`` (text that is UTF-8 read as
    Windows-1252/1258 and saved again is repaired when every suspect value has
    exactly one reading, and the repair is counted in the run summary; otherwise the
    file is refused with the evidence) or ``refuse`` (always refused).
    """

    chunk_mb: float = Field(32, gt=0, le=4096)
    normalise_batch_rows: int = Field(500_000, ge=1_000)
    max_field_length: dict[str, int] = {}
    mojibake: Literal["repair", "refuse"] = "repair"

    @field_validator("max_field_length")
    @classmethod
    def _known_fields(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(SUBSCRIPTION_FIELDS))
        if unknown:
            raise ValueError(f"unknown canonical field(s): {unknown}")
        if any(limit < 1 for limit in value.values()):
            raise ValueError("lengths must be at least 1")
        return value

    @property
    def chunk_bytes(self) -> int:
        return int(self.chunk_mb * (1 << 20))

    def field_lengths(self) -> dict[str, int]:
        return {**DEFAULT_MAX_FIELD_LENGTHS, **self.max_field_length}


class TelcoMapping(_Strict):
    """How one telco's export maps onto the canonical subscription fields."""

    telco: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    display_name: str
    source: str
    format: Literal["csv", "parquet"]
    csv: CsvOptions = CsvOptions()
    columns: dict[str, str]
    defaults: dict[str, str] = {}
    date_formats: dict[str, list[str]]
    vocabularies: dict[str, dict[str, str]]
    # Filled in by the loader: the YAML file this mapping came from.
    mapping_file: str = ""

    @model_validator(mode="after")
    def _check_fields(self) -> TelcoMapping:
        unknown = set(self.columns) - set(SUBSCRIPTION_FIELDS)
        if unknown:
            raise ValueError(f"unknown canonical field(s) in columns: {sorted(unknown)}")
        missing = [f for f in REQUIRED_FIELDS if f not in self.columns and f not in self.defaults]
        if missing:
            raise ValueError(f"required canonical field(s) not mapped: {missing}")
        for field in ("date_of_birth", "activation_date"):
            if not self.date_formats.get(field):
                raise ValueError(f"date_formats.{field} must list at least one format")
        unknown = set(self.defaults) - set(SUBSCRIPTION_FIELDS)
        if unknown:
            raise ValueError(f"unknown canonical field(s) in defaults: {sorted(unknown)}")
        for field, targets in _VOCABULARY_TARGETS.items():
            vocabulary = self.vocabularies.get(field, {})
            if field in self.columns and not vocabulary:
                raise ValueError(f"vocabularies.{field} is required when {field} is mapped")
            bad = sorted({v for v in vocabulary.values() if v not in targets})
            if bad:
                raise ValueError(f"vocabularies.{field} maps to {bad}; allowed: {list(targets)}")
            default = self.defaults.get(field)
            if default is not None and field not in self.columns \
                    and default not in targets and default not in vocabulary:
                raise ValueError(
                    f"defaults.{field} is {default!r}: give a canonical value {list(targets)}"
                    + (" or a key of vocabularies." + field if vocabulary else ""))
        return self

    def vocabulary(self, field: str) -> dict[str, str] | None:
        """The vocabulary a coded field is read through: the mapping's own, and for a
        field filled from ``defaults`` also every canonical code as itself (so that
        ``defaults: {line_status: ACTIVE}`` needs no vocabulary). None: the field is
        neither mapped nor defaulted (it stays empty)."""
        explicit = self.vocabularies.get(field)
        if field in self.columns:
            return explicit
        if field in self.defaults:
            return {**{code: code for code in _VOCABULARY_TARGETS[field]}, **(explicit or {})}
        return explicit

    def source_path(self) -> Path | objectstore.RemoteFile:
        """The export: a local path (relative to the mapping file) or, for a URL
        (``s3://…``), a ``RemoteFile`` read in place (pipelines/storage/objectstore.py)."""
        return objectstore.input_file(self.source, Path(self.mapping_file).parent)


class MatchingSettings(_Strict):
    """Thresholds of the holder comparison (see docs/matching.md)."""

    name_max_typo_edits: int = Field(1, ge=0, le=3)
    name_partial_threshold: float = Field(90.0, ge=0, le=100)
    near_miss_search: bool = True
    near_miss_min_name_level: str = "ONE_TYPO"
    # Fellegi–Sunter model (docs/matching.md): the JSON model file (relative paths
    # resolve against the repository root; empty = the bundled default in models/),
    # the probability bands, and when a searched candidate is clearly best.
    model_file: str = ""
    verify_above: float = Field(0.999, gt=0, lt=1)
    mismatch_below: float = Field(0.01, gt=0, lt=1)
    candidate_search: bool = True
    candidate_max_block: int = Field(200, ge=1)
    # The candidate search cuts the rows it searches into batches of at most this many
    # rows: a routing task holds one batch, a search task one birth-year partition of
    # the registry and one batch at a time, never the run (docs/matching.md §2).
    search_batch_rows: int = Field(100_000, ge=1)
    suggest_min_probability: float = Field(0.999, gt=0, lt=1)
    suggest_min_margin_bits: float = Field(6.0, ge=0)
    # The run's namesake prior (docs/matching.md §4): how much more (or less) often the
    # holders of the searched rows have a namesake than the registry's citizens, estimated
    # from the run's own searched rows; pulled towards "as often" by this many rows.
    namesake_prior: bool = True
    namesake_prior_rows: float = Field(200.0, ge=0)

    @model_validator(mode="after")
    def _bands_ordered(self) -> MatchingSettings:
        if self.mismatch_below > self.verify_above:
            raise ValueError("mismatch_below must not exceed verify_above")
        return self


class FlagSettings(_Strict):
    """Thresholds of the flag rules (see docs/flags.md)."""

    max_active_subscriptions_per_holder: int = Field(9, ge=1)
    bulk_min_activations: int = Field(20, ge=2)
    bulk_max_distinct_ids: int = Field(3, ge=1)
    underage_years: int = Field(14, ge=0)
    duplicate_ignores_statuses: list[str] = ["CANCELLED"]
    excess_counts_statuses: list[str] = ["ACTIVE"]


class GateSettings(_Strict):
    """Thresholds of the data-quality gates (see docs/data-contracts.md, "Gates").

    Shares are fractions of a telco's normalised rows (0.10 = 10 %).
    """

    max_no_id_share: float = Field(0.10, ge=0, le=1)
    max_malformed_id_share: float = Field(0.10, ge=0, le=1)
    max_missing_msisdn_share: float = Field(0.10, ge=0, le=1)
    # Rows with a defect of their own (activation outside the allowed range, a birth
    # after the run date, a code outside its vocabulary): a share, never one row, fails.
    max_bad_row_share: float = Field(0.01, ge=0, le=1)
    max_row_count_drop: float = Field(0.50, ge=0, le=1)
    max_nfd_share_change: float = Field(0.50, ge=0, le=1)
    earliest_activation: date = date(1990, 1, 1)
    example_rows: int = Field(5, ge=0, le=20)


class CorrectionCycleSettings(_Strict):
    """Review, approval, deadlines and delivery of correction lists (docs/data-contracts.md)."""

    deadlines: DeadlinePolicy = DeadlinePolicy()
    delivery: DeliverySettings = DeliverySettings()
    # Where flag history and review decisions live (pipelines/correction_cycle/history.py): empty =
    # <output_dir>/history.sqlite (<work_dir>/… when output_dir is a URL); a file path or
    # sqlite:///… URL (SQLite), or postgresql://user@host:port/db (password from
    # PGPASSWORD / ~/.pgpass, never in this file).
    history_store: str = ""
    # Folder where reviewers drop filled-in queues (<reviewer>__<name>.csv|xlsx); the
    # flag stage imports them before applying decisions. Empty = CLI import only.
    review_drop_dir: str = ""
    # The DAG's approval step before publish: auto-approve only for demos and tests.
    auto_approve: bool = False

    @field_validator("history_store")
    @classmethod
    def _no_password(cls, value: str) -> str:
        if objectstore.has_password(value):
            raise ValueError("no password in the history store URL: use PGPASSWORD or a "
                             ".pgpass file (PGPASSFILE) in the environment")
        return value


class ReportSettings(_Strict):
    """The compliance report (``report.html``, ``report.xlsx``; docs/data-contracts.md).

    ``trend_runs``: runs per telco in the trend (this one included). ``flagged_rows``:
    flagged subscriptions in the report's searchable table, chosen so that every
    telco and flag is represented; ``workbook_flagged_rows`` the same for the
    workbook's ``flagged`` sheet. ``top``: rows of the top points of sale and top
    holders. ``unmasked_roles``: roles that may have a copy with full ID numbers
    rendered (``simrecon report render --role``); the published report is always
    masked. ``provinces_file``: the old-code → 2025 unit table (empty = bundled).
    ``audience``: who may read the report, printed in its personal-data notice (the
    report holds personal data under Decree 13/2023/ND-CP even with ID numbers masked);
    default: compliance officers, reviewers of the review queue and auditors.
    """

    trend_runs: int = Field(14, ge=1, le=366)
    flagged_rows: int = Field(2000, ge=0, le=20_000)
    workbook_flagged_rows: int = Field(20_000, ge=0, le=1_000_000)
    top: int = Field(20, ge=1, le=1000)
    unmasked_roles: list[str] = []
    provinces_file: str = ""

    @field_validator("unmasked_roles")
    @classmethod
    def _role_names(cls, value: list[str]) -> list[str]:
        for role in value:
            if not re.fullmatch(r"[a-z][a-z0-9_-]*", role):
                raise ValueError(f"role {role!r}: lower-case letters, digits, - and _")
        return value

    audience: list[str] = Field(
        default_factory=lambda: ["compliance officers", "review-queue reviewers", "auditors"],
        min_length=1)


class PreparedRegistrySettings(_Strict):
    """Prepared registry snapshots and sharding (docs/deployment.md, docs/data-contracts.md).

    ``shards``: how many hash partitions a snapshot (and with it the subscriptions of
    a run) is cut into; results do not depend on it. ``prepare_in_run``: the run's
    ``gate_registry`` step prepares the snapshot of ``registry`` with ``shards`` shards
    itself when none exists yet (the demo, the tests, small set-ups); ``false`` (a
    production deployment) uses the latest snapshot the ``citizen_registry_refresh``
    DAG (or ``simrecon registry prepare``) published, with that snapshot's shard count.
    """

    dir: str = ""  # empty = <private_dir>/registry (never inside the published runs)
    shards: int = Field(8, ge=1, le=1024)
    prepare_in_run: bool = True
    keep: int = Field(3, ge=1)  # published snapshots kept (the latest always is)

    @field_validator("dir")
    @classmethod
    def _local_dir(cls, value: str) -> str:
        if objectstore.is_url(value):
            raise ValueError("must be a local (or shared, mounted) folder: snapshots are "
                             "published with atomic renames")
        return value


class OutputSettings(_Strict):
    """Who may read the published run folders (docs/deployment.md, "Where data lands").

    By default every file simrecon writes is owner-only (0600, folders 0700).
    ``group_readable``: a published run folder (``<output_dir>/<date>``) is opened to a
    group at publication: files 0640, folders 0750 (and ``<output_dir>`` itself 0750 so
    the group can reach it); ``group``: that group's name (or id), set on those files
    (``chgrp``); empty = the group they were created with. The engineer-only folder
    (``private_dir``) always stays owner-only.
    """

    group_readable: bool = False
    group: str | None = None

    @field_validator("group")
    @classmethod
    def _group_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?", value):
            raise ValueError(f"{value!r} is not a group name or id")
        return value

    @model_validator(mode="after")
    def _group_needs_sharing(self) -> OutputSettings:
        if self.group and not self.group_readable:
            raise ValueError("group is set but group_readable is false: set both")
        return self


class RunConfig(_Strict):
    registry: str
    telcos_dir: str = "telcos"
    output_dir: str = "runs"  # a folder, or a URL (s3://bucket/runs) to publish runs to
    # Local folder for the run's working state (staging, .work, the local copy of each
    # published run, the default history store) when output_dir is a URL; must then be
    # set, and persist. Empty when output_dir is a folder (that folder is used).
    work_dir: str = ""
    matching: MatchingSettings = MatchingSettings()
    flags: FlagSettings = FlagSettings()
    gates: GateSettings = GateSettings()
    correction_cycle: CorrectionCycleSettings = CorrectionCycleSettings()
    prepared_registry: PreparedRegistrySettings = PreparedRegistrySettings()
    report: ReportSettings = ReportSettings()
    intake: IntakeSettings = IntakeSettings()
    lookup: LookupSettings = LookupSettings()  # the look-up index and service (docs/lookup.md)
    config_file: str = ""
    # Engineer-only folder (docs/deployment.md, "Where data lands"): each run's normalised
    # and quarantined rows (<private_dir>/<date>/), the prepared registry snapshots
    # (<private_dir>/registry) and the review key. Empty = <output_dir>-private, a
    # sibling of the published runs (of work_dir when output_dir is a URL). Local only.
    private_dir: str = ""
    outputs: OutputSettings = OutputSettings()
    # Every stage works in shared object storage (pipelines/storage/workarea.py): output_dir
    # (a URL) also holds each run's staging and working state and the prepared registry, so
    # tasks may run on any worker (Celery, Kubernetes). Needs a database history store.
    shared_work: bool = False

    @cached_property
    def base_dir(self) -> Path:
        return Path(self.config_file).parent

    def resolve(self, value: str) -> Path:
        return Path(objectstore.resolve(value, self.base_dir))  # file:// URLs are paths

    @model_validator(mode="after")
    def _work_dir_with_url(self) -> RunConfig:
        if self.shared_work:
            return self._shared_work()
        if objectstore.is_url(self.output_dir) and not self.work_dir:
            raise ValueError(f"output_dir is a URL ({objectstore.redact(self.output_dir)}): "
                             "set work_dir, a local folder for the run's working state")
        if self.work_dir and not objectstore.is_url(self.output_dir):
            raise ValueError("work_dir is only used when output_dir is a URL; with a "
                             "local output_dir the runs are built in that folder")
        if objectstore.is_url(self.work_dir):
            raise ValueError("work_dir must be a local folder (atomic renames, fsync)")
        if objectstore.is_url(self.private_dir):
            raise ValueError("private_dir must be a local folder: it is never published")
        return self

    def _shared_work(self) -> RunConfig:
        """With ``shared_work`` nothing a task needs may be on one machine's disk."""
        if not objectstore.is_url(self.output_dir):
            raise ValueError("shared_work needs output_dir in object storage (s3://bucket/runs)")
        if objectstore.is_url(self.work_dir):
            raise ValueError("work_dir (with shared_work: local scratch for each task's work "
                             "area) must be a local folder")
        if self.prepared_registry.dir:
            raise ValueError("with shared_work the prepared registry lives in "
                             "<output_dir>/.registry: leave prepared_registry.dir empty")
        if self.private_dir:
            raise ValueError("with shared_work the engineer-only files live in "
                             "<output_dir>/.private (restrict that prefix to engineers in "
                             "the bucket's policy): leave private_dir empty")
        if not self.correction_cycle.history_store.startswith(("postgresql://",
                                                               "postgres://")):
            raise ValueError("with shared_work correction_cycle.history_store must be a "
                             "PostgreSQL URL (every worker records into it)")
        return self

    @property
    def registry_path(self) -> Path | objectstore.RemoteFile:
        """The registry snapshot: a local path, or a ``RemoteFile`` for a URL."""
        return objectstore.input_file(self.registry, self.base_dir)

    @property
    def output_path(self) -> Path:
        """The local folder runs are built (and swapped into place) in: ``output_dir``,
        or ``work_dir`` when ``output_dir`` is a URL; with ``shared_work``, inside a stage,
        the stage's work area (pipelines/storage/workarea.py)."""
        from pipelines.storage.workarea import active_root

        if self.shared_work and (local := active_root()) is not None:
            return local
        return self.resolve(self.work_dir if self.publish_url else self.output_dir)

    @property
    def publish_url(self) -> str | None:
        """Where published runs are copied to (``output_dir`` when it is a URL)."""
        return self.output_dir.rstrip("/") if objectstore.is_url(self.output_dir) else None

    @property
    def private_path(self) -> Path:
        """The engineer-only folder (``private_dir``; default ``<output_dir>-private``;
        with ``shared_work`` the bucket's ``.private/`` prefix, which every worker reaches
        and compliance staff do not)."""
        if self.shared_work:
            return self.output_path / ".private"
        if self.private_dir:
            return self.resolve(self.private_dir)
        return default_private_dir(self.output_path)

    @property
    def prepared_registry_path(self) -> Path:
        """Where prepared registry snapshots live (``prepared_registry.dir``; default
        ``<private_dir>/registry``, outside the folder compliance staff read; with
        ``shared_work`` the bucket's ``.registry/`` prefix)."""
        setting = self.prepared_registry.dir
        if self.shared_work:
            return self.output_path / ".registry"
        return self.resolve(setting) if setting else self.private_path / "registry"

    def telcos(self) -> list[TelcoMapping]:
        """Every telco mapping in ``telcos_dir``, sorted by telco name."""
        folder = self.resolve(self.telcos_dir)
        files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
        if not files:
            raise ConfigError(f"{folder}: no telco mapping (*.yaml) found")
        mappings = [load_telco_mapping(f) for f in files]
        names = [m.telco for m in mappings]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"{folder}: telco name(s) defined twice: {duplicated}")
        return sorted(mappings, key=lambda m: m.telco)

    def telco(self, name: str) -> TelcoMapping:
        for mapping in self.telcos():
            if mapping.telco == name:
                return mapping
        raise ConfigError(f"no telco mapping named {name!r} in {self.resolve(self.telcos_dir)}")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _validated(model: type[BaseModel], data: dict, path: Path) -> BaseModel:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


def load_telco_mapping(path: Path | str) -> TelcoMapping:
    path = Path(path).resolve()
    data = _read_yaml(path)
    data["mapping_file"] = str(path)
    return _validated(TelcoMapping, data, path)  # type: ignore[return-value]


def load_config(path: Path | str) -> RunConfig:
    """The run configuration at ``path``. Also sets the process umask to 077: whatever
    a run creates is owner-only even where no writer sets the mode itself."""
    restrict_umask()
    path = Path(path).resolve()
    data = _read_yaml(path)
    data["config_file"] = str(path)
    return _validated(RunConfig, data, path)  # type: ignore[return-value]


def parse_run_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"run date {value!r} is not YYYY-MM-DD") from exc
