"""Hook for the juncdt SMS API: templated SMS with parameters."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_sms.dispatch.recipients import Cleaner
from airflow_provider_sms.dispatch.senders import SmsSender
from airflow_provider_sms.dispatch.settings import SendSettings
from airflow_provider_sms.gateways import juncdt
from airflow_provider_sms.gateways.errors import GatewayError, InvalidInputError, raise_for_reply
from airflow_provider_sms.hooks.bulk import campaign_options, resolve_rows, run_bulk
from airflow_provider_sms.hooks.ihuyi import normalize_all
from airflow_provider_sms.hooks.policy import contact_policy
from airflow_provider_sms.hooks.settings import ConnectionFields, check_per_request, mask_secrets

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_sms.dispatch.outcomes import Summary
    from airflow_provider_sms.gateways.models import GatewayReply
    from airflow_provider_sms.hooks.bulk import LedgerSource

# Codes that prove the gateway accepted key pair, secret and package code before refusing the probe.
_PAST_AUTH = {"30006", "30010", "30011", "30014"}


class JuncdtHook(BaseHook):
    """Talk to juncdt with the credentials of an Airflow Connection of type ``juncdt``.

    login = accessKey, password = accessSecret; extras: ``classification_secret`` (package code,
    a secret), ``sign_code``, ``timeout``, ``numbers_per_request`` (1..500), ``concurrency``,
    ``requests_per_second``, ``verify_tls``.
    """

    conn_name_attr = "juncdt_conn_id"
    default_conn_name = "juncdt_default"
    conn_type = "juncdt"
    hook_name = "juncdt SMS"

    def __init__(self, juncdt_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.juncdt_conn_id = juncdt_conn_id

    @cached_property
    def fields(self) -> ConnectionFields:
        fields = ConnectionFields(self.get_connection(self.juncdt_conn_id), self.conn_type)
        mask_secrets(fields.conn.password, fields.text("classification_secret"))
        return fields

    @cached_property
    def tuning(self) -> SendSettings:
        return self.fields.tuning(1, juncdt.MAX_NUMBERS_PER_REQUEST)

    @cached_property
    def client(self) -> juncdt.JuncdtClient:
        f = self.fields
        settings = f.http_settings(juncdt.DEFAULT_HOST)
        return juncdt.JuncdtClient(
            f.required(f.conn.login, "login (juncdt accessKey)"),
            f.required(f.conn.password, "password (juncdt accessSecret)"),
            f.required(f.text("classification_secret"), "extra 'classification_secret' (package code)"),
            settings,
            default_sign_code=f.text("sign_code"),
            max_connections=self.tuning.concurrency,
        )

    def get_conn(self) -> juncdt.JuncdtClient:
        return self.client

    def _prepare(self, phone: str | list[str]) -> list[str]:
        numbers = normalize_all(phone)
        limit = check_per_request(self.tuning.numbers_per_request, juncdt.MAX_NUMBERS_PER_REQUEST)
        if len(numbers) > limit:
            raise InvalidInputError(
                f"{len(numbers)} numbers exceed one request ({limit}); "
                "use SmsSendOperator or JuncdtHook.send_bulk for larger audiences"
            )
        return numbers

    def send_sms(
        self,
        phone: str | list[str],
        template_code: str,
        params: Mapping[str, Any] | None = None,
        sign_code: str | None = None,
    ) -> GatewayReply:
        """Send one templated SMS request; raise the error of any non-success code."""
        numbers = self._prepare(phone)
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
        numbers = self._prepare(phone)
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
        per_request = check_per_request(settings.numbers_per_request, juncdt.MAX_NUMBERS_PER_REQUEST)
        rows = resolve_rows(recipients, settings.encoding)
        sender = SmsSender(
            self.client,
            template_code,
            sign_code=sign_code,
            numbers_per_request=per_request,
        )
        shared = dict(params or {})

        def cleaner() -> Cleaner:
            return Cleaner(
                shared_params=shared,
                param_names=param_names,
                template_text=template_text,
                max_chars=juncdt.MAX_CONTENT_CHARS,
            )

        cleaner()  # refuses shared params that are not text or numbers, before anything is sent

        policy = contact_policy(settings, template_text=template_text)
        options = campaign_options(settings, policy=policy)
        self.client.max_connections = options.concurrency  # one per request in flight, not the extra's
        return run_bulk(
            sender,
            rows,
            cleaner,
            options,
            settings,
            ledger=ledger,
            log=self.log,
            campaign=campaign,
        )

    def test_connection(self) -> tuple[bool, str]:
        """juncdt has no read-only call: probe ``sendMessage`` with no phone number (nothing can be sent).

        The gateway checks keys, package code and sign code before the number, so an answer about the
        missing number or template proves them; the template itself is only checked by a real send.
        """
        try:
            reply = self.client.probe()
        except (GatewayError, InvalidInputError) as exc:
            return False, str(exc)
        finally:
            if "client" in self.__dict__:  # built: a config error fails before it is
                self.client.close()
        # Without a sign code in the connection, "signature missing" (30021) is as far as a probe gets.
        past_auth = _PAST_AUTH if self.client.default_sign_code else _PAST_AUTH | {"30021"}
        if reply.code in past_auth:
            return True, (
                "juncdt accepted the accessKey, accessSecret, package code and sign code (probe with no "
                f"phone number answered {reply.code}: {reply.message}); nothing was sent. "
                "Template codes are checked only by a real send."
            )
        return False, reply.describe()
