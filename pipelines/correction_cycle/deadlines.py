"""What a telco is asked to do about a flagged subscription, and by when.

The policy escalates with how long a flag has stood (from its first-seen date
in the run-over-run history, ``pipelines.correction_cycle.history``): first the telco is asked
to notify the subscriber and correct the record; after ``one_way_block_after_days``
the line is to be blocked one way, after ``two_way_block_after_days`` both ways.
The deadline printed on a list is the date the next step applies, so a telco
always knows how long it has. Everything is configuration (``correction_cycle.deadlines``),
never code: the legal timetable changes by decree.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

NOTIFY = "NOTIFY_AND_CORRECT"
BLOCK_ONE_WAY = "BLOCK_ONE_WAY"
BLOCK_TWO_WAY = "BLOCK_TWO_WAY"

ACTION_TEXT: dict[str, dict[str, str]] = {
    NOTIFY: {"vi": "Thông báo thuê bao và cập nhật thông tin",
             "en": "Notify the subscriber and correct the record"},
    BLOCK_ONE_WAY: {"vi": "Khóa một chiều", "en": "Block the line one way (outgoing)"},
    BLOCK_TWO_WAY: {"vi": "Khóa hai chiều", "en": "Block the line both ways"},
}


class DeadlinePolicy(BaseModel):
    """Escalation steps in days since a flag was first seen (``notify`` → one-way → two-way)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    one_way_block_after_days: int = Field(30, ge=1)
    two_way_block_after_days: int = Field(45, ge=1)
    # Flags that never lead to a block (e.g. an old CMND: update the record only).
    notify_only_flags: list[str] = ["LEGACY_ID"]
    # Days a telco has to verify a number an agency asked about through the look-up
    # service (pipelines/lookup/requests.py), counted from the day it was asked.
    verification_request_days: int = Field(7, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> DeadlinePolicy:
        if self.two_way_block_after_days <= self.one_way_block_after_days:
            raise ValueError("two_way_block_after_days must exceed one_way_block_after_days")
        return self


def actions(first_seen: pa.Array | pa.ChunkedArray, flag_lists: pa.Array | pa.ChunkedArray,
            run_date: date, policy: DeadlinePolicy) -> tuple[pa.Array, pa.Array]:
    """(action, deadline) per row, vectorised.

    ``first_seen`` is a date32 column (null = first seen today); ``flag_lists`` the
    row's telco-facing flags. A row whose flags are all notify-only stays at
    ``NOTIFY_AND_CORRECT`` with the one-way date as its deadline.
    """
    today = np.datetime64(run_date, "D")
    seen = pc.fill_null(pc.cast(first_seen, pa.date32()), pa.scalar(run_date, pa.date32()))
    seen_np = np.asarray(seen.to_numpy(zero_copy_only=False), dtype="datetime64[D]")
    age = (today - seen_np).astype(np.int64)
    one_way = seen_np + np.timedelta64(policy.one_way_block_after_days, "D")
    two_way = seen_np + np.timedelta64(policy.two_way_block_after_days, "D")
    flags = pa.chunked_array([flag_lists]) if isinstance(flag_lists, pa.Array) else flag_lists
    flags = flags.combine_chunks() if flags.num_chunks else pa.array([], pa.list_(pa.string()))
    blockable = pc.invert(pc.is_in(pc.list_flatten(flags),
                                   value_set=pa.array(policy.notify_only_flags, pa.string())))
    parents = np.asarray(pc.list_parent_indices(flags))
    any_blockable = np.zeros(len(flags), dtype=bool)
    np.logical_or.at(any_blockable, parents, np.asarray(blockable, dtype=bool))
    step = np.where(age >= policy.two_way_block_after_days, 2,
                    np.where(age >= policy.one_way_block_after_days, 1, 0))
    step = np.where(any_blockable, step, 0)
    action = pc.take(pa.array([NOTIFY, BLOCK_ONE_WAY, BLOCK_TWO_WAY], pa.string()),
                     pa.array(step, pa.int8()))  # not a Python string per row
    deadline = np.where(step == 0, one_way, np.where(step == 1, two_way, today))
    return action, pa.array(deadline, pa.date32())
