"""Start and stop real Airflow components (and the sandbox) as processes, each in its own process group.

Every process writes to a log file under the stack's folder; :meth:`Stack.logs` gives the tail of each
for failure messages. :meth:`Stack.stop` ends every process group (SIGTERM, then SIGKILL after a
deadline) and is safe to call twice, from a finalizer, after any failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from tests.helpers import ihuyi_conn, juncdt_conn
from tests.pgserver import free_port

if TYPE_CHECKING:
    import psutil

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited and shows the components' logs."""


def tail(path: Path, chars: int = 3000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<{exc}>"
    return text[-chars:]


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the test process dies, even by SIGKILL, so a
    component never outlives its test run; its own SIGTERM handling stops what it started."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Process:
    """One component: a command in its own session (process group), output to ``log``."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                env=dict(env),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() reaches its children too
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def terminate(self) -> None:
        """SIGTERM the whole process group (the component and what it started)."""
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)  # its own session: group id == pid

    def tree(self) -> list[psutil.Process]:
        """The component's process and every process it started (a task runs in a process group of its
        own: the Task SDK's supervisor makes one per task, out of reach of ``kill``)."""
        import psutil

        if self.popen is None:
            return []
        try:
            leader = psutil.Process(self.popen.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill_tree(self) -> list[int]:
        """SIGKILL the component and every process it started, as a machine's crash would; returns the
        pids killed."""
        tree = self.tree()
        kill_processes(tree)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)
        return [p.pid for p in tree]

    def kill(self) -> None:
        """SIGKILL the process group: the leader if still there, and children it left behind."""
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)


def kill_processes(processes: list[psutil.Process]) -> None:
    """SIGKILL each process still alive (a pid reused since is checked by psutil) and reap them."""
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=10)


def stop_all(processes: list[Process], grace: float = 5) -> None:
    """SIGTERM every group at once, wait up to ``grace`` seconds for the leaders, then SIGKILL every
    group and every process they had started (task processes in groups of their own included). The
    dag-processor and the triggerer take over 10 s to stop on SIGTERM: throwaway components get less."""
    started = [child for process in processes for child in process.tree()]
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        if process.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(max(0.0, deadline - time.monotonic()))
    for process in processes:
        process.kill()
    kill_processes(started)


@dataclass
class Stack:
    """The sandbox and Airflow's scheduler, dag-processor, triggerer and api-server in one fresh
    ``AIRFLOW_HOME`` (``folder``), with LocalExecutor and a SQLite metadata database (by default)."""

    folder: Path
    executor: str = "LocalExecutor"
    # The Airflow components start() runs (`airflow NAME`), in this order.
    components: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")
    # Empty: SQLite in the home folder. A PostgreSQL metadata database also needs asyncpg (Airflow 3.3
    # builds an async engine from this URL).
    database_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    api_url: str = ""
    sandbox_url: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # seconds since start(), by milestone

    # ----- setup --------------------------------------------------------------------------------
    def prepare(self, dag_files: list[Path]) -> None:
        home = self.folder / "airflow_home"
        dags = home / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        for source in dag_files:
            (dags / source.name).symlink_to(source)
        (self.folder / "data").mkdir(exist_ok=True)
        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        # Nothing of the test session's own Airflow settings (conftest's AIRFLOW_HOME) leaks in.
        database = self.database_url or f"sqlite:///{home / 'airflow.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SMS_"))}
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": self.api_url,
                # One secret for every component: the scheduler signs the workers' tokens, the
                # api-server checks them.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(16),
                # Runs only when the test triggers them (the campaign DAG has a weekly schedule).
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                # Free ports for the log servers, so parallel suites on one machine do not collide.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "SMS_EXAMPLE_DATA_DIR": str(self.folder / "data"),
                "AIRFLOW_VAR_SMS_REPORT_DIR": str(self.folder / "data"),
            }
        )
        env.update(self.extra_env)
        self.env = env

    def start(self, dag_files: list[Path]) -> None:
        """Everything up, in order: sandbox, database, components; returns once the API answers and
        the dag-processor has parsed ``dag_files``' DAGs (bounded waits)."""
        clock = time.monotonic()
        self.prepare(dag_files)
        self.start_sandbox()
        self.cli("db", "migrate", timeout=180)
        self.timings["db migrate"] = time.monotonic() - clock
        for name in self.components:
            self.spawn(name, [sys.executable, "-m", "airflow", name])
        self.wait(self.api_ready, 180, "the api-server to answer its health checks")
        self.timings["api ready"] = time.monotonic() - clock

    def start_sandbox(self) -> None:
        process = self.spawn("sandbox", [sys.executable, "-m", "airflow_provider_sms.sandbox", "--port", "0"])
        pattern = re.compile(r"SMS sandbox gateway on (http://\S+)")

        def url() -> str | None:
            found = pattern.search(tail(process.log, 100_000))
            return found.group(1) if found else None

        self.sandbox_url = self.wait(url, 30, "the sandbox to print its URL")
        # The suite's sandbox connections (quiet hours off: the scenarios run at any hour).
        self.env["AIRFLOW_CONN_IHUYI_DEFAULT"] = json.dumps(ihuyi_conn(self.sandbox_url))
        self.env["AIRFLOW_CONN_JUNCDT_DEFAULT"] = json.dumps(juncdt_conn(self.sandbox_url))

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        """Start a process of the stack (``env``: other settings than the stack's, e.g. a worker's)."""
        process = Process(name, argv, self.folder / f"{name}.log")
        self.processes[name] = process
        process.start(self.env if env is None else env, self.folder)
        return process

    def stop(self) -> None:
        """Stop every component (the sandbox last: tasks still running may be talking to it)."""
        airflow = [p for name, p in self.processes.items() if name != "sandbox"]
        stop_all(airflow)
        stop_all([p for name, p in self.processes.items() if name == "sandbox"], grace=5)

    # ----- using it -----------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 90) -> str:
        """Run ``airflow ARGS`` with the stack's settings; its output is appended to ``cli.log``."""
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        with (self.folder / "cli.log").open("a", encoding="utf-8") as out:
            out.write(f"$ airflow {' '.join(args)}  (exit {done.returncode})\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} failed (exit {done.returncode}):\n"
                f"{(done.stdout + done.stderr)[-3000:]}{self.logs()}"
            )
        return done.stdout

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A call of Airflow's REST API (``/api/v2``...); simple auth manager, all users admins."""
        response = httpx.request(method, self.api_url + path, json=body, timeout=30)
        if response.is_error:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text[:2000]}")
        return response.json() if response.content else None

    def sandbox(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, self.sandbox_url + path, json=body, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def api_ready(self) -> bool:
        """Both APIs answer. The execution API builds its versioned routes on its first request (about
        20 s on two slow cores, blocking the server): done here, not in the first task's first call."""
        try:
            if httpx.get(self.api_url + "/api/v2/monitor/health", timeout=5).status_code != 200:
                return False
            return httpx.get(self.api_url + "/execution/health", timeout=90).status_code == 200
        except httpx.HTTPError:
            return False

    def wait(self, condition: Callable[[], T | None], timeout: float, what: str, every: float = 0.5) -> T:
        """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds, saying
        ``what`` was awaited, with the components' logs. A component that died fails the wait at once."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            dead = [p.name for p in self.processes.values() if p.popen is not None and not p.alive()]
            if dead:
                raise WaitTimeout(f"waiting for {what}: {', '.join(dead)} exited{self.logs()}")
            if time.monotonic() > deadline:
                raise WaitTimeout(f"waited {timeout:g}s for {what}{self.logs()}")
            time.sleep(every)

    def logs(self, chars: int = 2500, task_logs: int = 6) -> str:
        """The tail of every component's log and of the latest task logs, for a failure message."""
        parts = [f"\n\n=== logs kept in {self.folder} ==="]
        files = sorted(self.folder.glob("*.log"))
        found = self.folder.rglob("attempt=*.log")  # the task logs, in each worker's home too
        files += sorted(found, key=lambda p: p.stat().st_mtime)[-task_logs:]
        for path in files:
            parts.append(f"--- {path.relative_to(self.folder)} (tail) ---\n{tail(path, chars)}")
        return "\n".join(parts)
