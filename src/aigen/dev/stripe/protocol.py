"""Stripe's wire format: ids, form-encoded parameters, typed parameter reads and error JSON."""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Iterable, Mapping
from typing import Any

import stripe

# Events carry the version the SDK is pinned to, as an account set up with it would get.
API_VERSION: str = stripe.api_version
ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 24
FORM_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
SUBKEY = re.compile(r"\[([^\[\]]*)\]")
DOCS_URL = "https://stripe.com/docs/error-codes/"
SUPPORT_HINT = "Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
MISSING_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)
Params = dict[str, Any]


class StripeError(Exception):
    """An error answered in Stripe's ``{"error": {...}}`` format."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        """The JSON body Stripe sends for this error."""
        error: dict[str, Any] = {"message": self.message, "type": self.error_type}
        if self.code is not None:
            error |= {"code": self.code, "doc_url": DOCS_URL + self.code.replace("_", "-")}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def new_id(prefix: str) -> str:
    """A fresh object id in Stripe's style, e.g. ``cs_test_a1B2...`` or ``cus_Q3x...``."""
    return prefix + "_" + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def now() -> int:
    """Unix time in seconds, as Stripe's ``created`` fields carry it."""
    return int(time.time())


def no_such(kind: str, object_id: str, *, param: str = "id", status: int = 404) -> StripeError:
    """Stripe's error for an id that names nothing (400 when the id came in a parameter)."""
    return StripeError(
        status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def unrecognized_url(method: str, path: str) -> StripeError:
    """Stripe's 404 for a route it does not have."""
    return StripeError(404, f"Unrecognized request URL ({method}: {path}). {SUPPORT_HINT}")


def invalid_api_key(key: str) -> StripeError:
    """Stripe's 401 for a key it does not know; only the key's last four characters are echoed."""
    shown = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else "*" * len(key)
    return StripeError(401, f"Invalid API Key provided: {shown}")


def parse_form(pairs: Iterable[tuple[str, str]]) -> Params:
    """Decode form pairs the way Stripe does: ``a[b]=1`` nests, ``a[0]`` and ``a[]`` make lists."""
    tree: Params = {}
    for key, value in pairs:
        match = FORM_KEY.match(key)
        if match is None:
            raise StripeError(400, f"Invalid parameter name: {key}", code="parameter_invalid")
        path = [match.group(1), *SUBKEY.findall(match.group(2))]
        _insert(tree, path, value, key)
    return _listify(tree)


def _insert(tree: Params, path: list[str], value: str, key: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part or str(len(node)), {})
        if not isinstance(child, dict):
            raise StripeError(400, f"Invalid hash for {key}", code="parameter_invalid_hash")
        node = child
    last = path[-1] or str(len(node))
    if isinstance(node.get(last), dict):
        raise StripeError(400, f"Invalid value for {key}", code="parameter_invalid_string")
    node[last] = value


def _listify(node: Any) -> Any:
    """Turn every hash whose keys are all indexes into a list ordered by index."""
    if not isinstance(node, dict):
        return node
    items = {key: _listify(child) for key, child in node.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def reject_unknown(params: Mapping[str, Any], known: Iterable[str]) -> None:
    """Answer 400 ``parameter_unknown`` for a top-level parameter the endpoint does not take."""
    allowed = set(known)
    for name in params:
        if name not in allowed:
            raise StripeError(
                400,
                f"Received unknown parameter: {name}",
                code="parameter_unknown",
                param=name,
            )


def required_str(params: Mapping[str, Any], name: str) -> str:
    """A string parameter that must be present and non-empty."""
    value = optional_str(params, name)
    if not value:
        raise StripeError(
            400, f"Missing required param: {name}.", code="parameter_missing", param=name
        )
    return value


def optional_str(params: Mapping[str, Any], name: str) -> str | None:
    """A string parameter; an empty string means unset, as in Stripe's form encoding."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise StripeError(
            400, f"Invalid string: {name}", code="parameter_invalid_string", param=name
        )
    return value


def optional_int(params: Mapping[str, Any], name: str, *, where: str | None = None) -> int | None:
    """A non-negative integer parameter."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if not (isinstance(value, str) and value.isdigit()):
        raise StripeError(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=where or name
        )
    return int(value)


def optional_hash(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A hash parameter (``name[key]=...``); absent or empty gives ``{}``."""
    value = params.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise StripeError(400, "Invalid hash", code="parameter_invalid_hash", param=name)
    return value


def optional_list(params: Mapping[str, Any], name: str) -> list[Any]:
    """An array parameter (``name[0]=...``); absent or empty gives ``[]``."""
    value = params.get(name)
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise StripeError(400, "Invalid array", code="parameter_invalid_array", param=name)
    return value


def metadata(params: Mapping[str, Any], name: str = "metadata") -> dict[str, str]:
    """Metadata: string values only, blank values dropped (Stripe's way of unsetting a key)."""
    raw = optional_hash(params, name)
    if any(not isinstance(value, str) for value in raw.values()):
        raise StripeError(400, "Invalid metadata", code="parameter_invalid_hash", param=name)
    return {key: value for key, value in raw.items() if value != ""}


def one_of(params: Mapping[str, Any], name: str, choices: Iterable[str]) -> str:
    """A required enum parameter, checked against its allowed values."""
    value = required_str(params, name)
    allowed = list(choices)
    if value not in allowed:
        listed = ", ".join(allowed[:-1]) + f", or {allowed[-1]}"
        raise StripeError(
            400,
            f"Invalid {name}: must be one of {listed}",
            code="parameter_invalid_string",
            param=name,
        )
    return value
