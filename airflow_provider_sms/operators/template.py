"""Upload an MMS template to ihuyi and hand its id to the send task.

Imports stay light at DAG-parse time: the package builder and the hook (httpx) load in ``execute``.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_sms.hooks.ihuyi import IhuyiHook


def _as_package_source(source: Any) -> Any:
    """Frames that went through templating or XCom arrive as lists: make them the tuples the builder takes."""
    if isinstance(source, (list, tuple)):
        return [tuple(frame) if isinstance(frame, list) else frame for frame in source]
    if isinstance(source, bytearray):
        return bytes(source)
    return source


def _describe(source: Any) -> str:
    if isinstance(source, (bytes, bytearray)):
        return f"a zip of {len(source)} bytes"
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (list, tuple)):
        return f"{len(source)} frame(s)"
    return type(source).__name__


class MmsTemplateUploadOperator(BaseOperator):
    """Build, validate and upload an MMS template (``CreateMms``); return the new template id.

    :param title: template title shown in the ihuyi console (templated).
    :param source: a ready zip (bytes, or the path of a ``.zip``), a folder of frames
        (``1.gif``, ``1.txt``, ``2.jpg``... grouped by name), or a list of frames: ``(image, text,
        seconds)`` tuples/lists or ``{"image", "text", "seconds"}`` dicts (templated). A missing SMIL
        layout is generated.
    :param ihuyi_conn_id: the ihuyi connection.
    :param max_bytes: size limit of the package (carriers reject large MMS); default
        ``mms_package.DEFAULT_MAX_BYTES`` (300 KiB).

    The package is validated before any request: a broken package fails the task (no retry) with an
    error naming the offending file. The return value (XCom) is the template id as a string, so
    ``MmsSendOperator(mmsid=upload.output)`` works downstream.
    """

    template_fields: Sequence[str] = ("title", "source", "ihuyi_conn_id")
    ui_color = "#e8eef8"

    def __init__(
        self,
        *,
        title: str,
        source: Any,
        ihuyi_conn_id: str = "ihuyi_default",
        max_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.source = source
        self.ihuyi_conn_id = ihuyi_conn_id
        self.max_bytes = max_bytes

    @cached_property
    def hook(self) -> IhuyiHook:
        from airflow_provider_sms.hooks.ihuyi import IhuyiHook

        return IhuyiHook(ihuyi_conn_id=self.ihuyi_conn_id)

    def build(self) -> bytes:
        """The validated zip, or ``AirflowFailException``: no retry fixes a broken package."""
        from airflow_provider_sms.protocol import mms_package

        limit = mms_package.DEFAULT_MAX_BYTES if self.max_bytes is None else int(self.max_bytes)
        try:
            return mms_package.build_package(_as_package_source(self.source), max_bytes=limit)
        except (mms_package.MmsPackageError, TypeError) as exc:
            raise AirflowFailException(f"MMS template package refused: {exc}") from exc

    def execute(self, context: Context) -> str:
        from airflow_provider_sms.errors import SmsProviderError, TransportError

        title = str(self.title or "").strip()
        if not title:
            raise AirflowFailException("MMS template title is empty")
        package = self.build()
        self.log.info("MMS template package from %s: %d bytes", _describe(self.source), len(package))

        try:
            with self.hook as hook:
                template_id = hook.create_mms_template(title, package)
        except SmsProviderError as exc:
            if not exc.retryable:  # fatal and undocumented codes, a broken connection config
                raise AirflowFailException(str(exc)) from exc
            if isinstance(exc, TransportError) and exc.ambiguous:
                self.log.warning("The upload may have reached ihuyi; a retry can leave an unused template")
            raise  # a plain failure: Airflow's retries may help
        self.log.info("Uploaded MMS template %r: template id %s", title, template_id)
        return template_id
