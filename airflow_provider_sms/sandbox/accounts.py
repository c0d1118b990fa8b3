"""The gateways' accounts: credentials, templates, balances and quotas, and how a JSON patch changes them.

The default credentials are sandbox-only fakes (printed by the CLI, used by the tests).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Default accounts (sandbox-only, fake).
IHUYI_ACCOUNT = "C12345678"
IHUYI_PASSWORD = "sandbox-ihuyi-pass"  # noqa: S105 - a fake credential of the local sandbox
IHUYI_PRODUCT_IDS = frozenset({1})
IHUYI_BALANCE = 1_000_000
IHUYI_TEMPLATE_ID = "1001"
IHUYI_TEMPLATE_TITLE = "Welcome"

JUNCDT_ACCESS_KEY = "sandbox-ak"
JUNCDT_ACCESS_SECRET = "sandbox-as"  # noqa: S105 - a fake credential of the local sandbox
JUNCDT_PACKAGE_CODE = "sandbox-pkg"
JUNCDT_SIGN_CODES = frozenset({"SIGN01"})
JUNCDT_QUOTA = 1_000_000
JUNCDT_DAILY_LIMIT = 10
JUNCDT_TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "TPL_CODE": ("您的验证码为${code}", ("code",)),
    "TPL_NOTICE": ("${name}您好，您的订单${order}已发货", ("name", "order")),
    "TPL_ALERT": ("任务${task}失败: ${dag} 第${try}次 ${url}", ("dag", "task", "try", "url")),
    "TPL_PLAIN": ("系统维护通知", ()),
}
JUNCDT_UNSUPPORTED_PREFIXES = ("140", "141", "144")
JUNCDT_ILLEGAL_WORDS = ("违禁词",)
JUNCDT_MAX_NUMBERS = 500
JUNCDT_MAX_CONTENT = 300

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_BEIJING = 8 * 3600


@dataclass
class IhuyiTemplate:
    """An MMS template; ``force_code`` makes every send with it answer that code (e.g. 407)."""

    mmsid: str
    title: str
    files: tuple[str, ...] = ()
    force_code: str | None = None


def _default_ihuyi_templates() -> dict[str, IhuyiTemplate]:
    return {IHUYI_TEMPLATE_ID: IhuyiTemplate(IHUYI_TEMPLATE_ID, IHUYI_TEMPLATE_TITLE)}


@dataclass
class IhuyiAccount:
    """The one ihuyi account the sandbox serves."""

    account: str = IHUYI_ACCOUNT
    password: str = IHUYI_PASSWORD
    product_ids: set[int] = field(default_factory=lambda: set(IHUYI_PRODUCT_IDS))
    balance: int = IHUYI_BALANCE
    frozen: bool = False
    ip_blocked: bool = False
    blacklist: set[str] = field(default_factory=set)
    templates: dict[str, IhuyiTemplate] = field(default_factory=_default_ihuyi_templates)


@dataclass
class JuncdtSign:
    """An approved signature; ``force_code`` stands for a state like 30002 (frozen)."""

    code: str
    force_code: str | None = None


@dataclass
class JuncdtTemplate:
    """An approved template: its text with ``${name}`` placeholders and the names it takes."""

    code: str
    text: str
    params: tuple[str, ...]
    force_code: str | None = None

    def render(self, values: Mapping[str, str]) -> str:
        """The content a phone would show, for the length check."""
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.text)


def _default_juncdt_templates() -> dict[str, JuncdtTemplate]:
    return {code: JuncdtTemplate(code, text, params) for code, (text, params) in JUNCDT_TEMPLATES.items()}


@dataclass
class JuncdtAccount:
    """The one juncdt account: key pair, package code, signs, templates, quota, per-number daily limit."""

    access_key: str = JUNCDT_ACCESS_KEY
    access_secret: str = JUNCDT_ACCESS_SECRET
    classification_secret: str = JUNCDT_PACKAGE_CODE
    signs: dict[str, JuncdtSign] = field(
        default_factory=lambda: {code: JuncdtSign(code) for code in JUNCDT_SIGN_CODES}
    )
    templates: dict[str, JuncdtTemplate] = field(default_factory=_default_juncdt_templates)
    quota: int = JUNCDT_QUOTA
    daily_limit: int = JUNCDT_DAILY_LIMIT
    unsupported_prefixes: tuple[str, ...] = JUNCDT_UNSUPPORTED_PREFIXES
    illegal_words: tuple[str, ...] = JUNCDT_ILLEGAL_WORDS
    max_numbers: int = JUNCDT_MAX_NUMBERS
    max_content_length: int = JUNCDT_MAX_CONTENT
    daily_sent: dict[str, int] = field(default_factory=dict)
    day_ends_at: float = 0.0

    def roll_day(self, now: float) -> None:
        """Forget yesterday's counts at Beijing midnight, as the vendor's daily limit does."""
        if now >= self.day_ends_at:
            self.daily_sent.clear()
            local = now + _BEIJING
            self.day_ends_at = local - local % 86400 + 86400 - _BEIJING


# Patches: validate the JSON a control call or config file brings --------------------------------------


def patch_ihuyi(account: IhuyiAccount, patch: Mapping[str, Any]) -> None:
    """Apply ``patch`` (e.g. ``{"balance": 10, "frozen": true}``) to ``account`` in place."""
    _patch_ihuyi(account, _mapping(patch, "ihuyi"))


def patch_juncdt(account: JuncdtAccount, patch: Mapping[str, Any]) -> None:
    """Apply ``patch`` (e.g. ``{"quota": 5, "daily_limit": 10}``) to ``account`` in place."""
    _patch_juncdt(account, _mapping(patch, "juncdt"))


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object")
    return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings")
    return list(value)


def _code(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{name} must be a code (string) or null")
    return str(value)


def _patch_ihuyi(account: IhuyiAccount, patch: Mapping[str, Any]) -> None:
    handlers = {
        "account": lambda v: setattr(account, "account", _str(v, "account")),
        "password": lambda v: setattr(account, "password", _str(v, "password")),
        "product_ids": lambda v: setattr(
            account, "product_ids", {_int(i, "product_ids") for i in _list(v, "product_ids")}
        ),
        "balance": lambda v: setattr(account, "balance", _int(v, "balance")),
        "frozen": lambda v: setattr(account, "frozen", _bool(v, "frozen")),
        "ip_blocked": lambda v: setattr(account, "ip_blocked", _bool(v, "ip_blocked")),
        "blacklist": lambda v: setattr(account, "blacklist", set(_strings(v, "blacklist"))),
        "templates": lambda v: _patch_ihuyi_templates(account, _mapping(v, "templates")),
    }
    _apply(handlers, patch, "ihuyi")


def _patch_ihuyi_templates(account: IhuyiAccount, patch: Mapping[str, Any]) -> None:
    for mmsid, raw in patch.items():
        if raw is None:
            account.templates.pop(mmsid, None)
            continue
        spec = _mapping(raw, f"templates.{mmsid}")
        account.templates[mmsid] = IhuyiTemplate(
            mmsid,
            _str(spec.get("title", ""), "title"),
            tuple(_strings(spec.get("files", []), "files")),
            _code(spec.get("force_code"), "force_code"),
        )


def _patch_juncdt(account: JuncdtAccount, patch: Mapping[str, Any]) -> None:
    handlers = {
        "access_key": lambda v: setattr(account, "access_key", _str(v, "access_key")),
        "access_secret": lambda v: setattr(account, "access_secret", _str(v, "access_secret")),
        "classification_secret": lambda v: setattr(
            account, "classification_secret", _str(v, "classification_secret")
        ),
        "quota": lambda v: setattr(account, "quota", _int(v, "quota")),
        "daily_limit": lambda v: setattr(account, "daily_limit", _int(v, "daily_limit")),
        "max_numbers": lambda v: setattr(account, "max_numbers", _int(v, "max_numbers")),
        "max_content_length": lambda v: setattr(account, "max_content_length", _int(v, "max_content_length")),
        "unsupported_prefixes": lambda v: setattr(
            account, "unsupported_prefixes", tuple(_strings(v, "unsupported_prefixes"))
        ),
        "illegal_words": lambda v: setattr(account, "illegal_words", tuple(_strings(v, "illegal_words"))),
        "daily_sent": lambda v: _set_daily(account, _mapping(v, "daily_sent")),
        "signs": lambda v: _patch_signs(account, _mapping(v, "signs")),
        "templates": lambda v: _patch_juncdt_templates(account, _mapping(v, "templates")),
    }
    _apply(handlers, patch, "juncdt")


def _set_daily(account: JuncdtAccount, counts: Mapping[str, Any]) -> None:
    account.roll_day(time.time())
    account.daily_sent = {str(k): _int(v, "daily_sent") for k, v in counts.items()}


def _patch_signs(account: JuncdtAccount, patch: Mapping[str, Any]) -> None:
    for code, raw in patch.items():
        if raw is None:
            account.signs.pop(code, None)
            continue
        spec = _mapping(raw, f"signs.{code}")
        account.signs[code] = JuncdtSign(code, _code(spec.get("force_code"), "force_code"))


def _patch_juncdt_templates(account: JuncdtAccount, patch: Mapping[str, Any]) -> None:
    for code, raw in patch.items():
        if raw is None:
            account.templates.pop(code, None)
            continue
        spec = _mapping(raw, f"templates.{code}")
        old = account.templates.get(code)
        text = _str(spec.get("text", old.text if old else ""), "text")
        if "params" in spec:
            params = tuple(_strings(spec["params"], "params"))
        elif old and "text" not in spec:
            params = old.params
        else:
            params = tuple(dict.fromkeys(_PLACEHOLDER.findall(text)))
        force = (
            _code(spec["force_code"], "force_code")
            if "force_code" in spec
            else (old.force_code if old else None)
        )
        account.templates[code] = JuncdtTemplate(code, text, params, force)


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list")
    return value


def _apply(handlers: Mapping[str, Any], patch: Mapping[str, Any], name: str) -> None:
    unknown = set(patch) - set(handlers)
    if unknown:
        raise ValueError(f"unknown {name} settings: {sorted(unknown)}")
    for key, value in patch.items():
        handlers[key](value)
