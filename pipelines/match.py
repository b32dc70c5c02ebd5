"""Match stage: link every normalised subscription to the registry and compare fields.

Output (staging ``work/matched.parquet``): the normalised subscription plus
the linked citizen's id, how it was linked, the per-field comparison levels
and scores, and a suggested citizen for well-formed IDs that were not found.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.candidates import link_by_document, suggest_by_near_miss
from matching.compare import compare_dates_of_birth, compare_genders
from matching.names import NameComparisonSettings, NameLevel, compare_names
from pipelines.config import MatchingSettings

log = logging.getLogger("simrecon.match")


def name_settings(settings: MatchingSettings) -> NameComparisonSettings:
    return NameComparisonSettings(
        max_typo_edits=settings.name_max_typo_edits,
        partial_threshold=settings.name_partial_threshold,
    )


def match(subscriptions: pa.Table, registry: pa.Table, settings: MatchingSettings) -> pa.Table:
    """Link and compare; see module docstring."""
    n = subscriptions.num_rows
    links = link_by_document(
        subscriptions["id_type"].combine_chunks(),
        subscriptions["id_number"].combine_chunks(),
        subscriptions["id_valid"].combine_chunks(),
        registry["citizen_id"].combine_chunks(),
        registry["legacy_id"].combine_chunks(),
    )
    linked = links.registry_index >= 0
    take = pa.array(np.where(linked, links.registry_index, 0))
    nulls = pa.array(~linked)

    def registry_column(name: str) -> pa.Array:
        column = pc.take(registry[name].combine_chunks(), take) if registry.num_rows else \
            pa.nulls(n, registry.schema.field(name).type)
        return pc.if_else(nulls, pa.scalar(None, column.type), column)

    holder_name = registry_column("full_name")
    holder_dob = registry_column("date_of_birth")
    holder_dob_precision = registry_column("dob_precision")
    names = compare_names(subscriptions["full_name"].combine_chunks(), holder_name,
                          name_settings(settings))
    dob_level = compare_dates_of_birth(
        subscriptions["date_of_birth"], subscriptions["dob_precision"],
        holder_dob, holder_dob_precision,
    )
    gender_level = compare_genders(subscriptions["gender"], registry_column("gender"))

    # Near-miss search for well-formed CCCDs that lead nowhere.
    suggested = pa.nulls(n, pa.string())
    searchable = (
        ~linked
        & np.asarray(pc.fill_null(subscriptions["id_valid"], False), dtype=bool)
        & np.asarray(pc.fill_null(pc.equal(subscriptions["id_type"], "CCCD"), False), dtype=bool)
    )
    if settings.near_miss_search and searchable.any():
        rows = pa.array(np.flatnonzero(searchable))
        found = suggest_by_near_miss(
            pc.take(subscriptions["id_number"], rows).combine_chunks(),
            pc.take(subscriptions["full_name"], rows).combine_chunks(),
            pc.take(subscriptions["date_of_birth"], rows).combine_chunks(),
            pc.take(subscriptions["dob_precision"], rows).combine_chunks(),
            registry["citizen_id"].combine_chunks(),
            registry["full_name"].combine_chunks(),
            registry["date_of_birth"].combine_chunks(),
            registry["dob_precision"].combine_chunks(),
            name_settings=name_settings(settings),
            min_name_level=NameLevel[settings.near_miss_min_name_level],
        )
        positions = np.full(n, -1, dtype=np.int64)
        positions[searchable] = found.registry_index
        has = positions >= 0
        suggested = pc.if_else(
            pa.array(has),
            pc.take(registry["citizen_id"].combine_chunks(), pa.array(np.where(has, positions, 0))),
            pa.scalar(None, pa.string()),
        )

    matched = subscriptions.append_column("matched_citizen_id", registry_column("citizen_id"))
    for name, column in (
        ("link_method", pa.array(links.method, pa.string())),
        ("link_ambiguous", pa.array(links.ambiguous)),
        ("name_level", pa.array(names.level, pa.int8())),
        ("name_score", pa.array(names.score, pa.float64())),
        ("dob_level", pa.array(dob_level, pa.int8())),
        ("gender_level", pa.array(gender_level, pa.int8())),
        ("suggested_citizen_id", suggested),
        ("holder_date_of_birth", holder_dob),
        ("holder_date_of_death", registry_column("date_of_death")),
    ):
        matched = matched.append_column(name, column)
    log.info("match: %d subscriptions, %d linked to the registry, %d suggestions", n,
             int(linked.sum()), pc.count(suggested).as_py())
    return matched
