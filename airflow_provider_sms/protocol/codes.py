"""Code tables of both gateways, one per method, and what each code means for a send."""

from __future__ import annotations

from enum import Enum


class CodeClass(str, Enum):
    """What the caller should do with a gateway answer."""

    SUCCESS = "success"
    TRANSIENT = "transient"  # retry with backoff, bounded
    FATAL = "fatal"  # stop the campaign: auth, config, template, balance
    BAD_INPUT = "bad_input"  # report the recipients concerned, go on
    UNKNOWN = "unknown"  # fail that request, surface code and message verbatim, no retry


S, T, F, B = CodeClass.SUCCESS, CodeClass.TRANSIENT, CodeClass.FATAL, CodeClass.BAD_INPUT

# ihuyi: the same number means different things per method, so one table per method.
IHUYI_SEND_MMS: dict[str, tuple[CodeClass, str]] = {
    "2": (S, "提交成功 submitted"),
    "0": (T, "提交失败 submit failed"),
    "400": (F, "非法ip访问 caller IP not allowed"),
    "401": (F, "帐号不能为空 account missing"),
    "402": (F, "密码不能为空 password missing"),
    "403": (B, "手机号码不能为空 no number"),
    "404": (F, "彩信内容不能为空 empty MMS content"),
    "4040": (F, "签名格式不正确 bad signature format"),
    "405": (F, "用户名或密码不正确 wrong account or password"),
    "4050": (F, "账号被冻结 account frozen"),
    "4051": (F, "剩余条数不足 balance too low"),
    "406": (F, "产品id不能为空 no product id"),
    "4060": (F, "产品id不正确 wrong product id"),
    "407": (F, "内容长度超出了限制 content too long"),
    "4070": (F, "内容含有敏感字符 sensitive words"),
    "409": (B, "号码格式不正确或被列入黑名单 no well-formed number, or blacklisted"),
}

IHUYI_GET_NUM: dict[str, tuple[CodeClass, str]] = {
    "2": (S, "查询成功 query ok"),
    "400": (F, "非法ip访问 caller IP not allowed"),
    "401": (F, "帐号不能为空 account missing"),
    "402": (F, "密码不能为空 password missing"),
    "405": (F, "用户名或密码不正确 wrong account or password"),
    "4050": (F, "账号被冻结 account frozen"),
}

IHUYI_CREATE_MMS: dict[str, tuple[CodeClass, str]] = {
    "2": (S, "提交成功 template created"),
    "0": (T, "提交失败 submit failed"),
    "400": (F, "非法ip访问 caller IP not allowed"),
    "401": (F, "帐号不能为空 account missing"),
    "402": (F, "密码不能为空 password missing"),
    "403": (F, "手机号码不能为空 no number"),
    "404": (F, "彩信内容不能为空 content empty"),
    "4040": (F, "彩信文件zip压缩包不能为空 zip (base64) empty"),
    "405": (F, "用户名或密码不正确 wrong account or password"),
    "4050": (F, "账号被冻结 account frozen"),
    "4051": (F, "剩余条数不足 balance too low"),
    "406": (F, "彩信文件zip压缩包错误 zip broken"),
    "4060": (F, "zip里面的smil文件格式不正确 SMIL in the zip is malformed"),
    "409": (F, "彩信创建失败 creation failed"),
}

JUNCDT_SEND_MESSAGE: dict[str, tuple[CodeClass, str]] = {
    "10000": (S, "短信发送成功 sent"),
    "10001": (T, "短信发送失败 send failed"),
    "30009": (T, "系统异常 system error"),
    "30001": (F, "签名未经审核 signature not approved"),
    "30002": (F, "签名已被冻结 signature frozen"),
    "30003": (F, "模板未经审核 template not approved"),
    "30004": (F, "模板已被冻结 template frozen"),
    "30005": (F, "无效的签名CODE invalid signature code"),
    "30006": (F, "无效的模板CODE invalid template code"),
    "30007": (F, "签名中含有非法关键词 illegal words in signature"),
    "30008": (F, "模板中含有非法关键词 illegal words in template"),
    "30010": (B, "手机号码不能为空 empty number"),
    "30011": (B, "非法手机号码 malformed number"),
    # 30012, empty content: a template problem.
    "30012": (F, "短信内容不能为空 empty content"),
    "30013": (B, "短信内容中含有非法关键词 illegal words in content"),
    "30014": (B, "变量不匹配 variables don't match the template"),
    "30015": (F, "用户无权使用该签名 signature not yours"),
    "30016": (F, "用户无权使用该模板 template not yours"),
    "30017": (F, "内容超过最大长度300 content over 300 characters"),
    "30018": (B, "不支持发送的手机号段 not a mainland carrier number"),
    "30019": (F, "可用次数不足 quota used up"),
    "30020": (F, "验签失败 signature check failed"),
    "30021": (F, "签名信息缺失 signature missing"),
    "30022": (F, "accessKey信息缺失 accessKey missing"),
    "30023": (F, "非法或者无效的调用 illegal call"),
    "30024": (F, "无效accessKey invalid accessKey"),
    "30025": (F, "无效套餐码 invalid package code"),
    "30026": (F, "模板类型与套餐码不匹配 template type vs package mismatch"),
    "30027": (F, "一次请求最多500个号码 over 500 numbers in one request"),
    "30028": (B, "超过当日发送上限 number reached its daily limit"),
}

# Illegal words (30013), variables that do not match (30014) and content over 300 characters (30017)
# are the recipient's fault only when the content comes from that recipient's own params: a long name
# in one row must not stop everyone else's messages. The table keeps the class for a shared message.
JUNCDT_PARAM_DEPENDENT = frozenset({"30013", "30014", "30017"})


def classify(table: dict[str, tuple[CodeClass, str]], code: str) -> CodeClass:
    """Class of ``code`` in ``table``; codes the vendor never documented are UNKNOWN."""
    entry = table.get(code.strip())
    return entry[0] if entry else CodeClass.UNKNOWN
