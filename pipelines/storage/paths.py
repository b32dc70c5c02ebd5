"""Where a run's files live (``RunPaths``); see ``pipelines.storage.files`` for how they
are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    output_dir: Path
    run_date: str

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
        return self.work / "ingested" / f"{telco}.parquet"

    def normalised(self, telco: str) -> Path:
        return self.staging / "normalised" / f"{telco}.parquet"

    def quarantine(self, telco: str, stage: str) -> Path:
        return self.staging / "quarantine" / f"{telco}.{stage}.parquet"

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
        return self.work / "shards" / telco / f"{shard:03d}.parquet"

    def matched_shard(self, telco: str, shard: int) -> Path:
        return self.work / "matched" / telco / f"{shard:03d}.parquet"

    def candidates(self, telco: str) -> Path:
        """Rows whose document leads nowhere, matched by the cross-shard candidate search."""
        return self.work / "candidates" / f"{telco}.parquet"

    @property
    def searched(self) -> Path:
        """Every row whose document leads nowhere, as the candidate search reads them."""
        return self.work / "search" / "searched.parquet"

    def search_part(self, registry_shard: int) -> Path:
        """The searched rows' candidates within one registry shard."""
        return self.work / "search" / f"registry-{registry_shard:03d}.parquet"

    def spanning_flags(self, telco: str) -> Path:
        """Flags of rules that span shards and telcos, per subscription of the telco."""
        return self.work / "spanning" / f"{telco}.parquet"

    @property
    def results(self) -> Path:
        return self.staging / "results.parquet"

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
