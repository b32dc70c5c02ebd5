"""``simrecon mapping check``: what a telco's mapping makes of its export, before a run.

Onboarding a telco is a new YAML mapping; what goes wrong is rarely the YAML
itself but what it quietly leaves undone: a coded field nobody mapped, a value the
vocabulary does not know, a date format that never matches, or a flag rule that can
never fire for this telco (no line status: no EXCESS_SUBSCRIPTIONS). The check reads
the first rows of the export through the mapping, exactly as ingest and normalise
would, and says so. :func:`rule_warnings` is also logged by every run at ingest.

Sample values are few (``--rows``, 3 shown per field) and ID and phone numbers are
masked (``matching.ids.mask_id``): the engineer sees the shape, not the citizen.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from matching.ids import mask_id
from pipelines.config import FlagSettings, IntakeSettings, RunConfig, TelcoMapping
from pipelines.errors import TelcoInputError
from pipelines.intake import ingest, normalise
from pipelines.schema import SUBSCRIPTION_FIELDS

_MASKED = ("msisdn", "id_number")
_CONSTANT_IS_WRONG = ("msisdn", "full_name", "date_of_birth", "id_number", "activation_date")
SHOWN = 3


def _values(mapping: TelcoMapping, name: str) -> set[str | None] | None:
    """Canonical values a coded field can take with this mapping (None: any/unknown)."""
    vocabulary = mapping.vocabulary(name)
    if name in mapping.columns:
        return set(vocabulary.values()) if vocabulary else None
    if name in mapping.defaults:
        return {(vocabulary or {}).get(mapping.defaults[name])}
    return {None}


def _described(mapping: TelcoMapping, name: str) -> str:
    if name in mapping.columns:
        return f"{name} only ever maps to {sorted(_values(mapping, name) or [])}"
    if name in mapping.defaults:
        return f"{name} is always {mapping.defaults[name]!r} (defaults)"
    return f"{name} is neither mapped nor defaulted"


def rule_warnings(mapping: TelcoMapping, flags: FlagSettings) -> list[str]:
    """Every flag rule (or status) that cannot fire, or fires on every row, with this
    mapping, and why (docs/flags.md says what each rule reads)."""
    out: list[str] = []
    status = _values(mapping, "line_status")
    if status is not None and not status & set(flags.excess_counts_statuses):
        out.append(
            f"EXCESS_SUBSCRIPTIONS cannot fire: {_described(mapping, 'line_status')}, and only "
            f"subscriptions whose line status is in flags.excess_counts_statuses "
            f"{flags.excess_counts_statuses} are counted; this telco's subscriptions count "
            "for no holder, here or at another telco (map the line status, or set "
            "defaults: {line_status: ACTIVE} if every listed line is active)")
    if status is not None and status <= set(flags.duplicate_ignores_statuses):
        out.append(
            f"DUPLICATE_MSISDN cannot fire: {_described(mapping, 'line_status')}, which "
            f"flags.duplicate_ignores_statuses {flags.duplicate_ignores_statuses} ignores")
    if "point_of_sale" not in mapping.columns:
        if "point_of_sale" in mapping.defaults:
            out.append(
                "BULK_ACTIVATION fires on every busy day: point_of_sale is always "
                f"{mapping.defaults['point_of_sale']!r} (defaults), so all of a day's "
                "activations count as one point of sale")
        else:
            out.append("BULK_ACTIVATION cannot fire: point_of_sale is neither mapped nor "
                       "defaulted (the rule groups activations by point of sale and day)")
    if "gender" not in mapping.columns:
        if "gender" in mapping.defaults:
            out.append(
                "GENDER_MISMATCH fires for every holder of the other gender: gender is always "
                f"{mapping.defaults['gender']!r} (defaults); leave it out instead")
        else:
            out.append("GENDER_MISMATCH cannot fire: gender is neither mapped nor defaulted "
                       "(the match then weighs name and date of birth only)")
    id_types = _values(mapping, "id_type")
    if "id_type" in mapping.columns and id_types is not None:
        if "CMND" not in id_types:
            out.append("LEGACY_ID cannot fire for a declared CMND: no id_type value maps to "
                       "CMND (rows declaring one are quarantined as UNKNOWN_VOCABULARY_VALUE)")
        if "PASSPORT" not in id_types:
            out.append("FOREIGN_DOCUMENT (status) cannot be given: no id_type value maps to "
                       "PASSPORT, so a passport number arrives as an invalid CCCD/CMND")
    for name in _CONSTANT_IS_WRONG:
        if name not in mapping.columns and name in mapping.defaults:
            out.append(f"{name} is the same for every row ({mapping.defaults[name]!r}, "
                       "defaults): every rule over it treats all rows as one")
    return out


@dataclass
class FieldSample:
    name: str
    source: str
    before: list[str | None] = field(default_factory=list)
    after: list[str | None] = field(default_factory=list)


@dataclass
class MappingReport:
    """What ``simrecon mapping check`` prints (``lines()``)."""

    telco: str
    source: str
    error: str | None = None
    encoding: str = ""
    declared: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    rows_read: int = 0
    mojibake_rows: int = 0
    quarantine: Counter[str] = field(default_factory=Counter)
    fields: list[FieldSample] = field(default_factory=list)
    unknown_values: dict[str, Counter[str]] = field(default_factory=dict)
    unused_vocabulary: dict[str, list[str]] = field(default_factory=dict)
    date_formats: dict[str, dict[str, int]] = field(default_factory=dict)
    unparsed_dates: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"telco {self.telco}: {self.source}"]
        if self.error:
            out.append(f"  UNUSABLE: {self.error}")
        else:
            detected = f" (declared {self.declared!r}; scores {self.scores})" \
                if self.declared == "auto" else f" (declared {self.declared!r})" \
                if self.declared else ""
            out.append(f"encoding: {self.encoding}{detected}")
            if self.mojibake_rows:
                out.append(f"  mojibake repaired in {self.mojibake_rows} of the rows read")
            out.append(f"rows read: {self.rows_read} (the first ones of the file)")
            if self.quarantine:
                out.append("  quarantined: " + ", ".join(
                    f"{reason} {n}" for reason, n in sorted(self.quarantine.items())))
            out.append("fields (before -> after normalisation; ID and phone numbers masked):")
            for sample in self.fields:
                out.append(f"  {sample.name:<18} {sample.source}")
                for before, after in zip(sample.before, sample.after, strict=True):
                    out.append(f"      {before!r} -> {after!r}")
            out.append("vocabulary coverage:")
            for name, unknown in self.unknown_values.items():
                text = ", ".join(f"{v!r} x{n}" for v, n in unknown.most_common()) or "all known"
                out.append(f"  {name}: values the mapping does not define: {text}")
                if self.unused_vocabulary.get(name):
                    out.append(f"  {name}: defined but not seen in these rows: "
                               f"{self.unused_vocabulary[name]}")
            out.append("date formats (rows each format read, first that fits wins):")
            for name, counts in self.date_formats.items():
                shown = ", ".join(f"{fmt!r} {n}" for fmt, n in counts.items())
                out.append(f"  {name}: {shown}")
                if self.unparsed_dates.get(name):
                    out.append(f"  {name}: read by no format: {self.unparsed_dates[name]}")
        out.append("rules:" if self.warnings else "rules: every flag rule can fire")
        out.extend(f"  WARNING {w}" for w in self.warnings)
        return out


def _source(mapping: TelcoMapping, name: str) -> str:
    if name in mapping.columns:
        return f"column {mapping.columns[name]!r}"
    if name in mapping.defaults:
        return f"default {mapping.defaults[name]!r}"
    return "not provided (empty)"


def _text(values: pa.Array, name: str) -> list[str | None]:
    values = pc.cast(values, pa.string())
    if name in _MASKED:
        values = mask_id(values)
    return values.to_pylist()


def check_mapping(config: RunConfig, telco: str, *, rows: int = 200,
                  run_date: date | None = None) -> MappingReport:
    """Read the first ``rows`` rows of ``telco``'s export through its mapping."""
    mapping = config.telco(telco)
    run_date = run_date or date.today()
    report = MappingReport(telco, str(mapping.source_path()),
                           declared=mapping.csv.encoding if mapping.format == "csv" else "",
                           warnings=rule_warnings(mapping, config.flags))
    settings = IntakeSettings(**{**config.intake.model_dump(), "chunk_mb": 1})
    reader = ingest.ExportReader(mapping, settings)
    taken, quarantined = [], []
    try:
        for batch, batch_quarantine in reader.batches():
            taken.append(batch)
            quarantined.append(batch_quarantine)
            if sum(t.num_rows for t in taken) >= rows:
                break
    except TelcoInputError as exc:
        report.error = str(exc)
        return report
    report.encoding = reader.report.encoding
    report.mojibake_rows = reader.report.mojibake_rows
    sample = pa.concat_tables(taken).slice(0, rows) if taken else \
        ingest.INGESTED_SCHEMA.empty_table()
    report.rows_read = sample.num_rows
    for q in quarantined:
        report.quarantine.update(q["reason"].to_pylist())
    result = normalise.normalise(sample, mapping, run_date=run_date)
    report.quarantine.update(result.quarantine["reason"].to_pylist())
    after = {r: i for i, r in enumerate(result.rows["source_row"].to_pylist())}
    shown = [i for i, r in enumerate(sample["source_row"].to_pylist()) if r in after][:SHOWN]
    for name in SUBSCRIPTION_FIELDS:
        item = FieldSample(name, _source(mapping, name))
        if shown:
            item.before = _text(sample[name].take(shown), name)
            rows_after = [after[r] for r in sample["source_row"].take(shown).to_pylist()]
            item.after = _text(result.rows[name].take(rows_after), name)
        report.fields.append(item)
    for name, vocabulary in ((n, mapping.vocabulary(n)) for n in normalise.CODED_FIELDS):
        if vocabulary is None or name not in mapping.columns:
            continue
        values = sample[name].combine_chunks()
        _, unknown = normalise.map_vocabulary(values, vocabulary)
        report.unknown_values[name] = Counter(values.filter(pa.array(unknown)).to_pylist())
        seen = set(normalise.vocabulary_key(pc.unique(values)).to_pylist())
        keys = normalise.vocabulary_key(pa.array(list(vocabulary), pa.string())).to_pylist()
        report.unused_vocabulary[name] = sorted(
            k for k, key in zip(vocabulary, keys, strict=True) if key not in seen)
    for name in ("date_of_birth", "activation_date"):
        values = sample[name].combine_chunks()
        left = pa.array([True] * len(values))
        counts: dict[str, int] = {}
        for fmt in mapping.date_formats[name]:
            parsed = normalise.parse_dates(pc.if_else(left, values, pa.scalar(None, pa.string())),
                                           [fmt])
            hit = pc.is_valid(parsed.value)
            counts[fmt] = int(pc.sum(hit).as_py() or 0)
            left = pc.and_(left, pc.invert(hit))
        report.date_formats[name] = counts
        stray = normalise.parse_dates(values, mapping.date_formats[name]).unparsed
        report.unparsed_dates[name] = sorted(set(values.filter(pa.array(stray)).to_pylist()))[
            :SHOWN]
    return report

