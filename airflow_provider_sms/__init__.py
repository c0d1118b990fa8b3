"""Apache Airflow provider for SMS and MMS through the ihuyi and juncdt gateways."""

from __future__ import annotations

__version__ = "0.1.0"
