"""The quarantine: every row a stage could not use, with its reason and original content.

No row is ever dropped silently: a row either goes on to the next stage or
lands here, and the stage checks ``rows in = rows out + rows quarantined``.
"""

from __future__ import annotations

import pyarrow as pa

QUARANTINE_SCHEMA = pa.schema(
    [
        ("telco", pa.string()),
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw_record", pa.string()),
    ]
)

# Reason codes, with the sentence a telco reads in its resend section.
QUARANTINE_REASONS: dict[str, str] = {
    "MALFORMED_ROW": "the row has a different number of fields than the header",
    "TRUNCATED_ROW": "the file ends in the middle of this row (cut off during export or "
                     "transfer): resend the whole file",
    "CONTROL_CHARACTER": "a field holds a control character (such as NUL), which no name, "
                         "number, date or code contains",
    "FIELD_TOO_LONG": "a field is longer than any plausible value of its kind (a shifted "
                      "column or a broken export)",
    "DUPLICATE_ROW": "the row is an identical copy of an earlier row of the same file; only "
                     "the first copy is used: remove the copy",
    "UNPARSEABLE_ACTIVATION_DATE": "activation date is missing or not in a configured format",
    "UNPARSEABLE_DATE_OF_BIRTH": "date of birth is not in a configured format",
    "UNKNOWN_VOCABULARY_VALUE": "a coded field holds a value the telco's mapping does not define",
    "BIRTH_AFTER_ACTIVATION": "the date of birth is after the activation date: one of the two "
                              "dates is wrong",
}


def quarantine_table(
    *,
    telco: str,
    source_file: str,
    source_rows: pa.Array,
    stage: str,
    reasons: pa.Array,
    details: pa.Array,
    raw_records: pa.Array,
) -> pa.Table:
    n = len(source_rows)
    return pa.table(
        {
            "telco": pa.repeat(pa.scalar(telco, pa.string()), n),
            "source_file": pa.repeat(pa.scalar(source_file, pa.string()), n),
            "source_row": pa.array(source_rows, pa.int64()),
            "stage": pa.repeat(pa.scalar(stage, pa.string()), n),
            "reason": pa.array(reasons, pa.string()),
            "detail": pa.array(details, pa.string()),
            "raw_record": pa.array(raw_records, pa.string()),
        },
        schema=QUARANTINE_SCHEMA,
    )


def empty_quarantine() -> pa.Table:
    return QUARANTINE_SCHEMA.empty_table()
