"""MmsTemplateUploadOperator: every source form reaches the sandbox's template store; bad ones never leave."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_sms.errors import TransientGatewayError
from airflow_provider_sms.hooks.ihuyi import IhuyiHook
from airflow_provider_sms.operators.template import MmsTemplateUploadOperator
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import control, deliveries, force, raises, run_dag

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
SMIL = (
    '<smil><head><layout><region id="Image"/><region id="Text"/></layout></head><body>'
    '<par dur="5s"><img src="1.gif" region="Image"/><text src="1.txt" region="Text"/></par></body></smil>'
)

# Frames computed by an upstream task arrive through XCom as lists; the id flows on to the send.
DAGS_SOURCE = """
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_provider_sms.operators.mms import MmsSendOperator
from airflow_provider_sms.operators.template import MmsTemplateUploadOperator

with DAG("sms_test_template_upload", schedule=None, start_date=datetime(2026, 1, 1),
         default_args={"retries": 0}) as dag:
    @task
    def frames():
        return [["{gif}", "Sale starts {{ ds }}", 4], {"text": "See you there", "seconds": 3}]

    upload = MmsTemplateUploadOperator(task_id="upload", title="Sale {{ ds }}", source=frames())
    MmsSendOperator(task_id="send", recipients=["13800138000"], mmsid=upload.output, use_ledger=False)
"""

pytestmark = pytest.mark.usefixtures("connections")


def requests_log(server: SandboxServer) -> list[dict[str, Any]]:
    data = control(server, "GET", "/_sandbox/requests")
    return list(data["requests"] if isinstance(data, dict) else data)


def stored_templates(server: SandboxServer) -> list[str]:
    return list(control(server, "GET", "/_sandbox/state")["ihuyi"]["templates"])


def upload(source: Any, **kwargs: Any) -> str:
    return MmsTemplateUploadOperator(task_id="upload", title="Promo", source=source, **kwargs).execute({})  # type: ignore[arg-type]


def assert_usable(server: SandboxServer, template_id: str) -> None:
    assert isinstance(template_id, str) and template_id.isdigit()
    assert template_id in stored_templates(server)
    IhuyiHook().send_mms("13800138000", template_id)
    assert [d["mmsid"] for d in deliveries(server, "ihuyi")] == [template_id]


def make_zip(*members: tuple[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members:
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture
def gif(tmp_path: Path) -> Path:
    path = tmp_path / "frame.gif"
    path.write_bytes(GIF)
    return path


def test_upload_from_folder(connections: SandboxServer, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "1.gif").write_bytes(GIF)
    (folder / "1.txt").write_text("双十一大促", encoding="utf-8")
    assert_usable(connections, upload(str(folder)))


def test_upload_from_frames_as_tuples_lists_and_dicts(connections: SandboxServer, gif: Path) -> None:
    frames = [(str(gif), "Frame one", 5), [str(gif), "Frame two", 2], {"text": "Bye", "seconds": 3}]
    assert_usable(connections, upload(frames))


@pytest.mark.parametrize("form", ["bytes", "path"])
def test_upload_from_ready_zip(connections: SandboxServer, tmp_path: Path, form: str) -> None:
    data = make_zip(("1.gif", GIF), ("1.txt", "hello"), ("layout.smil", SMIL))
    source: Any = data
    if form == "path":
        source = tmp_path / "template.zip"
        source.write_bytes(data)
        source = str(source)
    assert_usable(connections, upload(source))


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        (b"this is not a zip", "zip"),
        (make_zip(("../evil.gif", GIF), ("layout.smil", SMIL)), "'..'"),
        ([], "no frames"),
        ([("clip.exe", "x", 5)], ".exe"),
        (42, "int"),
    ],
    ids=["not-a-zip", "dotdot-name", "no-frames", "bad-media", "wrong-type"],
)
def test_bad_sources_fail_before_any_request(connections: SandboxServer, source: Any, complaint: str) -> None:
    with raises(AirflowFailException, match="refused") as err:
        upload(source)
    assert complaint in str(err.value)
    assert requests_log(connections) == []


def test_missing_path_and_size_limit_fail_before_any_request(
    connections: SandboxServer, gif: Path, tmp_path: Path
) -> None:
    with raises(AirflowFailException, match="refused"):
        upload(str(tmp_path / "nowhere.zip"))
    with raises(AirflowFailException, match="refused"):
        upload([(str(gif), "x" * 5000, 5)], max_bytes=1024)
    assert requests_log(connections) == []


def test_empty_title_fails_before_any_request(connections: SandboxServer, gif: Path) -> None:
    op = MmsTemplateUploadOperator(task_id="upload", title="  ", source=[(str(gif), "x", 5)])
    with raises(AirflowFailException, match="title"):
        op.execute({})  # type: ignore[arg-type]
    assert requests_log(connections) == []


def test_fatal_answer_fails_without_retry(connections: SandboxServer, gif: Path) -> None:
    force(connections, "ihuyi", "CreateMms", "4060")
    with raises(AirflowFailException, match="4060"):
        upload([(str(gif), "x", 5)])


def test_transient_answer_is_a_plain_failure(connections: SandboxServer, gif: Path) -> None:
    force(connections, "ihuyi", "CreateMms", "0")
    with raises(TransientGatewayError):
        upload([(str(gif), "x", 5)])


@pytest.mark.usefixtures("airflow_db")
def test_template_id_flows_to_the_send_through_xcom(connections: SandboxServer, tmp_path: Path) -> None:
    image = tmp_path / "sale.gif"
    image.write_bytes(GIF)
    Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], "sms_test_template_dags.py").write_text(
        DAGS_SOURCE.replace("{gif}", str(image))
    )
    result = run_dag("sms_test_template_upload")
    assert result.state == "success", result.tasks
    template_id = result.xcom("upload")
    assert template_id in stored_templates(connections)
    [sent] = deliveries(connections, "ihuyi")
    assert sent["mmsid"] == template_id and sent["number"] == "13800138000"
