"""Hook for the juncdt SMS API: templated SMS with parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_sms.dispatch.recipients import Cleaner
from airflow_provider_sms.dispatch.senders import SmsSender
from airflow_provider_sms.dispatch.settings import SendSettings
from airflow_provider_sms.errors import SmsProviderError
from airflow_provider_sms.gateways import juncdt
from airflow_provider_sms.gateways.limits import JUNCDT_NUMBERS_PER_REQUEST
from airflow_provider_sms.gateways.models import raise_for_reply
from airflow_provider_sms.hooks.gateway import GatewayHook
from airflow_provider_sms.hooks.policy import contact_policy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.gateways.models import GatewayReply
    from airflow_provider_sms.hooks.campaign import LedgerSource

# Codes that prove the gateway accepted key pair, secret and package code before refusing the probe.
_PAST_AUTH = {"30006", "30010", "30011", "30014"}


class JuncdtHook(GatewayHook[juncdt.JuncdtClient]):
    """Talk to juncdt with the credentials of an Airflow Connection of type ``juncdt``.

    login = accessKey, password = accessSecret; extras: ``classification_secret`` (package code,
    a secret), ``sign_code``, ``timeout``, ``numbers_per_request`` (1..500), ``concurrency``,
    ``requests_per_second``, ``verify_tls``.
    """

    conn_name_attr = "juncdt_conn_id"
    default_conn_name = "juncdt_default"
    conn_type = "juncdt"
    hook_name = "juncdt SMS"
    numbers_per_request = JUNCDT_NUMBERS_PER_REQUEST
    secret_extras = ("classification_secret",)
    bulk_hint = "SmsSendOperator or JuncdtHook.send_bulk"

    def __init__(self, juncdt_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.juncdt_conn_id = juncdt_conn_id

    def build_client(self, max_connections: int) -> juncdt.JuncdtClient:
        f = self.fields
        settings = f.http_settings(juncdt.DEFAULT_HOST)
        return juncdt.JuncdtClient(
            f.required(f.conn.login, "login (juncdt accessKey)"),
            f.required(f.conn.password, "password (juncdt accessSecret)"),
            f.required(f.text("classification_secret"), "extra 'classification_secret' (package code)"),
            settings,
            default_sign_code=f.text("sign_code"),
            max_connections=max_connections,
        )

    def send_sms(
        self,
        phone: str | list[str],
        template_code: str,
        params: Mapping[str, Any] | None = None,
        sign_code: str | None = None,
    ) -> GatewayReply:
        """Send one templated SMS request; raise the error of any non-success code."""
        numbers = self.one_request(phone)
        reply = raise_for_reply(self.client.send(numbers, template_code, params, sign_code))
        self.log.info("juncdt accepted template %s for %d number(s)", template_code, len(numbers))
        return reply

    async def asend_sms(
        self,
        phone: str | list[str],
        template_code: str,
        params: Mapping[str, Any] | None = None,
        sign_code: str | None = None,
    ) -> GatewayReply:
        numbers = self.one_request(phone)
        return raise_for_reply(await self.client.asend(numbers, template_code, params, sign_code))

    def send_bulk(
        self,
        recipients: Any,
        template_code: str,
        params: Mapping[str, Any] | None = None,
        sign_code: str | None = None,
        *,
        param_names: list[str] | None = None,
        template_text: str | None = None,
        bulk: SendSettings | None = None,
        ledger: LedgerSource = None,
        campaign: str = "",
    ) -> Summary:
        """Send a templated SMS to any number of recipients through the bulk engine.

        ``recipients``: numbers, or ``{"phone": ..., "params": {...}}`` rows (row params override
        ``params``; values are text or numbers), or a CSV/JSONL/JSON-array file URI, read in
        ``bulk.encoding``. ``param_names`` / ``template_text`` (``${name}``
        placeholders) let every row be checked, and the 300-character limit, before any request.
        """
        settings = (bulk or SendSettings()).over(self.tuning)
        per_request = self.per_request(settings)
        shared = dict(params or {})

        def cleaner() -> Cleaner:
            return Cleaner(
                shared_params=shared,
                param_names=param_names,
                template_text=template_text,
                max_chars=juncdt.MAX_CONTENT_CHARS,
            )

        policy = contact_policy(settings, template_text=template_text)
        return self.run_campaign(
            lambda client: SmsSender(
                client, template_code, sign_code=sign_code, numbers_per_request=per_request
            ),
            recipients,
            cleaner,
            settings,
            policy=policy,
            ledger=ledger,
            campaign=campaign,
        )

    def test_connection(self) -> tuple[bool, str]:
        """juncdt has no read-only call: probe ``sendMessage`` with no phone number (nothing can be sent).

        The gateway checks keys, package code and sign code before the number, so an answer about the
        missing number or template proves them; the template itself is only checked by a real send.
        """
        try:
            with self:
                sign_code = self.client.default_sign_code
                reply = self.client.probe()
        except SmsProviderError as exc:
            return False, str(exc)
        # Without a sign code in the connection, "signature missing" (30021) is as far as a probe gets.
        past_auth = _PAST_AUTH if sign_code else _PAST_AUTH | {"30021"}
        if reply.code not in past_auth:
            return False, reply.describe()
        proven = (
            "accessKey, accessSecret, package code and sign code"
            if sign_code
            else "accessKey, accessSecret and package code (the connection has no sign code to check)"
        )
        return True, (
            f"Connection to juncdt works: the gateway accepted the {proven}. "
            "Nothing was sent; template codes are checked only by a real send."
        )
