"""The look-up index stage: after a run is published, index it and settle the
verification requests it answers (pipelines/lookup/, docs/lookup.md)."""

from __future__ import annotations

from pipelines.lookup import index, requests, service_store
from pipelines.lookup.store import IndexReader, index_store_of, service_store_of
from pipelines.results.dataset import ResultsNotFoundError, RunResults
from pipelines.stages.common import context, log
from pipelines.storage.workarea import in_work_area


@in_work_area("published")
def refresh_lookup_index(config_path: str, run_date: str | None = None) -> dict:
    """Index the published run ``run_date`` (the latest published run when None), merged
    with the current index, and swap it in; then close the verification requests that
    run verified and escalate those past their deadline. Counts only."""
    from pipelines.config import load_config

    config = load_config(config_path)
    if run_date is None:
        latest = RunResults.latest(config.output_path)
        if latest is None:
            raise ResultsNotFoundError(f"{config.output_path}: no published run to index")
        run_date = latest.run_date
    config, paths = context(config_path, run_date)
    if not (paths.final / "manifest.json").is_file():
        raise ResultsNotFoundError(f"run {run_date} is not published: nothing to index")
    settings = config.lookup
    store = index_store_of(config)
    counts = index.build_index(
        RunResults(paths.final), run_date, store, records_per_bucket=settings.records_per_bucket,
        partition_rows=settings.partition_rows, keep_unseen_days=settings.keep_unseen_days,
        work_dir=config.output_path / "lookup")
    reader = IndexReader(store)

    def verified(telco: str, msisdn: str) -> bool:
        _, found = index.find_number(reader, msisdn)
        return any(r["telco"] == telco and r["status"] == "VERIFIED"
                   and r["last_run"] == run_date for r in found)

    try:
        settled = requests.settle(service_store.engine(service_store_of(config)), run_date,
                                  verified)
    finally:
        reader.close()
    log.info("lookup index %s: %d subscriptions; requests closed %d, escalated %d", run_date,
             counts["subscriptions"], settled[requests.CLOSED_VERIFIED],
             settled[requests.ESCALATED])
    return {"run_date": run_date, "subscriptions": counts["subscriptions"],
            "carried": counts["carried"], "document_entries": counts["document_entries"],
            "seconds": counts["seconds"], "requests_closed": settled[requests.CLOSED_VERIFIED],
            "requests_escalated": settled[requests.ESCALATED]}
