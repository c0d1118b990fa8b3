"""Data flows down: no module imports from a layer above its own, and the lower layers stay free of Airflow.

Read from the source (every import statement, including those inside functions and under
``TYPE_CHECKING``), so the rule holds for imports made at run time too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_sms"

# Each folder or top-level module of the package, and its layer.
LAYERS = {
    "operators": "airflow-facing",
    "sensors": "airflow-facing",
    "triggers": "airflow-facing",
    "notifications": "airflow-facing",
    "templating": "airflow-facing",
    "get_provider_info": "airflow-facing",
    "hooks": "hooks",
    "ledger_url": "hooks",
    "dispatch": "dispatch",
    "gateways": "gateways",
    "sandbox": "sandbox",
    "protocol": "protocol",
    "errors": "errors",
}
# A layer imports its own modules and those of lower ranks; the sandbox and the gateways, of one rank,
# know nothing of each other.
RANKS = {
    "airflow-facing": 5,
    "hooks": 4,
    "dispatch": 3,
    "gateways": 2,
    "sandbox": 2,
    "protocol": 1,
    "errors": 0,
}
AIRFLOW_FREE = ("dispatch", "gateways", "protocol", "errors", "sandbox")


def layer(module: str) -> str:
    """``airflow_provider_sms.hooks.ihuyi`` -> ``hooks``."""
    return LAYERS[module.split(".")[1]]


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, absolute, with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            if node.module == "airflow_provider_sms":  # from airflow_provider_sms import hooks
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_a_layer() -> None:
    assert {p.relative_to(PACKAGE).with_suffix("").parts[0] for p in MODULES} == set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_layer_above(path: Path) -> None:
    own = layer("airflow_provider_sms." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    upward = [
        f"line {line}: {module}"
        for line, module in imports(path)
        if module.startswith("airflow_provider_sms.")
        and layer(module) != own
        and RANKS[layer(module)] >= RANKS[own]
    ]
    assert upward == []
    if own in AIRFLOW_FREE:
        assert [m for _, m in imports(path) if m == "airflow" or m.startswith("airflow.")] == []


def test_the_check_sees_an_arrow_up(tmp_path: Path) -> None:
    planted = tmp_path / "mms_package.py"
    planted.write_text("def f():\n    from airflow_provider_sms.gateways.base import GatewayClient\n")
    assert imports(planted) == [(2, "airflow_provider_sms.gateways.base")]
    assert RANKS[layer("airflow_provider_sms.gateways.base")] >= RANKS["protocol"]
