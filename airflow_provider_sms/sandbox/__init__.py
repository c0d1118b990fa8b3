"""A sandbox gateway: a real HTTP server on loopback speaking the ihuyi and juncdt protocols.

For tests, demos and benchmarks; it never imports Airflow. ``SandboxServer`` runs it in a thread,
``python -m airflow_provider_sms.sandbox`` in the foreground.
"""

from __future__ import annotations

from airflow_provider_sms.sandbox.app import create_app
from airflow_provider_sms.sandbox.server import SandboxServer
from airflow_provider_sms.sandbox.state import FaultSettings, SandboxState

__all__ = ["FaultSettings", "SandboxServer", "SandboxState", "create_app"]
