"""``python -m airflow_provider_sms.sandbox``: the sandbox gateway in the foreground (Ctrl-C stops it).

Prints its URL and the default accounts' credentials (sandbox-only fakes) so a developer can point
Airflow connections at it, or a benchmark can run it in a process of its own.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from uvicorn.config import LOGGING_CONFIG

from airflow_provider_sms.sandbox import ihuyi, juncdt
from airflow_provider_sms.sandbox.app import create_app
from airflow_provider_sms.sandbox.server import bind_socket, url_of, uvicorn_server
from airflow_provider_sms.sandbox.state import FaultSettings, SandboxState

if TYPE_CHECKING:
    from collections.abc import Sequence


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_sms.sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port; default 8765)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency added to gateway calls")
    parser.add_argument("--config", help="JSON file of account/fault settings over the defaults")
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="keep counters only, not one record per delivery/request (benchmarks)",
    )
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM; needs --tls-key)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def build_state(args: argparse.Namespace) -> SandboxState:
    faults = FaultSettings()
    if args.latency_ms:
        faults.patch({"latency_ms": args.latency_ms})
    record = not args.no_record
    if args.config:
        return SandboxState.from_file(args.config, record=record, faults=faults)
    return SandboxState(record=record, faults=faults)


def banner(url: str, state: SandboxState) -> str:
    """What to connect with: the URL and the accounts' (fake) credentials."""
    ih, jd = state.ihuyi, state.juncdt
    return "\n".join(
        [
            f"SMS sandbox gateway on {url}  (fake accounts, sandbox only)",
            f"  ihuyi   POST {url}{ihuyi.PATH}?method=SendMms|GetNum|CreateMms",
            f"          account={ih.account} password={ih.password} pid={sorted(ih.product_ids)} "
            f"mmsid={list(ih.templates)}",
            f"  juncdt  POST {url}{juncdt.PATH}",
            f"          accessKey={jd.access_key} accessSecret={jd.access_secret} "
            f"classificationSecret={jd.classification_secret}",
            f"          signCode={sorted(jd.signs)} templateCode={sorted(jd.templates)}",
            f"  control {url}/_sandbox/state | deliveries | requests | force | faults | accounts | reset",
            f"  latency {state.faults.latency_ms:g} ms, "
            f"recording {'on' if state.record else 'off (counters only)'}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        state = build_state(args)
    except (OSError, ValueError) as exc:
        print(f"sandbox: bad settings: {exc}", file=sys.stderr)
        return 2
    sock = bind_socket(args.host, args.port)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    url = url_of(args.host, int(sock.getsockname()[1]), tls=tls is not None)
    print(banner(url, state), flush=True)
    server = uvicorn_server(create_app(state), log_config=LOGGING_CONFIG, tls=tls)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
