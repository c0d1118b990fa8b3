"""Keep Airflow 3.2's ``dag.test()`` working through a task that runs a full garbage collection.

On Airflow 3.2, ``dag.test()`` serves the Execution API in process from an object it drops once its
client is built; the API's startup state (its services registry) lives on that object, so the first
full garbage collection during a task closes it, and the task's next call to Airflow fails with
``'State' object has no attribute 'svcs_registry'``. Airflow 3.3 ties that state to the client's
transport. Here every such object is kept for the life of the process, which has the same effect.
Test harness only: deployed workers talk to the API server and are not affected.
"""

from __future__ import annotations

from typing import Any


def keep_in_process_api_alive() -> None:
    """Idempotent; does nothing on Airflow 3.3 and later."""
    from airflow import __version__
    from packaging.version import Version

    if Version(__version__) >= Version("3.3"):
        return
    from airflow.sdk.execution_time import supervisor

    made = supervisor.in_process_api_server
    if getattr(made, "kept", None) is not None:
        return
    kept: list[Any] = []

    def in_process_api_server() -> Any:
        api = made()
        kept.append(api)
        return api

    in_process_api_server.kept = kept  # type: ignore[attr-defined]
    supervisor.in_process_api_server = in_process_api_server
