"""`make demo`: run the balance-gated MMS campaign DAG through real Airflow against the sandbox.

Starts the sandbox gateway on loopback with a balance too low for the audience, configures the
``ihuyi_default`` / ``juncdt_default`` connections to it (Airflow's JSON env-var form), and runs
``airflow dags test example_mms_campaign``. The deferrable balance sensor waits until the sandbox
account is "recharged" a few seconds in; then the campaign goes out. Prints what the sandbox received.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
AUDIENCE = 2000
# Airflow's console log line: "<timestamp> [<level>] <event> [<logger>] key=value...".
EVENT = re.compile(r"^(\S+) \[\w+\s*\] (.+?) \[([\w.]+)\]")
RUN_FINISHED = re.compile(r"DagRun Finished: .* state=(\w+)")
EVENTS = ("created MMS template", "ihuyi balance", "DEFERRED", "Balance guard", "Progress:", "Done:", "ERROR")


def main() -> int:
    from airflow_provider_sms.sandbox.accounts import (
        IHUYI_ACCOUNT,
        IHUYI_PASSWORD,
        JUNCDT_ACCESS_KEY,
        JUNCDT_ACCESS_SECRET,
        JUNCDT_PACKAGE_CODE,
    )
    from airflow_provider_sms.sandbox.server import SandboxServer

    WORK.mkdir(exist_ok=True)
    env = os.environ.copy()
    env.update(
        {
            "AIRFLOW_HOME": str(WORK / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "SMS_EXAMPLE_DATA_DIR": str(WORK / "data"),
            "SMS_EXAMPLE_AUDIENCE": str(AUDIENCE),
        }
    )
    with SandboxServer() as sandbox:
        print(f"Sandbox gateway listening on {sandbox.url}")
        env["AIRFLOW_CONN_IHUYI_DEFAULT"] = json.dumps(
            {
                "conn_type": "ihuyi",
                "host": sandbox.url,
                "login": IHUYI_ACCOUNT,
                "password": IHUYI_PASSWORD,
                "extra": {"pid": 1, "timeout": 10, "quiet_hours": "off"},
            }
        )
        env["AIRFLOW_CONN_JUNCDT_DEFAULT"] = json.dumps(
            {
                "conn_type": "juncdt",
                "host": sandbox.url,
                "login": JUNCDT_ACCESS_KEY,
                "password": JUNCDT_ACCESS_SECRET,
                "extra": {
                    "classification_secret": JUNCDT_PACKAGE_CODE,
                    "sign_code": "SIGN01",
                    "quiet_hours": "off",
                },
            }
        )
        print(
            "The sandbox connections set quiet_hours 'off', so the demo's marketing campaign sends at any "
            "hour; on a connection without it, a campaign started outside 08:00-21:00 Asia/Shanghai "
            "defers (no worker slot held) until the window opens."
        )
        control = httpx.Client(base_url=sandbox.url, timeout=10)
        control.post("/_sandbox/accounts", json={"ihuyi": {"balance": 500}}).raise_for_status()
        print(f"Sandbox ihuyi balance: 500 messages, audience {AUDIENCE}: the balance sensor will wait.")

        def recharge() -> None:
            time.sleep(12)
            control.post("/_sandbox/accounts", json={"ihuyi": {"balance": 100_000}}).raise_for_status()
            print("Sandbox: account recharged to 100000 messages.", flush=True)

        print("Preparing the Airflow metadata database (first run only takes a while)...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        threading.Thread(target=recharge, daemon=True).start()
        print("Running: airflow dags test example_mms_campaign", flush=True)
        run = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", "example_mms_campaign"],
            env=env,
            check=False,
            capture_output=True,
            text=True,
        )
        log_file = WORK / "dags-test.log"
        log_file.write_text(run.stdout + run.stderr, encoding="utf-8")
        state = "unknown"
        print("What happened (from the Airflow log):")
        for line in (run.stdout + run.stderr).splitlines():
            if finished := RUN_FINISHED.search(line):
                state = finished.group(1)
            elif (event := EVENT.match(line)) and any(key in event.group(2) for key in EVENTS):
                clock, message, logger = event.group(1)[11:19], event.group(2).strip(), event.group(3)
                print(f"  {clock}  {message}  [{logger.rsplit('.', 1)[-1]}]")
        print(f"  DAG run state: {state}")
        counts = control.get("/_sandbox/deliveries/count").json()
        sandbox_state = control.get("/_sandbox/state").json()
        sample = control.get("/_sandbox/deliveries", params={"gateway": "ihuyi"}).json()
        sample = sample["deliveries"] if isinstance(sample, dict) else sample
        print("\nWhat the sandbox received:")
        print("  deliveries:", json.dumps(counts, ensure_ascii=False))
        print("  ihuyi balance left:", sandbox_state.get("ihuyi", {}).get("balance", sandbox_state))
        for item in sample[:3]:
            number = str(item["number"])
            print(f"  e.g. {number[:3]}****{number[-4:]} template {item.get('mmsid')}")
        report = sorted((WORK / "data").glob("report-*.csv"))
        if report:
            print(f"  per-recipient report: {report[-1]} ({sum(1 for _ in report[-1].open()) - 1} rows)")
        print(f"  full Airflow log: {log_file}")
        if run.returncode != 0 or state != "success":
            print(f"airflow dags test failed (exit {run.returncode}, run {state}); see {log_file}")
            return run.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
