"""The DAG parses in real Airflow and has the shape the runbook describes.

Parsing needs no metadata DB; AIRFLOW_HOME points at a temp folder so the test
never touches a developer's ~/airflow.
"""

from __future__ import annotations

import ast
import atexit
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DAGS_DIR = REPO / "dags"
DAG_FILE = DAGS_DIR / "subscriber_reconciliation.py"
REFRESH_FILE = DAGS_DIR / "citizen_registry_refresh.py"
DAG_ID = "subscriber_reconciliation"
REFRESH_ID = "citizen_registry_refresh"
DAG_FILES = [DAG_FILE, REFRESH_FILE, DAGS_DIR / "review_inbox.py"]
ASSET_NAME = "citizen_registry_prepared"

EXPECTED_TASKS = {
    "plan",
    "gate_registry",
    "ingest",
    "normalise",
    "gate_export",
    "partition",
    "plan_shards",
    "match_shard",
    "collect_searched",
    "plan_search",
    "route_search_batch",
    "search_partition",
    "choose_candidates",
    "spanning_flags",
    "flag_shard",
    "review_queue",
    "gate_results",
    "corrections",
    "gate_corrections",
    "report_sample",
    "report",
    "approve",
    "publish",
    "lookup_stage",
    "lookup_index",
    "check",
}
# What the DAG file may import: the standard library bits it needs, Airflow,
# Airflow's logger, and the stage entry points. Anything else is a sign that
# business logic is creeping into the DAG.
ALLOWED_IMPORTS = {
    "__future__",
    "os",
    "collections.abc",
    "datetime",
    "pathlib",
    "structlog",
    "airflow.sdk",
    "airflow.sdk.exceptions",  # AirflowSkipException: the refresh announces only changes
    "airflow.providers.standard.operators.hitl",  # the approval step (ApprovalOperator)
    "pipelines.stages",
}
TELCO_TASKS = {"ingest", "normalise", "gate_export", "partition"}

if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="simrecon-airflow-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The DAG's own retry default is under test, not a one-off override.
os.environ.pop("SIMRECON_TASK_RETRIES", None)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR), safe_mode=False)


@pytest.fixture(scope="module")
def dag(dagbag):
    assert DAG_ID in dagbag.dags, f"{DAG_ID} not found; import errors: {dagbag.import_errors}"
    return dagbag.dags[DAG_ID]


@pytest.fixture(scope="module")
def refresh(dagbag):
    assert REFRESH_ID in dagbag.dags, dagbag.import_errors
    return dagbag.dags[REFRESH_ID]


def test_dags_folder_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {DAG_ID, REFRESH_ID, "review_inbox"}


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.stem)
def test_dag_file_parses_quickly(dagbag, dag_file):
    (stat,) = [s for s in dagbag.dagbag_stats if s.file.endswith(dag_file.name)]
    # The stages (pandas, pyarrow, ...) must not be imported at parse time (that alone
    # takes several seconds); the bound leaves room for a busy machine.
    assert stat.duration < timedelta(seconds=5), stat


def test_task_ids(dag):
    assert set(dag.task_ids) == EXPECTED_TASKS


def test_dependencies(dag):
    upstream = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert upstream["plan"] == set()
    assert upstream["gate_registry"] == {"plan"}
    # The registry gate comes before every telco's chain: if it fails, nothing runs.
    assert upstream["ingest"] == {"plan", "gate_registry"}
    assert "ingest" in upstream["normalise"]
    # The export is gated before it is cut into shards (a telco that fails is never cut).
    assert upstream["gate_export"] - {"plan"} == {"normalise"}  # plan: the mapped input
    assert upstream["partition"] - {"plan"} == {"gate_export"}
    # Shards are planned once every telco's chain is done; each shard is one mapped task;
    # the cross-shard steps wait for every shard; each shard is then flagged on its own.
    assert upstream["plan_shards"] == {"partition"}
    assert upstream["match_shard"] == {"plan_shards"}
    # The search: gathered once, one mapped task per batch (numbers, routes), then one
    # per partition of the registry's search layout once every batch is routed, folded
    # once.
    assert upstream["collect_searched"] == {"match_shard"}
    assert upstream["plan_search"] == {"plan_shards"}
    assert upstream["route_search_batch"] == {"collect_searched"}
    assert upstream["search_partition"] == {"plan_search", "route_search_batch"}
    assert upstream["choose_candidates"] == {"search_partition"}
    assert upstream["spanning_flags"] == {"match_shard"}
    assert upstream["flag_shard"] == {"plan_shards", "choose_candidates", "spanning_flags"}
    assert upstream["gate_results"] == {"flag_shard"}
    assert upstream["review_queue"] == {"flag_shard"}
    # Each telco's delivery is written (then gated) on its own, once the results pass.
    assert upstream["corrections"] == {"plan", "gate_results", "review_queue"}
    assert upstream["gate_corrections"] == {"plan", "corrections"}
    # The report's sample of flagged rows is read beside the lists; the report waits for
    # both (its summary shows the lists' gates).
    assert upstream["report_sample"] == {"gate_results"}
    assert upstream["report"] == {"gate_corrections", "report_sample"}
    # Compliance approves (human-in-the-loop) between the report and publishing.
    assert upstream["approve"] == {"report"}
    assert upstream["publish"] == {"approve"}
    # The look-up index (issue 13) is built from the gated results beside the lists and the
    # report, left pending, and swapped in once the run is published, before the check.
    assert upstream["lookup_stage"] == {"gate_results"}
    assert upstream["lookup_index"] == {"publish", "lookup_stage"}
    assert upstream["check"] == {"lookup_index"}
    assert [t.task_id for t in dag.leaves] == ["check"]


def test_no_cycles(dag):
    dag.check_cycle()


def test_ingest_and_normalise_are_mapped_per_telco(dag):
    group = dag.get_task("ingest").get_closest_mapped_task_group()
    assert group is not None, "ingest must be mapped over the telcos"
    # One mapped task group: normalise[i] depends on ingest[i] only, gate_export[i]
    # on normalise[i] only.
    assert dag.get_task("normalise").get_closest_mapped_task_group() is group
    assert dag.get_task("gate_export").get_closest_mapped_task_group() is group
    expand_input = group._expand_input.value
    assert set(expand_input) == {"telco"}
    assert expand_input["telco"].operator.task_id == "plan"
    assert dag.get_task("partition").get_closest_mapped_task_group() is group
    for task_id in EXPECTED_TASKS - TELCO_TASKS:
        assert dag.get_task(task_id).get_closest_mapped_task_group() is None, task_id


def test_matching_and_flagging_are_mapped_per_shard(dag):
    """One match_shard and one flag_shard task instance per shard, the shard numbers
    coming from plan_shards; the deliveries are mapped per telco."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    for task_id in ("match_shard", "flag_shard"):
        task = dag.get_task(task_id)
        assert isinstance(task, MappedOperator), task_id
        expand_input = task._get_specified_expand_input().value
        assert set(expand_input) == {"shard"}
        assert expand_input["shard"].operator.task_id == "plan_shards"
    for task_id in ("corrections", "gate_corrections"):
        task = dag.get_task(task_id)
        assert isinstance(task, MappedOperator), task_id
        expand_input = task._get_specified_expand_input().value
        assert expand_input["telco"].operator.task_id == "plan"
    for task_id, key, listing in (("route_search_batch", "search_batch", "collect_searched"),
                                  ("search_partition", "search_task", "plan_search")):
        search = dag.get_task(task_id)
        assert isinstance(search, MappedOperator)
        expand_input = search._get_specified_expand_input().value
        assert set(expand_input) == {key}
        assert expand_input[key].operator.task_id == listing
    for task_id in ("plan_shards", "collect_searched", "plan_search", "choose_candidates",
                    "spanning_flags",
                    "review_queue", "gate_results", "report_sample", "report"):
        assert not isinstance(dag.get_task(task_id), MappedOperator), task_id


def test_registry_snapshot_asset_links_the_two_dags(dag, refresh):
    (outlet,) = refresh.get_task("publish").outlets
    (inlet,) = dag.get_task("gate_registry").inlets
    assert outlet == inlet and outlet.name == ASSET_NAME
    # The reconciliation stays daily: it reads the latest snapshot when it runs.
    assert dag.schedule == "@daily"


def test_refresh_dag_shape(refresh):
    upstream = {t.task_id: set(t.upstream_task_ids) for t in refresh.tasks}
    assert upstream == {"prepare": set(), "gate_registry": {"prepare"},
                        "publish": {"prepare", "gate_registry"}}
    assert refresh.catchup is False and refresh.max_active_runs == 1
    assert refresh.timetable.expression == "0 21 * * *"  # before the 00:00 UTC reconciliation
    for t in refresh.tasks:
        assert t.retries >= 1, t.task_id
        failing = {path for rule in t.retry_policy.rules for path in rule.exception}
        assert "pipelines.errors.RegistryError" in failing


def test_schedule_and_run_settings(dag):
    assert dag.schedule == "@daily"
    assert dag.timetable.expression == "0 0 * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.start_date is not None
    assert dag.start_date.tzinfo is not None
    assert dag.tags
    assert dag.doc_md
    assert "check" in dag.doc_md


def test_trigger_rules(dag):
    from airflow.sdk import TriggerRule

    rules = {t.task_id: t.trigger_rule for t in dag.tasks}
    # The shards are planned for whatever telcos made it through; everything else
    # needs its upstream to have succeeded.
    assert rules.pop("plan_shards") == TriggerRule.ALL_DONE_MIN_ONE_SUCCESS
    assert set(rules.values()) == {TriggerRule.ALL_SUCCESS}


def test_every_task_retries_except_bad_input(dag):
    for t in dag.tasks:
        assert t.retries >= 1, t.task_id
        assert t.retry_delay <= timedelta(minutes=10), t.task_id
        policy = t.retry_policy
        assert policy is not None, t.task_id
        failing = {path for rule in policy.rules for path in rule.exception}
        assert "pipelines.errors.TelcoInputError" in failing
        assert "pipelines.errors.RunIncompleteError" in failing
        assert "pipelines.errors.GateFailedError" in failing


def _dag_module(path: Path = DAG_FILE) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.stem)
def test_dag_file_imports_only_airflow_and_stages(dag_file):
    imported = set()
    for node in ast.walk(_dag_module(dag_file)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.stem)
def test_dag_file_imports_pipelines_only_inside_tasks(dag_file):
    for node in _dag_module(dag_file).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            assert not (module or "").startswith("pipelines"), "import pipelines inside tasks"


def test_dag_calls_existing_stage_functions():
    import pipelines.stages

    stage_functions = set(pipelines.stages.__all__)
    used = {
        alias.name
        for path in (DAG_FILE, REFRESH_FILE)
        for node in ast.walk(_dag_module(path))
        if isinstance(node, ast.ImportFrom) and node.module == "pipelines.stages"
        for alias in node.names
    }
    assert used <= stage_functions, used - stage_functions
    # Every stage of a run is wired (run_all and the like are for the CLI).
    assert {
        "plan_run",
        "gate_registry",
        "ingest_telco",
        "normalise_telco",
        "gate_export",
        "partition_telco",
        "plan_shards",
        "match_shard",
        "collect_searched",
        "plan_search",
        "route_search_batch",
        "search_partition",
        "choose_candidates",
        "spanning_flags",
        "flag_shard",
        "write_review_queue",
        "gate_results",
        "write_corrections",
        "gate_corrections",
        "build_report",
        "publish_run",
        "stage_lookup_index",
        "refresh_lookup_index",
        "check_run",
        "prepare_registry",
        "gate_prepared_registry",
        "publish_registry",
    } <= used


def test_retry_policy_names_existing_exceptions():
    # The policy names exceptions by dotted path, so the DAG file need not
    # import pipelines; make sure every path names a class that exists.
    paths = {
        node.value
        for dag_file in (DAG_FILE, REFRESH_FILE)
        for node in ast.walk(_dag_module(dag_file))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("pipelines.")
    }
    assert "pipelines.errors.TelcoInputError" in paths
    for path in paths:
        module, _, name = path.rpartition(".")
        source = REPO.joinpath(*module.split(".")).with_suffix(".py")
        classes = {
            node.name
            for node in ast.parse(source.read_text(encoding="utf-8")).body
            if isinstance(node, ast.ClassDef)
        }
        assert name in classes, path


def test_review_inbox_runs_every_quarter_hour_without_catchup(dagbag):
    inbox = dagbag.dags["review_inbox"]
    assert [t.task_id for t in inbox.tasks] == ["import_reviews"]
    assert inbox.schedule == "*/15 * * * *"
    assert inbox.catchup is False and inbox.max_active_runs == 1
