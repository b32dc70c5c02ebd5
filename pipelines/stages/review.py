"""The review inbox: decisions dropped by reviewers, recorded every few minutes.
"""

from __future__ import annotations

from pipelines.config import load_config
from pipelines.correction_cycle import review
from pipelines.stages.common import (
    log,
    store_of,
)


def import_review_inbox(config_path: str) -> dict:
    """Record the filled-in review queues dropped in ``correction_cycle.review_drop_dir``.

    Run by the ``review_inbox`` DAG every few minutes, so a reviewer's decisions are
    validated and recorded (who, when) as soon as the file lands, and a refused file
    gets its ``.error.txt`` within minutes, not at the next daily run. The flag stage
    imports the folder again before it applies decisions, so nothing waits on this DAG.
    """
    config = load_config(config_path)
    drop = config.correction_cycle.review_drop_dir
    if not drop:
        log.info("review inbox: correction_cycle.review_drop_dir is not set; nothing to do")
        return {"files": 0, "imported": 0, "refused": 0}
    done = review.import_drop_folder(config.resolve(drop), store_of(config))
    log.info("review inbox: %d file(s), %d decision(s) recorded, %d file(s) refused",
             done["files"], done["imported"], done["refused"])
    return done
