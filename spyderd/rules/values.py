"""Literals of conditions, converted once to a field's type, and the tests built on them.

Integers may be written 0o4000 / 0x10 (modes and flags); durations as 500ms, 30s, 10m, 2h.

Conversion happens at compile time, so a wrong literal is a located error and a match never
parses a string. IP values from events are parsed when tested: an unparsable one just does not
match. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what dual-stack sockets report) compare as
IPv4, so one `10.0.0.0/8` covers both.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import operator
import re
from collections.abc import Callable
from typing import Any

from spyderd.rules.constants import nearest, resolve, unknown_parts

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_NETWORKS = (ipaddress.IPv4Network, ipaddress.IPv6Network)
ORDERED = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
_LEADING_ZERO = re.compile(r"-?0\d+")
_DURATION = re.compile(r"(\d+)(ns|us|ms|s|m|h|d)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}


def convert(raw: Any, quoted: bool, type_: str, allow_net: bool) -> Any:
    """Literal conversion by field type; raises ValueError with the reason."""
    text = str(raw)
    if type_ == "int":
        number = raw if isinstance(raw, int) else resolve(text, int_literal)
        if number is None:
            if _LEADING_ZERO.fullmatch(text):
                raise ValueError(f"{text!r} is ambiguous; write 0o{text.lstrip('-0')} for octal")
            unknown = unknown_parts(text)
            if unknown:
                near = nearest(unknown[0])
                hint = "; did you mean " + " or ".join(near) + "?" if near else ""
                raise ValueError(f"unknown constant {unknown[0]!r}{hint}")
            raise ValueError(f"{text!r} is not an integer or a named constant")
        return number
    if type_ == "duration":
        number = raw if isinstance(raw, int) else parse_duration(text)
        if number is None:
            raise ValueError(f"{text!r} is not a duration (like 500ms, 30s, 10m, 2h)")
        return number
    if type_ == "bool":
        if isinstance(raw, str) and not quoted and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise ValueError(f"{text!r} is not true or false")
    if type_ == "ip":
        return _ip_literal(text, allow_net)
    if not quoted and "/" in text and _is_network(text):
        raise ValueError(f"the network {text!r} only applies to ip fields")
    return text


def _ip_literal(text: str, allow_net: bool) -> Any:
    if "/" in text:
        if not allow_net:
            raise ValueError(f"{text!r} is a network; test it with 'in ({text})'")
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not a network") from None
    try:
        return _mapped(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def to_int(text: str) -> int | None:
    """Base-10 integer or None: no 0x, no floats, so `depth=1e3` is an error."""
    try:
        return int(text, 10)
    except ValueError:
        return None


def int_literal(text: str) -> int | None:
    """An integer literal of a condition: decimal, or 0o755 / 0x1f / 0b101 for modes and flags.

    Octal needs its 0o: a bare 0755 is refused rather than silently read as 755.
    """
    if text[:2].lower() in ("0o", "0x", "0b") or text[:3].lower() in ("-0o", "-0x", "-0b"):
        try:
            return int(text, 0)
        except ValueError:
            return None
    if _LEADING_ZERO.fullmatch(text):
        return None
    return to_int(text)


def parse_duration(text: str) -> int | None:
    """`500ms`, `30s`, `10m`, `2h`, `1d` (or `1h30m`) as nanoseconds; None when not one."""
    text = text.strip()
    if not text:
        return None
    pos, total = 0, 0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if m is None:
            return None
        total += int(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    return total


def unquote(text: str) -> str:
    """A STRING token's value; only \\n \\t \\\\ and quote escapes, so regexes keep \\d."""
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


def _mapped(addr: IP) -> IP:
    """IPv4-mapped IPv6 (::ffff:a.b.c.d, as dual-stack sockets report) as plain IPv4."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def as_ip(value: Any) -> IP | None:
    """An event's address as an ip object, or None when it does not parse."""
    try:
        return _mapped(ipaddress.ip_address(value))
    except ValueError:
        return None


def order_test(op: str, type_: str, lit: Any) -> Callable[[Any], bool]:
    """=, !=, <, <=, >, >= against a converted literal; ip values are parsed first."""
    compare = ORDERED[op]
    if type_ == "ip":
        return lambda got: (addr := as_ip(got)) is not None and compare(addr, lit)
    return lambda got: compare(got, lit)


def string_test(op: str, type_: str, lit: str) -> Callable[[Any], bool]:
    """The string operators and their case-insensitive `i` forms (glob is fnmatch; `iglob`
    and the others compare lower-cased text). On a list[str] field `contains`/`has` test
    for one whole element, never a substring of one."""
    if type_ == "list[str]":
        return _element_test(op, lit)
    if op.startswith("i"):
        return _folded_test(op, lit)
    if op == "contains":
        return lambda got: lit in got
    if op == "startswith":
        return lambda got: got.startswith(lit)
    if op == "endswith":
        return lambda got: got.endswith(lit)
    rx = re.compile(fnmatch.translate(lit))  # glob
    return lambda got: rx.match(got) is not None


def _element_test(op: str, lit: str) -> Callable[[Any], bool]:
    """contains/has (an element equals lit), icontains/ihas (ignoring case)."""
    if op in ("contains", "has"):
        return lambda got: lit in got
    low = lit.lower()
    return lambda got: any(low == item.lower() for item in got)


def _folded_test(op: str, lit: str) -> Callable[[Any], bool]:
    """i=, i!=, icontains, istartswith, iendswith, iglob on lower-cased text."""
    low = lit.lower()
    if op == "i=":
        return lambda got: got.lower() == low
    if op == "i!=":
        return lambda got: got.lower() != low
    if op == "icontains":
        return lambda got: low in got.lower()
    if op == "istartswith":
        return lambda got: got.lower().startswith(low)
    if op == "iendswith":
        return lambda got: got.lower().endswith(low)
    rx = re.compile(fnmatch.translate(low))  # iglob
    return lambda got: rx.match(got.lower()) is not None


def path_prefix_test(prefixes: list[str], fold: bool) -> Callable[[Any], bool]:
    """pmatch: the path is one of `prefixes` or lies below one (a whole-component prefix:
    /etc matches /etc and /etc/passwd, not /etcetera); ipmatch ignores case."""
    exact = frozenset(p.rstrip("/") or "/" for p in prefixes)
    below = tuple(p if p.endswith("/") else p + "/" for p in exact)
    if fold:
        exact = frozenset(p.lower() for p in exact)
        below = tuple(p.lower() for p in below)
        return lambda got: (low := got.lower()) in exact or low.startswith(below)
    return lambda got: got in exact or got.startswith(below)


def folded_member_test(type_: str, values: list[Any]) -> Callable[[Any], bool]:
    """iin: `in` ignoring case; list fields match when any element does."""
    members = frozenset(str(v).lower() for v in values)
    if type_ == "list[str]":
        return lambda got: any(item.lower() in members for item in got)
    return lambda got: got.lower() in members


def member_test(type_: str, values: list[Any]) -> Callable[[Any], bool]:
    """`in (...)`: a set lookup; list fields match when any element is in the set."""
    if type_ == "ip":
        nets = tuple(v for v in values if isinstance(v, _NETWORKS))
        addrs = frozenset(v for v in values if not isinstance(v, _NETWORKS))

        def ip_member(got: Any) -> bool:
            addr = as_ip(got)
            return addr is not None and (addr in addrs or any(addr in net for net in nets))

        return ip_member
    members = frozenset(values)
    if type_ == "list[str]":
        return lambda got: any(item in members for item in got)
    return lambda got: got in members
