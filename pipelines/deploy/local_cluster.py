"""A real distributed Airflow on one machine: the Celery executor and shared storage.

``scripts/cluster.sh up|run|status|down`` and ``tests/test_cluster.py`` both use this
module. Every server listens on 127.0.0.1 only, on free ports, and everything lives in
one folder (default ``.cluster/`` in the checkout) with its logs:

* PostgreSQL (Debian's ``postgresql``; ``initdb``/``pg_ctl``): database ``airflow``
  (Airflow's metadata and Celery's results) and ``simrecon`` (the history store);
* Redis (Debian's ``redis-server``): the Celery broker;
* an S3-compatible server (moto's, as in the tests): bucket ``simrecon`` with the
  inputs (``inputs/``) and ``output_dir`` (``runs/``, with every run's working state);
* Airflow's API server, scheduler and DAG processor, and two Celery workers
  (``worker-a``, ``worker-b``: Celery node names and the task instances' hostnames).

Each process is started in its own session (process group), its pid kept in
``cluster.json``; ``down`` ends those groups (TERM, then KILL) and stops PostgreSQL,
and nothing else. ``env.sh`` holds the environment every component shares (source it to
use the ``airflow`` CLI against the cluster).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BUCKET = "simrecon"
WORKERS = ("worker-a", "worker-b")
USER, PASSWORD_BYTES = "admin", 18
# Connection ids of the deployment (docs/deployment.md): the object store and the
# history store, as Airflow connections, for operators and hooks that want them.
OBJECT_STORE_CONN_ID = "simrecon_object_store"
HISTORY_STORE_CONN_ID = "simrecon_history_store"


class ClusterError(RuntimeError):
    """A component did not start or answer; the message names its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise ClusterError(f"{name} not found: apt-get install postgresql redis-server "
                           "(scripts/test.sh installs them)")
    return found


def _venv_bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


@dataclass
class Cluster:
    """A local cluster's folder, ports, secrets and processes (``cluster.json``)."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    password: str = ""
    secret: str = ""
    # PostgreSQL's data folder: its own temporary folder, which the postgres user (the
    # server refuses to run as root) can reach even when ``root`` is private.
    pg_dir: str = ""
    # The world run through it: a folder with registry/citizens.parquet and exports/
    # (a generated one: benchmarks/), or the bundled samples; its registry's shard count.
    world: str = ""
    shards: int = 4
    # The API's bearer token, fetched once and kept until the API refuses it: asking for
    # one per request doubled the requests a busy one-worker API server must answer.
    _token: str = field(default="", repr=False, compare=False)

    # --- state -------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @classmethod
    def load(cls, root: Path) -> Cluster:
        data = json.loads((root / "cluster.json").read_text(encoding="utf-8"))
        return cls(root=root, ports=data["ports"], pids=data["pids"],
                   password=data["password"], secret=data["secret"], pg_dir=data["pg_dir"],
                   world=data.get("world", ""), shards=data.get("shards", 4))

    def save(self) -> None:
        self.state_file.write_text(json.dumps(
            {"ports": self.ports, "pids": self.pids, "password": self.password,
             "secret": self.secret, "pg_dir": self.pg_dir,
             "world": self.world, "shards": self.shards}, indent=2), encoding="utf-8")
        self.state_file.chmod(0o600)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def config_path(self) -> Path:
        return self.root / "simrecon.yaml"

    def pg_url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://simrecon@127.0.0.1:{self.ports['pg']}/{database}"

    # --- environment shared by every component ---------------------------------------------
    def env(self) -> dict[str, str]:
        airflow_db = self.pg_url("airflow", "postgresql+psycopg")
        values = {
            "AIRFLOW_HOME": str(self.root / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "pipelines.deploy.hostname.worker_name",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE":
                str(self.root / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": airflow_db,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{airflow_db}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS":
                "pipelines.deploy.celery_config.CELERY_CONFIG",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.ports["api"]),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__SECRET_KEY": self.secret,
            "AIRFLOW__API_AUTH__JWT_SECRET": self.secret,
            # A killed worker's task is noticed within ~20 s and retried elsewhere.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "simrecon=INFO",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            f"AIRFLOW_CONN_{OBJECT_STORE_CONN_ID.upper()}": json.dumps({
                "conn_type": "aws", "extra": {"endpoint_url": self.s3_url}}),
            f"AIRFLOW_CONN_{HISTORY_STORE_CONN_ID.upper()}": json.dumps({
                "conn_type": "postgres", "host": "127.0.0.1", "port": self.ports["pg"],
                "login": "simrecon", "schema": "simrecon"}),
            # The object store, for the stages (fsspec/s3fs) and anything boto-based.
            "AWS_ACCESS_KEY_ID": "simrecon", "AWS_SECRET_ACCESS_KEY": "simrecon-local",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.s3_url,
            "SIMRECON_CONFIG": str(self.config_path),
            "SIMRECON_SCHEDULE": "external",
            "SIMRECON_AUTO_APPROVE": "1",
            "SIMRECON_TASK_RETRIES": "2",
            "SIMRECON_RETRY_DELAY_SECONDS": "3",
            "PYTHONPATH": str(REPO),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "PYTHONWARNINGS": "ignore",
        }
        return values

    def _process_env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("AIRFLOW", "AWS_", "SIMRECON_"))}
        return {**base, **self.env(), **extra}

    # --- processes ---------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], **extra_env: str) -> None:
        log = (self.root / "logs" / f"{name}.log").open("ab")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=self.root,
                                   env=self._process_env(**extra_env), start_new_session=True)
        self.pids[name] = process.pid
        self.save()

    def _as_postgres(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _start_postgres(self) -> None:
        self.pg_dir = tempfile.mkdtemp(prefix="simrecon-cluster-pg-")
        self.save()
        folder = Path(self.pg_dir)
        data = folder / "data"
        prefix = self._as_postgres()
        if prefix:
            user = pwd.getpwnam("postgres")
            os.chown(folder, user.pw_uid, user.pw_gid)

        def run(*args: str) -> None:
            done = subprocess.run([*prefix, *args], capture_output=True, timeout=120,
                                  check=False)
            if done.returncode:
                raise ClusterError(f"{args[0]} failed: {done.stderr.decode()[-800:]}")

        run(_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "simrecon", "-E", "UTF8",
            "--no-sync", "--no-instructions")
        run(_binary("pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t",
            "60", "-o", f"-F -p {self.ports['pg']} -h 127.0.0.1 -k {folder} "
            "-c max_connections=300", "start")
        import psycopg

        with psycopg.connect(self.pg_url("postgres"), autocommit=True) as conn:
            for database in ("airflow", "simrecon"):
                conn.execute(f'CREATE DATABASE "{database}"')

    def _stop_postgres(self) -> None:
        if not self.pg_dir:
            return
        data = Path(self.pg_dir) / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run([*self._as_postgres(), _binary("pg_ctl"), "-D", str(data), "-m",
                            "fast", "-w", "-t", "60", "stop"], capture_output=True,
                           timeout=90, check=False)
        shutil.rmtree(self.pg_dir, ignore_errors=True)

    def _wait(self, what: str, ready: Any, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if ready():
                    return
            dead = [n for n, pid in self.pids.items() if not _alive(pid)]
            if dead:
                raise ClusterError(f"{', '.join(dead)} exited: see {self.root / 'logs'}")
            time.sleep(0.5)
        raise ClusterError(f"{what} not ready after {timeout:.0f}s: see {self.root / 'logs'}")

    def up(self) -> Cluster:
        """Start every component and load the sample world's inputs into the bucket."""
        if self.state_file.exists():
            raise ClusterError(f"{self.root}: a cluster is there already (down first)")
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        (self.root / "airflow").mkdir(exist_ok=True)
        self.ports = {k: free_port() for k in ("pg", "redis", "s3", "api")}
        self.secret = secrets.token_urlsafe(32)
        self.password = secrets.token_urlsafe(PASSWORD_BYTES)
        passwords = self.root / "passwords.json"
        passwords.write_text(json.dumps({USER: self.password}), encoding="utf-8")
        passwords.chmod(0o600)
        self.save()
        try:
            self._start_postgres()
            self._spawn("redis", [_binary("redis-server"), "--bind", "127.0.0.1", "--port",
                                  str(self.ports["redis"]), "--save", "", "--appendonly",
                                  "no", "--protected-mode", "yes"])
            self._spawn("s3", [_venv_bin("moto_server"), "-H", "127.0.0.1", "-p",
                               str(self.ports["s3"])])
            self._wait("S3 server", lambda: urllib.request.urlopen(self.s3_url, timeout=2))
            self._write_world()
            subprocess.run([_venv_bin("airflow"), "db", "migrate"], check=True,
                           env=self._process_env(), cwd=self.root, timeout=600,
                           stdout=(self.root / "logs" / "db-migrate.log").open("ab"),
                           stderr=subprocess.STDOUT)
            airflow = _venv_bin("airflow")
            self._spawn("api-server", [airflow, "api-server", "--host", "127.0.0.1",
                                       "--port", str(self.ports["api"]), "--workers", "1"])
            self._spawn("scheduler", [airflow, "scheduler"])
            self._spawn("dag-processor", [airflow, "dag-processor"])
            for name in WORKERS:
                self.start_worker(name)
            self._wait("API server", lambda: self.token(), timeout=240)
            self._wait("both DAGs", lambda: all(
                self.api("GET", f"/api/v2/dags/{d}").get("dag_id") == d
                for d in ("citizen_registry_refresh", "subscriber_reconciliation")),
                timeout=240)
            for dag_id in ("citizen_registry_refresh", "subscriber_reconciliation"):
                self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            self._wait("both Celery workers", lambda: self.workers_online() == set(WORKERS),
                       timeout=240)
        except BaseException:
            self.down(remove=False)
            raise
        return self

    def _write_world(self) -> None:
        """The sample inputs in the bucket; the run configuration naming only URLs."""
        import s3fs

        fs = s3fs.S3FileSystem(key="simrecon", secret="simrecon-local",
                               endpoint_url=self.s3_url, skip_instance_cache=True)
        fs.mkdir(BUCKET)
        world = Path(self.world) if self.world else REPO / "data_samples"
        fs.put_file(str(world / "registry" / "citizens.parquet"),
                    f"{BUCKET}/inputs/registry/citizens.parquet")
        telcos = self.root / "telcos"
        telcos.mkdir(exist_ok=True)
        for path in sorted((REPO / "config" / "telcos").glob("*.yaml")):
            mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
            source = (path.parent / mapping["source"]).resolve()
            source = world / "exports" / source.name
            fs.put_file(str(source), f"{BUCKET}/inputs/exports/{source.name}")
            mapping["source"] = f"s3://{BUCKET}/inputs/exports/{source.name}"
            (telcos / path.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                            encoding="utf-8")
        config = {
            "registry": f"s3://{BUCKET}/inputs/registry/citizens.parquet",
            "telcos_dir": str(telcos),
            "output_dir": f"s3://{BUCKET}/runs",
            "work_dir": str(self.root / "scratch"),  # each task's work area, then removed
            "shared_work": True,
            "prepared_registry": {"shards": self.shards, "prepare_in_run": False},
            "correction_cycle": {"history_store": self.pg_url("simrecon"),
                                 "auto_approve": True},
        }
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = "".join(f"export {k}={_quote(v)}\n" for k, v in self.env().items())
        (self.root / "env.sh").write_text(env, encoding="utf-8")

    def down(self, *, remove: bool = True) -> None:
        """End every process this cluster started (its process groups), stop PostgreSQL."""
        for pid in reversed(list(self.pids.values())):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_group_alive(p) for p in self.pids.values()):
            time.sleep(0.3)
        for pid in self.pids.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid in self.pids.values():  # reap our children (no zombies left behind)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        self._stop_postgres()
        self.pids = {}
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)
        elif self.root.exists():
            self.state_file.unlink(missing_ok=True)

    def start_worker(self, name: str) -> None:
        """A Celery worker (again, after ``kill_worker``) under its own name."""
        self._spawn(name, [_venv_bin("airflow"), "celery", "worker", "--celery-hostname",
                           name, "--concurrency", "1"], SIMRECON_WORKER_NAME=name,
                    SIMRECON_PRELOAD_STAGES="1",
                    AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()))

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker's whole process group (the worker and its running task)."""
        os.killpg(self.pids[name], signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pids[name], 0)

    def status(self) -> dict[str, bool]:
        return {name: _alive(pid) for name, pid in self.pids.items()}

    # --- REST API (as an external scheduler uses it) ---------------------------------------
    def token(self) -> str:
        if not self._token:
            request = urllib.request.Request(
                f"{self.api_url}/auth/token", method="POST",
                data=json.dumps({"username": USER, "password": self.password}).encode(),
                headers={"Content-Type": "application/json"})
            self._token = json.loads(_answer(request, timeout=30))["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        for attempt in (1, 2):
            request = urllib.request.Request(
                f"{self.api_url}{path}", method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {self.token()}",
                         "Content-Type": "application/json"})
            try:
                # A POST is not repeated: it may have been done before the answer was lost.
                return json.loads(_answer(request, timeout=60,
                                          tries=1 if method == "POST" else 4) or b"{}")
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1:  # expired: a new token, once
                    self._token = ""
                    continue
                raise ClusterError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") \
                    from exc
        raise AssertionError("unreachable")

    def workers_online(self) -> set[str]:
        """Celery workers answering a ping through the broker."""
        from celery import Celery

        app = Celery(broker=f"redis://127.0.0.1:{self.ports['redis']}/0")
        try:
            replies = app.control.ping(timeout=2.0) or []
        finally:
            app.close()
        return {name.split("@", 1)[-1] for reply in replies for name in reply}

    def trigger(self, dag_id: str, run_date: str, run_id: str | None = None) -> str:
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {
            "dag_run_id": run_id or f"external__{run_date}__{secrets.token_hex(4)}",
            "logical_date": f"{run_date}T00:00:00Z"})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise ClusterError(f"{dag_id} {run_id} still running after {timeout:.0f}s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        found = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
                                "?limit=1000")
        return found["task_instances"]

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict]:
        found = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/"
                                f"{task_id}/{map_index}/tries")
        return found["task_instances"]

    def run_world(self, run_date: str, timeout: float = 900) -> dict[str, str]:
        """Refresh the registry, then reconcile ``run_date``: both through the REST API."""
        refresh = self.trigger("citizen_registry_refresh", run_date)
        states = {"citizen_registry_refresh": self.wait_run("citizen_registry_refresh",
                                                            refresh, timeout)}
        run = self.trigger("subscriber_reconciliation", run_date)
        states["subscriber_reconciliation"] = self.wait_run("subscriber_reconciliation", run,
                                                            timeout)
        states["run_id"] = run
        return states


def _answer(request: urllib.request.Request, timeout: float, tries: int = 4) -> bytes:
    """The response body; a timeout or refused connection is retried with a pause.

    On two shared cores the one API server also serves every running task's execution
    API calls, so one slow answer is load, not a fault. HTTP errors are not retried.
    """
    for attempt in range(1, tries + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError:
            raise
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            if attempt == tries:
                raise
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def running(root: Path) -> Iterator[Cluster]:
    """A cluster for the length of a ``with`` block, always brought down."""
    cluster = Cluster(root)
    try:
        yield cluster.up()
    finally:
        cluster.down()


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.deploy.local_cluster up|run [DATE]|status|down [--dir D]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="cluster.sh", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "run", "status", "down"])
    parser.add_argument("run_date", nargs="?", default="2026-11-28")
    parser.add_argument("--dir", default=str(REPO / ".cluster"))
    parser.add_argument("--world", default="", help="up: a generated world's folder "
                        "(registry/, exports/; benchmarks/scale.py), default the samples")
    parser.add_argument("--shards", type=int, default=4, help="up: registry shards")
    args = parser.parse_args(argv)
    root = Path(args.dir).resolve()
    if args.command == "up":
        cluster = Cluster(root, world=str(Path(args.world).resolve()) if args.world else "",
                          shards=args.shards).up()
        print(f"cluster up: API {cluster.api_url} (user {USER}, password in "
              f"{root / 'passwords.json'}), S3 {cluster.s3_url}, logs {root / 'logs'}; "
              f"`source {root / 'env.sh'}` to use the airflow CLI against it")
        return 0
    if not (root / "cluster.json").exists():
        print(f"no cluster in {root}", file=sys.stderr)
        return 1 if args.command != "down" else 0
    cluster = Cluster.load(root)
    if args.command == "down":
        cluster.down()
        print(f"cluster down; {root} removed")
        return 0
    if args.command == "status":
        for name, alive in cluster.status().items():
            print(f"{name:14} {'running' if alive else 'NOT RUNNING'} (pid {cluster.pids[name]})")
        with contextlib.suppress(Exception):
            print(f"celery workers online: {sorted(cluster.workers_online())}")
        return 0 if all(cluster.status().values()) else 1
    states = cluster.run_world(args.run_date)
    print(json.dumps(states, indent=2))
    print(f"outputs: s3://{BUCKET}/runs/{args.run_date}/ at {cluster.s3_url}")
    return 0 if set(states.values()) - {states["run_id"]} == {"success"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
