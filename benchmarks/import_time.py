"""What importing the provider's DAG-facing modules adds to ``import airflow.sdk`` (DAG-parse cost).

Runs each variant in fresh interpreters, alternating, and reports the median wall time of the
imports measured inside the process (``-X importtime`` gives the per-module breakdown:
``python -X importtime -c "import airflow.sdk; import airflow_provider_sms.operators.mms"``).

    python benchmarks/import_time.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

MODULES = [
    "airflow_provider_sms.operators.mms",
    "airflow_provider_sms.operators.sms",
    "airflow_provider_sms.operators.template",
    "airflow_provider_sms.sensors.balance",
    "airflow_provider_sms.notifications.sms",
]
# Import the package itself first: an editable install adds a finder that a normal install has not.
PROBE = """
import time, importlib
import airflow_provider_sms
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
for name in {modules!r}:
    importlib.import_module(name)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sdk, ours = [], []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(modules=MODULES)], capture_output=True, text=True, check=True
        ).stdout.split()
        sdk.append(float(out[0]) * 1000)
        ours.append(float(out[1]) * 1000)
    print(f"import airflow.sdk: median {statistics.median(sdk):.1f} ms")
    print(
        f"then the provider's operator, sensor and notifier modules: median {statistics.median(ours):.1f} ms "
        f"(max {max(ours):.1f} ms) over {args.runs} runs"
    )


if __name__ == "__main__":
    main()
