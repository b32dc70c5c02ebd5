"""Where a run's files live (``RunPaths``); see ``pipelines.storage.files`` for how they
are written.

Two folders per run date, published together by ``publish``:

* ``<output_dir>/<date>/``: what compliance staff (and, per telco, the telcos) receive;
* ``<private_dir>/<date>/``: engineer-only outputs holding raw export rows, the
  normalised subscriptions (``normalised/``) and the quarantined rows with their raw
  text (``quarantine/``), with their own ``manifest.json``; the published manifest
  records its sha256 (``engineering_manifest_sha256``). Both are built in a
  ``.staging/<date>`` folder of their own and swapped into place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.results.dataset import part_path


def default_private_dir(output_dir: Path) -> Path:
    """``<output_dir>-private``: the engineer-only folder beside the published runs."""
    return output_dir.with_name(f"{output_dir.name}-private")


@dataclass(frozen=True)
class RunPaths:
    output_dir: Path
    run_date: str
    # The engineer-only folder (``RunConfig.private_path``); None = ``<output_dir>-private``.
    private_dir: Path | None = None

    @property
    def private_root(self) -> Path:
        return self.private_dir if self.private_dir is not None \
            else default_private_dir(self.output_dir)

    @property
    def engineering_staging(self) -> Path:
        """Where the engineer-only outputs of the run are built."""
        return self.private_root / ".staging" / self.run_date

    @property
    def engineering(self) -> Path:
        """The published engineer-only folder of the run (``<private_dir>/<date>``)."""
        return self.private_root / self.run_date

    @property
    def staging(self) -> Path:
        return self.output_dir / ".staging" / self.run_date

    @property
    def work(self) -> Path:
        return self.output_dir / ".work" / self.run_date

    @property
    def final(self) -> Path:
        return self.output_dir / self.run_date

    @property
    def plan(self) -> Path:
        return self.work / "plan.json"

    def stats(self, telco: str, stage: str) -> Path:
        return self.work / "stats" / f"{telco}.{stage}.json"

    def ingested(self, telco: str) -> Path:
        """The telco's export as read (every record's text kept): an Arrow IPC working file."""
        return self.work / "ingested" / f"{telco}.arrow"

    def normalised(self, telco: str) -> Path:
        """Engineer-only: the telco's normalised subscriptions (every field as sent)."""
        return self.engineering_staging / "normalised" / f"{telco}.parquet"

    def quarantine(self, telco: str, stage: str) -> Path:
        """Engineer-only: rows that could not be read, with their raw text."""
        return self.engineering_staging / "quarantine" / f"{telco}.{stage}.parquet"

    def gate(self, name: str) -> Path:
        """A gate's validation result, kept with the run (``gates/<name>.json``)."""
        return self.staging / "gates" / f"{name}.json"

    def telco_error(self, telco: str) -> Path:
        return self.work / "errors" / f"{telco}.json"

    # --- sharded matching (pipelines/reconcile/shard_steps.py): working state, never published ---
    @property
    def registry_snapshot(self) -> Path:
        """The prepared registry snapshot this run uses (resolved by ``gate_registry``)."""
        return self.work / "registry.json"

    @property
    def shard_plan(self) -> Path:
        """Shard count and the telcos the shard tasks match (written by ``plan_shards``)."""
        return self.work / "shards.json"

    def partitioned(self, telco: str) -> Path:
        """A telco's subscriptions cut into shards: the marker, written last."""
        return self.work / "shards" / telco / "_partitioned.json"

    def subscription_shard(self, telco: str, shard: int) -> Path:
        """The telco's normalised rows of shard ``shard``: an Arrow IPC working file."""
        return self.work / "shards" / telco / f"{shard:03d}.arrow"

    def matched_shard(self, shard: int) -> Path:
        """Shard ``shard``'s subscriptions (every telco) linked to its registry shard,
        sorted by (telco, source_row): an Arrow IPC working file (``storage.files.read_arrow``)."""
        return self.work / "matched" / f"{shard:03d}.arrow"

    def search_part(self, partition: int) -> Path:
        """The candidate search's findings in one partition of the registry's search
        layout (every batch's rows routed there)."""
        return self.work / "search" / f"part-{partition:03d}.parquet"

    def search_routes(self, batch: int) -> Path:
        """Where one batch's searched rows are searched: the partitions of their birth
        years and the citizens their numbers lead to (``search.batch_routes``)."""
        return self.work / "search" / f"routes-{batch:04d}.parquet"

    def searched_batch(self, batch: int) -> Path:
        """One batch of the rows of the run whose document leads nowhere, as the candidate
        search reads them (``matching.search_batch_rows`` rows at most; written once, read
        by the search of every partition its rows are routed to)."""
        return self.work / "search" / f"searched-{batch:04d}.parquet"

    def search_ranked(self, batch: int) -> Path:
        """One batch's searched rows with their best candidates, before the run's
        namesake prior is known (``search.Ranked``: the first pass of
        ``choose_candidates``); an Arrow IPC working file."""
        return self.work / "search" / f"ranked-{batch:04d}.arrow"

    @property
    def search_prior(self) -> Path:
        """The run's namesake prior and what it was estimated from
        (``matching.namesakes``), written by ``choose_candidates``."""
        return self.work / "search" / "namesake-prior.json"

    def unlinked_rows(self, shard: int) -> Path:
        """Subscription shard ``shard``'s rows whose document leads nowhere, gathered by
        ``collect_searched`` (a working file it removes once the batches are written)."""
        return self.work / "search" / f"unlinked-{shard:03d}.parquet"

    @property
    def search_plan(self) -> Path:
        """How the searched rows are cut: their number, the batches, and how many rows
        each subscription shard has (the searched rows come shard after shard)."""
        return self.work / "search" / "batches.json"

    def candidates(self, shard: int) -> Path:
        """Shard ``shard``'s rows whose document leads nowhere, matched again with the
        candidate search over the whole registry: their (telco, source_row) and the
        search's columns (typed as in ``matched_shard``), in (telco, source_row) order."""
        return self.work / "candidates" / f"{shard:03d}.parquet"

    def spanning_flags(self, shard: int) -> Path:
        """Flags of the rules that span shards and telcos (duplicate numbers, bulk
        activation), per subscription of shard ``shard`` in its matched order."""
        return self.work / "spanning" / f"{shard:03d}.parquet"

    def aggregates(self, shard: int) -> Path:
        """Shard ``shard``'s partial aggregates of its results (a folder: counts,
        histograms, top holders, points of sale): the report and summary.json merge
        them (``pipelines/reporting/aggregates.py``)."""
        return self.work / "aggregates" / f"{shard:03d}"

    def flagged(self, shard: int) -> Path:
        """Shard ``shard``'s flagged rows, compact (telco, source_row, number, flag bits):
        correction-list classification and the report's flagged-table selection."""
        return self.work / "flagged" / f"{shard:03d}.parquet"

    def report_sample(self) -> Path:
        """The report's sample of flagged rows (whole result rows, chosen by
        ``report.select_flagged_keys``), with the run's count of flagged rows and the
        sample's size in its schema metadata: gathered beside the correction lists."""
        return self.work / "report_sample.parquet"

    def review_part(self, shard: int) -> Path:
        """Shard ``shard``'s rows of the review queue."""
        return self.work / "review" / f"{shard:03d}.parquet"

    def flag_keys(self, telco: str) -> Path:
        """A telco's flag keys of this run with their classification, recorded in the
        flag history when the run is published."""
        return self.work / "keys" / f"{telco}.parquet"

    def checked_columns(self, telco: str) -> Path:
        """The columns of a telco's correction list its gate checks, as written (text,
        empty as null): written beside the list, so the gate does not parse it back."""
        return self.work / "checked" / f"{telco}.parquet"

    def tracking(self, telco: str) -> Path:
        """A telco's correction-list counts (listed, new, persisting, resolved)."""
        return self.work / "tracking" / f"{telco}.json"

    @property
    def results(self) -> Path:
        """The results dataset (``pipelines/results/dataset.py``)."""
        return self.staging / "results"

    def results_part(self, shard: int) -> Path:
        return part_path(self.staging, shard)

    @property
    def review_dir(self) -> Path:
        return self.staging / "review"

    @property
    def summary(self) -> Path:
        return self.staging / "summary.json"

    @property
    def report(self) -> Path:
        return self.staging / "report.html"

    @property
    def corrections_dir(self) -> Path:
        return self.staging / "corrections"

    @property
    def manifest(self) -> Path:
        return self.staging / "manifest.json"
