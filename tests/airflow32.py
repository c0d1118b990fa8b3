"""Two fixes of Airflow 3.2's ``dag.test()`` for the tests, both made in Airflow 3.3.

``dag.test()`` serves the Execution API in process. On Airflow 3.2 it builds a new one for every task,
schedules its startup (which registers its services) without waiting for it, so a task's first call can
come first, and keeps the started state on an object it drops at once, so the first full garbage
collection during a task shuts the API down. Either way the task's call fails with ``'State' object has
no attribute 'svcs_registry'``. Airflow 3.3 builds one per process, waits for its startup and keeps it.
Here the same is done on 3.2. Deployed workers talk to the API server and are not affected.
"""

from __future__ import annotations

import functools
import time
from typing import Any

STARTUP_TIMEOUT = 120.0  # seconds


def airflow_33() -> bool:
    from airflow import __version__
    from packaging.version import Version

    return Version(__version__) >= Version("3.3")


def dag_test_gives_callbacks_the_exception() -> bool:
    """Airflow 3.2's ``dag.test()`` leaves ``exception`` out of a failure callback's context (a deployed
    worker puts it in); 3.3's puts it in."""
    return airflow_33()


def keep_in_process_api_alive() -> None:
    """Idempotent; does nothing on Airflow 3.3 and later."""
    if airflow_33():
        return
    from airflow.sdk.execution_time import supervisor

    made = supervisor.in_process_api_server
    if hasattr(made, "cache_info"):
        return

    @functools.lru_cache(maxsize=1)
    def in_process_api_server() -> Any:
        api = made()
        api.transport  # noqa: B018 (builds the app and schedules its startup)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not hasattr(api.app.state, "svcs_registry"):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "Airflow's in-process Execution API did not start (is [api_auth] jwt_secret set?)"
                )
            time.sleep(0.01)
        return api

    supervisor.in_process_api_server = in_process_api_server
