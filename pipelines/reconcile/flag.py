"""Flag stage: apply every flag rule and decide each subscription's status.

Rules are in ``matching.flags``; this stage assembles their inputs, applies
the thresholds from the run configuration, and writes ``results.parquet``:
one row per subscription with status, flags, linked or suggested citizen id
and the per-field levels and Fellegi–Sunter weights that explain the decision.

Identity comes from the match stage's probability band (``match_band``):
``MISMATCH`` below ``matching.mismatch_below``, ``REVIEW`` between the bands,
``VERIFY`` above ``matching.verify_above``. The field flags keep their rule
meaning on top (docs/flags.md): a registration must carry the holder's own
name and date of birth, so a confirmed holder with another date of birth is
still ``DOB_MISMATCH``, and a gender difference alone still goes to review.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching import flags as rules
from matching.columns import as_bool_mask
from matching.compare import DOB_AGREEING_LEVELS, DobLevel, GenderLevel
from matching.names import NameLevel
from pipelines.config import FlagSettings

log = logging.getLogger("simrecon.flag")

RESULT_COLUMNS = (
    "telco", "source_file", "source_row", "msisdn", "msisdn_raw", "id_type", "id_number",
    # The holder as the telco registered them (normalised): the look-up service shows them.
    "full_name", "date_of_birth", "dob_precision", "gender",
    "activation_date", "subscription_type", "line_status", "point_of_sale",
    "status", "flags", "matched_citizen_id", "suggested_citizen_id", "link_method",
    "name_level", "name_score", "dob_level", "gender_level",
    # Explanation (docs/matching.md): how the document reached the citizen, each field's
    # weight in bits, their sum and the match probability, and the band it falls in. A
    # searched row (document leads nobody) is explained by its best candidate, with the
    # search's own evidence: the number against the candidate's, the number's history,
    # the same number on other subscriptions.
    "id_level", "doc_level", "history_level", "others_level", "name_frequency",
    "id_weight", "doc_weight", "name_weight", "dob_weight", "gender_weight",
    "history_weight", "others_weight",
    "match_weight", "match_probability", "match_band", "holder_citizen_id",
    "candidate_citizen_id", "candidate_probability", "candidate_margin_bits", "candidate_count",
    "model_version",
)

# Columns of the results whose values are nearly all distinct (a subscription's own number,
# names, ids, scores): written without a dictionary (``AtomicParquetWriter``'s ``plain``).
PLAIN_COLUMNS = (
    "source_row", "msisdn", "msisdn_raw", "id_number", "full_name", "date_of_birth",
    "point_of_sale", "matched_citizen_id", "holder_citizen_id", "name_weight", "match_weight",
    "match_probability",
)


# Rules over the run's whole set of subscriptions (every telco, every shard), and the
# few columns they read: the sharded run computes them in a step of their own.
SPANNING_FLAGS = ("EXCESS_SUBSCRIPTIONS", "BULK_ACTIVATION", "DUPLICATE_MSISDN")
SPANNING_COLUMNS = ("telco", "source_row", "matched_citizen_id", "id_type", "id_number",
                    "id_valid", "line_status", "point_of_sale", "activation_date", "msisdn")


def _in(column: pa.ChunkedArray | pa.Array, values: list[str]) -> np.ndarray:
    return as_bool_mask(pc.is_in(column, value_set=pa.array(values, pa.string())))


def excess_mask(rows: pa.Table, settings: FlagSettings) -> np.ndarray:
    """EXCESS_SUBSCRIPTIONS: counted rows whose holder (the linked citizen, else the valid
    document as sent) has more counted rows than allowed. Every subscription of a holder
    lies in the holder's shard, so a shard's rows suffice."""
    has_number = as_bool_mask(pc.is_valid(rows["id_number"]))
    valid = as_bool_mask(rows["id_valid"])
    document_key = pc.if_else(
        pa.array(valid & has_number),
        pc.binary_join_element_wise(pc.fill_null(rows["id_type"], "?"), rows["id_number"], ":"),
        pa.scalar(None, pa.string()),
    )
    holder_key = pc.coalesce(rows["matched_citizen_id"], document_key)
    counted = _in(rows["line_status"], settings.excess_counts_statuses)
    return rules.excess_subscriptions(holder_key, counted,
                                      settings.max_active_subscriptions_per_holder)


def bulk_mask(rows: pa.Table, settings: FlagSettings) -> np.ndarray:
    """BULK_ACTIVATION over ``rows``, which must hold every row of their points of sale."""
    return rules.bulk_activation(
        rows["point_of_sale"], rows["activation_date"],
        pc.coalesce(rows["id_number"], pa.scalar("", pa.string())),
        min_activations=settings.bulk_min_activations,
        max_distinct_documents=settings.bulk_max_distinct_ids,
    )


def duplicate_mask(rows: pa.Table, settings: FlagSettings) -> np.ndarray:
    """DUPLICATE_MSISDN over ``rows``, which must hold every row of their numbers."""
    not_ignored = ~_in(rows["line_status"], settings.duplicate_ignores_statuses)
    return rules.duplicate_msisdn(
        rows["msisdn"], not_ignored & as_bool_mask(pc.is_valid(rows["msisdn"])))


_SPANNING_RULES = {"EXCESS_SUBSCRIPTIONS": excess_mask, "BULK_ACTIVATION": bulk_mask,
                   "DUPLICATE_MSISDN": duplicate_mask}


def spanning_masks(rows: pa.Table, settings: FlagSettings) -> dict[str, np.ndarray]:
    """EXCESS_SUBSCRIPTIONS, BULK_ACTIVATION and DUPLICATE_MSISDN over ``rows`` (at least
    ``SPANNING_COLUMNS``), which must be every subscription of the run. Each mask is a
    function of groups, not of row order."""
    return {name: rule(rows, settings) for name, rule in _SPANNING_RULES.items()}


def flag(matched: pa.Table, settings: FlagSettings,
         spanning: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Compute flags and status for every matched subscription.

    ``spanning``: masks of ``SPANNING_FLAGS`` for these rows, computed over the run's
    whole set of subscriptions when ``matched`` is only part of it; a rule without a
    mask there is computed over ``matched``.
    """
    n = matched.num_rows
    id_type = matched["id_type"]
    has_number = as_bool_mask(pc.is_valid(matched["id_number"]))
    valid = as_bool_mask(matched["id_valid"])
    linked = as_bool_mask(pc.is_valid(matched["matched_citizen_id"]))
    passport = as_bool_mask(pc.equal(id_type, "PASSPORT"))
    ambiguous = as_bool_mask(matched["link_ambiguous"])
    name_level = np.asarray(matched["name_level"], dtype=np.int8)
    dob_level = np.asarray(matched["dob_level"], dtype=np.int8)
    gender_level = np.asarray(matched["gender_level"], dtype=np.int8)
    subscriber_dob_missing = as_bool_mask(pc.is_null(matched["date_of_birth"]))

    masks: dict[str, np.ndarray] = {}
    masks["NO_ID"] = ~has_number
    masks["INVALID_ID"] = has_number & ~valid & ~passport
    masks["ID_NOT_FOUND"] = has_number & valid & ~passport & ~linked
    masks["LEGACY_ID"] = as_bool_mask(pc.equal(id_type, "CMND")) & has_number
    judged = linked & ~ambiguous
    # Compared in Arrow: no million Python strings.
    rejected = judged & as_bool_mask(pc.equal(matched["match_band"], "MISMATCH"))
    in_review_band = judged & as_bool_mask(pc.equal(matched["match_band"], "REVIEW"))
    name_weight = np.asarray(pc.fill_null(matched["name_weight"], 0.0), dtype=np.float64)
    masks["NAME_MISMATCH"] = judged & (
        (name_level <= NameLevel.DIFFERENT) | (rejected & (name_weight < 0)))
    masks["DOB_MISMATCH"] = judged & (
        subscriber_dob_missing
        | ~np.isin(dob_level, [int(x) for x in DOB_AGREEING_LEVELS] + [DobLevel.MISSING])
    )
    masks["GENDER_MISMATCH"] = judged & (gender_level == GenderLevel.DIFFERENT)
    # Below the lower band the holder is someone else; a reason is always given.
    reasonless = rejected & ~(masks["NAME_MISMATCH"] | masks["DOB_MISMATCH"]
                              | masks["GENDER_MISMATCH"])
    masks["NAME_MISMATCH"] |= reasonless
    mismatch = masks["NAME_MISMATCH"] | masks["DOB_MISMATCH"] | rejected
    review = (linked & ambiguous) | (
        judged & ~mismatch & (in_review_band | masks["GENDER_MISMATCH"]))
    masks["NEEDS_REVIEW"] = review

    holder_dob = pc.coalesce(matched["holder_date_of_birth"], matched["date_of_birth"])
    masks["UNDERAGE_HOLDER"] = rules.underage_at_activation(
        holder_dob, matched["activation_date"], settings.underage_years)
    masks["DECEASED_HOLDER"] = linked & rules.activated_after_death(
        matched["activation_date"], matched["holder_date_of_death"])

    # Cross-telco rules work on the run's whole set of subscriptions; a rule whose mask
    # is not given is computed over ``matched`` (EXCESS_SUBSCRIPTIONS within a shard).
    for name in SPANNING_FLAGS:
        given = (spanning or {}).get(name)
        masks[name] = np.asarray(given if given is not None
                                 else _SPANNING_RULES[name](matched, settings), dtype=bool)
    masks["INVALID_MSISDN"] = as_bool_mask(pc.is_null(matched["msisdn"]))

    status = pc.take(pa.array(rules.STATUSES, pa.string()), pa.array(rules.status_codes(
        foreign_document=passport,
        unregistered=masks["NO_ID"] | masks["INVALID_ID"] | masks["ID_NOT_FOUND"],
        mismatch=mismatch,
        review=review,
    )))
    # A passport holder cannot be checked against the citizen registry at all.
    for name in ("ID_NOT_FOUND", "INVALID_ID"):
        masks[name] &= ~passport

    results = matched.append_column("status", status)
    results = results.append_column("flags", rules.build_flag_lists(masks, n))
    results = results.select(list(RESULT_COLUMNS))
    counts = {k: int(v.sum()) for k, v in masks.items() if v.any()}
    log.info("flag: %d subscriptions; flags raised: %s", n, counts)
    return results
