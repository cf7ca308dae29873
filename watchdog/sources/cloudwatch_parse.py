"""GetMetricData's answer read straight from its bytes (issue 22): a 5 000-rule poll's ten answers in 31 ms of CPU
where botocore's generic parser takes 119 (bench/README.md, "Parsing GetMetricData's answer").

Our botocore speaks the query protocol to CloudWatch (its service model says `protocols: ["query"]`): the answer
is XML. botocore builds an ElementTree of it and walks the tree against the API model node by node in Python: at
500 results a third of the daemon's CPU per poll. `scan` reads the text with one tokenizer (a regular expression,
run in C) that knows only this answer's canonical form, the one AWS and moto send: the envelope, the output's
MetricDataResults, NextToken and Messages, each result's Id, Label, StatusCode, Timestamps, Values and Messages,
ResponseMetadata's RequestId, and XML whitespace between tags. A Timestamps or Values list is one token whose
members are split in C, and each distinct time is parsed once per answer (the results share their times, and then
their datetime objects too).

Anything outside that form (a comment, an entity, an attribute, CDATA, an element the answer does not have, a
repeated field) and any value that does not convert goes to botocore's own QueryParser (`parse`): whatever the
bytes, the result or the exception is botocore's. tests/test_cloudwatch_parse.py holds the two to the same answer
over generated documents, hostile ones included.

It plugs in as the parser of the CloudWatch source's client (sources/cloudwatch.py `_open`, through
support/aws.py `aws_client(parsers=ParserFactory())`): `ParserFactory` is an aiobotocore response-parser factory,
registered on the client's session before the client is made and before its timestamp parser is set; it parses
every GetMetricData answer of that client and leaves every other operation, and every error answer, to botocore.
"""

from __future__ import annotations

import re
from math import isfinite
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import botocore.session
from aiobotocore.parsers import AioQueryParser, AioResponseParserFactory
from botocore.model import Shape
from botocore.parsers import QueryParser

from watchdog.core.points import Points

__all__ = ["POINTS", "NotCanonical", "ParserFactory", "Result", "as_points", "parse", "results_of", "scan"]

Timestamps = Callable[[str], datetime]
# One result read into its datapoints: Id, StatusCode, (time, value) pairs (Points when they pair up one for one,
# as they do in every answer AWS sends), and whether every value is finite.
Result = tuple[str | None, str | None, Sequence[tuple[datetime, float]], bool]
POINTS = "Points"  # the answer's key for its `Result`s, in place of MetricDataResults

_W = "[ \t\n]*"  # XML's whitespace between tags (a carriage return never reaches the tokenizer: see _UNSURE)
# One token, after whitespace: a Timestamps or Values list whole (group 2: its members), an element with text only
# (3, 4), an empty element (5), an opening (6) or a closing tag (7). `lastindex` says which.
_TOKEN = re.compile(
    _W + "(?:"
    rf"<(Timestamps|Values)>((?:{_W}<member>[^<]*</member>)*){_W}</\1>"
    r"|<([A-Za-z]+)>([^<]*)</\3>"
    r"|<([A-Za-z]+)/>"
    r"|<([A-Za-z]+)>"
    r"|</([A-Za-z]+)>)")
_LIST, _TEXT, _EMPTY, _OPEN, _CLOSE = 2, 4, 5, 6, 7
_MEMBERS = re.compile(r"<member>([^<]*)</member>")
# A result with no Messages, whole (the common case: one match and one findall instead of a token per field).
_FIELD = (rf"{_W}(?:<(?P<list>Timestamps|Values)>(?P<items>(?:{_W}<member>[^<]*</member>)*){_W}</(?P=list)>"
          r"|<(?P<named>Id|Label|StatusCode)>(?P<value>[^<]*)</(?P=named)>"
          r"|<(?P<empty>Id|Label|StatusCode|Timestamps|Values)/>)")
_RESULT = re.compile(rf"{_W}<member>((?:{_FIELD})*){_W}</member>")
# A result in moto's order of fields (Id, Label, Timestamps, Values, StatusCode), likely AWS's too: every field from
# one match, no findall and no loop over the fields (an answer of 500 results: 5.4 ms without it, 3.0 with it).
# Its repeats are possessive (`*+`): giving back what one took can never let the rest match (a text stops at "<",
# whitespace before a tag, a list's members before its closing tag), so the engine keeps no way back (the matches of
# an answer of 500 results: 0.70 -> 0.49 ms, process time).
_S = "[ \t\n]*+"  # _W, possessive
_ORDERED = re.compile(
    rf"{_S}<member>{_S}<Id>([^<]*+)</Id>{_S}<Label>([^<]*+)</Label>"
    rf"{_S}(?:<Timestamps>((?:{_S}<member>[^<]*+</member>)*+){_S}</Timestamps>|<Timestamps/>)"
    rf"{_S}(?:<Values>((?:{_S}<member>[^<]*+</member>)*+){_S}</Values>|<Values/>)"
    rf"{_S}<StatusCode>([^<]*+)</StatusCode>{_S}</member>")
_FIELDS = re.compile(_FIELD)
_HEAD = re.compile(r'(?:<\?xml version="1\.0"(?: encoding="UTF-8")?\?>)?' + _W
                   + r'<GetMetricDataResponse(?: xmlns="[^"<]*")?>')
# What an XML parser reads otherwise than the tokenizer would: entities and character references, carriage returns
# (it normalises them) and the characters XML forbids, byte by byte; "]]>"; U+FFFE and U+FFFF. (Comments, CDATA,
# DTDs and processing instructions are no token: the tokenizer stops at them.)
_UNSURE_BYTES = b"&\r" + bytes([*range(0, 9), 11, 12, *range(14, 32)])

# The answer's structures: each field's kind. A kind is "text", "raw" (text, None when empty: how botocore reads
# ResponseMetadata), "times", "numbers", another structure, or a list of structures ("[query]").
_SHAPES: dict[str, dict[str, str]] = {
    "response": {"GetMetricDataResult": "output", "ResponseMetadata": "metadata"},
    "output": {"MetricDataResults": "[query]", "NextToken": "text", "Messages": "[message]"},
    "query": {"Id": "text", "Label": "text", "StatusCode": "text", "Timestamps": "times", "Values": "numbers",
              "Messages": "[message]"},
    "message": {"Code": "text", "Value": "text"},
    "metadata": {"RequestId": "raw"},
}


class NotCanonical(Exception):
    """The answer is not in the form `scan` reads; botocore's parser reads it."""


def parse(body: bytes, timestamps: Timestamps) -> dict[str, Any]:
    """The answer as botocore's QueryParser gives it for GetMetricData (its `_do_parse`: the output structure and
    ResponseMetadata's fields): `scan`'s when it reads it, else botocore's."""
    try:
        return scan(body, timestamps)
    except NotCanonical:
        pass
    shape = botocore.session.get_session().get_service_model("cloudwatch").operation_model("GetMetricData").output_shape
    parsed: dict[str, Any] = QueryParser(timestamp_parser=timestamps)._do_parse({"body": body}, shape)
    return parsed


def scan(body: bytes, timestamps: Timestamps, points: bool = False) -> dict[str, Any]:
    """The answer read by the tokenizer alone. NotCanonical when it is not in the form the tokenizer knows, or
    when a value in it does not convert (then botocore says what that is).

    `points`: the results under POINTS instead of MetricDataResults, each read straight into its datapoints
    (`Result`, what the CloudWatch source consumes): no result dict built, no list of times copied, and no second
    pass over the results in the source (1 000 results: 9.0 -> 4.2 ms of CPU, bench/README.md)."""
    try:
        text = body.decode("utf-8")  # what botocore tells its XML parser the body is
    except UnicodeDecodeError:
        raise NotCanonical("not UTF-8") from None
    head = _HEAD.match(text)
    # bytes.translate deleting them and comparing lengths: 0.14 ms over an answer, a regular expression 0.73
    if head is None or len(body.translate(None, _UNSURE_BYTES)) != len(body) or b"]]>" in body \
            or (not body.isascii() and ("\ufffe" in text or "\uffff" in text)):
        raise NotCanonical("not the envelope, or something only an XML parser reads")
    response: dict[str, Any] = {}
    # The open elements, innermost last: its tag, its kind, and the structure or list it fills.
    stack: list[tuple[str, str, Any]] = [("GetMetricDataResponse", "response", response)]
    times = _Times(timestamps)
    pos, token = head.end(), _TOKEN.match
    try:
        while stack:
            m = token(text, pos)
            if m is None:
                raise NotCanonical(f"not a token at {pos}")
            pos, which = m.end(), m.lastindex
            tag, kind, into = stack[-1]
            if which == _CLOSE:
                if m[_CLOSE] != tag:
                    raise NotCanonical(f"</{m[_CLOSE]}> closes <{tag}>")
                stack.pop()
            elif kind[0] == "[":  # a list of structures: each element in it is one, whatever its name (as botocore)
                if kind == "[query]" and which == _OPEN:
                    start = m.start()
                    if (whole := _ORDERED.match(text, start)) is not None:
                        # and the results after it in the same form, each one match with no token read first
                        # (two answers of 500 results: 5.8 -> 5.2 ms, process time)
                        ordered, add, many, shared = _ORDERED.match, into.append, times.many, times.shared
                        known = times.known
                        while whole is not None:
                            if points:
                                # A result's fields inline, its Values split in C at their tags, its times found once
                                # per answer, finite when their sum is (exact: any infinity or NaN makes the sum one;
                                # only a sum that overflows is checked value by value): two
                                # answers of 500 results, 6 points each, 5.5 -> 4.7 ms.
                                members, stamps = whole[4] or "", whole[3]
                                try:  # a piece holding a tag (whitespace between members) fails float(): read slowly
                                    values = list(map(float, members[8:-9].split("</member><member>"))) \
                                        if members else []
                                except ValueError:
                                    values = _numbers(members)
                                at = (known.get(stamps) if stamps else None) or shared(stamps or "")
                                # As two columns, no tuple per datapoint (core/points.py): the two answers 3.56 -> 3.21 ms
                                add((whole[1], whole[5],
                                     Points(at, values) if len(at) == len(values) else list(zip(at, values)),
                                     isfinite(sum(values)) or all(map(isfinite, values))))
                            else:
                                add({"Id": whole[1], "Label": whole[2], "Timestamps": many(whole[3] or ""),
                                     "Values": _numbers(whole[4] or ""), "StatusCode": whole[5]})
                            pos = whole.end()
                            whole = ordered(text, pos)
                        continue
                    if (whole := _RESULT.match(text, start)) is not None:
                        into.append(_result(whole[1], times))
                        pos = whole.end()
                        continue
                member: dict[str, Any] = {}
                into.append(member)  # empty, text only, or a Timestamps or Values list: no field, as in botocore
                if which == _OPEN:
                    stack.append((m[_OPEN], kind[1:-1], member))
            else:
                name = m[1] or m[3] or m[_EMPTY] or m[_OPEN]
                field = _SHAPES[kind].get(name)
                if field is None or name in into:  # unknown here, or repeated (botocore makes a list of it)
                    raise NotCanonical(f"<{name}> in <{tag}>")
                if which == _LIST:
                    into[name] = _numbers(m[_LIST]) if field == "numbers" else times.many(m[_LIST])
                elif which == _OPEN:
                    if field in ("text", "raw", "times", "numbers"):
                        raise NotCanonical(f"<{name}> holds elements")
                    into[name] = [] if field[0] == "[" else {}
                    stack.append((name, field, into[name]))
                else:  # text only (which == _TEXT), or empty
                    value = m[_TEXT] if which == _TEXT else ""
                    if field == "text":
                        into[name] = value
                    elif field == "raw":
                        into[name] = value or None
                    else:  # a list or structure with no element in it (botocore ignores its text)
                        into[name] = [] if field in ("times", "numbers") or field[0] == "[" else {}
    except NotCanonical:
        raise
    except Exception:  # a value that does not convert (float's, the time parser's): botocore says what it is
        raise NotCanonical("a value that does not convert") from None
    if text[pos:].strip(" \t\n") or "GetMetricDataResult" not in response:
        raise NotCanonical("text after the document, or no GetMetricDataResult")
    out: dict[str, Any] = response["GetMetricDataResult"]
    if points:  # the results the ordered form did not cover were read as botocore's dicts
        out[POINTS] = [r if r.__class__ is tuple else as_points(r) for r in out.pop("MetricDataResults", [])]
    if "ResponseMetadata" in response:
        out["ResponseMetadata"] = response["ResponseMetadata"]
    return out


def as_points(result: dict[str, Any]) -> Result:
    """A result in botocore's form, as `scan(points=True)` reads it."""
    values = result.get("Values", [])
    return result.get("Id"), result.get("StatusCode"), list(zip(result.get("Timestamps", []), values)), \
        all(map(isfinite, values))


def results_of(page: dict[str, Any]) -> list[Result]:
    """A page's results as `Result`s, whichever parser read it (botocore's, for an answer `scan` does not)."""
    known: list[Result] | None = page.get(POINTS)
    return known if known is not None else [as_points(r) for r in page.get("MetricDataResults", [])]


def _result(fields: str, times: _Times) -> dict[str, Any]:
    """A result's fields, from _RESULT's match."""
    out: dict[str, Any] = {}
    for listed, items, named, value, empty in _FIELDS.findall(fields):
        name = listed or named or empty
        if name in out:
            raise NotCanonical(f"<{name}> twice in a result")
        if listed == "Values":
            out[name] = _numbers(items)
        elif listed:
            out[name] = times.many(items)
        elif named:
            out[name] = value
        else:
            out[name] = "" if empty not in ("Timestamps", "Values") else []
    return out


def _numbers(members: str) -> list[float]:
    """A Values list's numbers, as botocore reads them (float of each member's text)."""
    return list(map(float, _texts(members)))


def _texts(members: str) -> list[str]:
    """The texts of a list's members: split at the tags in C when they follow each other with no whitespace, as
    AWS and moto write them (0.5 µs for six members, findall 0.9)."""
    if members.startswith("<member>") and members.endswith("</member>"):
        texts = members[8:-9].split("</member><member>")
        if len(texts) == members.count("<member>"):
            return texts
    return _MEMBERS.findall(members)


class _Times:
    """Each distinct time of an answer parsed once, and each distinct list of them too: the results of an answer
    mostly share theirs, member for member (0.5 ms of an answer's 5 at 500 results)."""

    def __init__(self, parse_one: Timestamps):
        self._parse_one = parse_one
        self._one: dict[str, datetime] = {}
        self._many: dict[str, list[datetime]] = {}
        self.known = self._many  # read as `shared` reads it, without the call

    def many(self, members: str) -> list[datetime]:
        """The times of a Timestamps list's members, in a list of the result's own, as botocore gives it."""
        known = self._many.get(members)
        if known is None:
            known = self._many[members] = [self.one(t) for t in _texts(members)]
        return known[:]

    def shared(self, members: str) -> list[datetime]:
        """The same, one list for every result with these times (only read, never changed: zipped into points)."""
        known = self._many.get(members)
        if known is None:
            known = self._many[members] = [self.one(t) for t in _texts(members)]
        return known

    def one(self, text: str) -> datetime:
        at = self._one.get(text)
        if at is None:
            at = self._one[text] = self._parse_one(text)
        return at


class FastQueryParser(AioQueryParser):
    """botocore's query parser, with GetMetricData's answers read by `scan` (`points`: see scan)."""

    def __init__(self, points: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self._points = points

    def _do_parse(self, response: dict[str, Any], shape: Shape | None) -> dict[str, Any]:
        if shape is not None and shape.name == "GetMetricDataOutput":
            try:
                return scan(response["body"], self._timestamp_parser, self._points)
            except NotCanonical:
                pass
        parsed: dict[str, Any] = super()._do_parse(response, shape)
        return parsed


class ParserFactory(AioResponseParserFactory):
    """aiobotocore's parser factory, with the query protocol's parser replaced by FastQueryParser. `points`: its
    GetMetricData answers carry their results as `Result`s (read them with `results_of`)."""

    def __init__(self, points: bool = False):
        super().__init__()
        self._points = points

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "query":
            return FastQueryParser(self._points, **self._defaults)
        return super().create_parser(protocol_name)
