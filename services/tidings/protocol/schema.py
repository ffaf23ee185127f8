"""A frame is declared once: its dataclass fields drive both its encoding and its parsing.

The field order is the order on the wire; the type hint says what a reader accepts; the
default is what an absent or null value reads as (no default and no ``None`` in the type:
required); the few rules a type cannot say sit in the field's ``metadata`` (:func:`wire`). A
client frame is read strictly, with an error precise enough to put in an ``error`` frame
(:func:`from_client`); a server frame is read leniently, skipping unknown fields, so a newer
gateway does not break an older client (:func:`from_server`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

from tidings.errors import InvalidField, Malformed, MissingField
from tidings.protocol.limits import MAX_SAFE_INTEGER, Limits

# A client field's own reader: (the value sent, None when absent; its field name; the limits).
Reader = Callable[[object, str, Limits], Any]


@dataclass(frozen=True, slots=True)
class Wire:
    """How a field goes on the wire beyond what its type says (defaults: the common case)."""

    null: bool = False  # None is written as null; by default a None field is left out
    omit_empty: bool = False  # an empty tuple is left out
    pair: str | None = None  # comes with that field: both or neither (written when it is set)
    length: tuple[int, int] | None = None  # a string's bounds in characters (client frames)
    read: Reader | None = None  # a client field's own reader, in place of its type's


def wire(
    *,
    null: bool = False,
    omit_empty: bool = False,
    pair: str | None = None,
    length: tuple[int, int] | None = None,
    read: Reader | None = None,
) -> dict[str, Wire]:
    """A field's ``metadata``: ``field(default=None, metadata=wire(null=True))``."""
    return {"wire": Wire(null, omit_empty, pair, length, read)}


@dataclass(frozen=True, slots=True)
class Kind:
    """The JSON value a type hint stands for, and the words an error uses for it."""

    noun: str
    accepts: Callable[[object], bool]


TEXT = Kind("a string", lambda v: isinstance(v, str))
INTEGER = Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
BOOLEAN = Kind("a boolean", lambda v: isinstance(v, bool))
NUMBER = Kind("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool))
TEXTS = Kind("an array", lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
# By the type hint's class: str, int, bool, float (int accepted), tuple[str, ...], dict[str, Any].
_KINDS: dict[type, Kind] = {
    str: TEXT,
    int: INTEGER,
    bool: BOOLEAN,
    float: NUMBER,
    tuple: TEXTS,
    dict: OBJECT,
}


@dataclass(frozen=True, slots=True)
class WireField:
    """One declared field, compiled once from the dataclass field, its type hint and ``wire``."""

    name: str
    kind: Kind
    required: bool  # neither a default nor None in its type
    absent: Any  # what an absent or null value reads as
    wire: Wire


class Frame:
    """Base of every frame: ``type`` names it on the wire; its fields say the rest."""

    __slots__ = ()
    type: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this frame: ``type`` first, then the fields in declared order."""
        body: dict[str, Any] = {"type": self.type}
        for field in wire_fields(type(self)):
            value = getattr(self, field.name)
            rule = field.wire
            if rule.pair is not None:
                if getattr(self, rule.pair) is None:
                    continue
            elif value is None:
                if not rule.null:
                    continue
            elif rule.omit_empty and not value:
                continue
            body[field.name] = list(value) if field.kind is TEXTS else value
        return body


F = TypeVar("F", bound=Frame)
_FIELDS: dict[type[Frame], tuple[WireField, ...]] = {}


def wire_fields(cls: type[Frame]) -> tuple[WireField, ...]:
    """The fields of frame class ``cls``, compiled on first use."""
    fields = _FIELDS.get(cls)
    if fields is None:
        hints = get_type_hints(cls)
        fields = _FIELDS[cls] = tuple(
            _wire_field(declared, hints[declared.name])
            for declared in dataclasses.fields(cls)  # type: ignore[arg-type]
        )
    return fields


def _wire_field(declared: dataclasses.Field[Any], hint: Any) -> WireField:
    args = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    (base,) = (a for a in args if a is not NoneType)
    kind = _KINDS[get_origin(base) or base]
    has_default = declared.default is not dataclasses.MISSING
    required = not has_default and NoneType not in args
    absent = declared.default if has_default else None
    return WireField(declared.name, kind, required, absent, declared.metadata.get("wire", Wire()))


def json_type(value: object) -> str:
    """How an error names the JSON type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- reading a client frame (the gateway side): strict --------------------------------------


def from_client(cls: type[F], body: Mapping[str, Any], limits: Limits) -> F:
    """The frame ``cls`` from a client's JSON object; raise the error that goes on the wire."""
    fields = wire_fields(cls)
    values = {field.name: _read(field, body.get(field.name), limits) for field in fields}
    for field in fields:
        partner = field.wire.pair
        if partner is not None and (values[field.name] is None) != (values[partner] is None):
            missing = field.name if values[field.name] is None else partner
            raise MissingField(
                f"{partner} and {field.name} go together: both or neither", field=missing
            )
    return cls(**values)


def _read(field: WireField, value: object, limits: Limits) -> Any:
    name, kind = field.name, field.kind
    if field.wire.read is not None:
        return field.wire.read(value, name, limits)
    if value is None:
        if field.required:
            raise MissingField("is required", field=name)
        return field.absent
    if kind is TEXTS:
        return read_texts(value, name)  # an error names the item at fault
    if not kind.accepts(value):
        raise InvalidField(f"must be {kind.noun}, not {json_type(value)}", field=name)
    if kind is INTEGER and not 0 <= value <= MAX_SAFE_INTEGER:  # type: ignore[operator]
        raise InvalidField(f"must be between 0 and {MAX_SAFE_INTEGER}", field=name)
    bounds = field.wire.length
    if bounds is not None and not bounds[0] <= len(value) <= bounds[1]:  # type: ignore[arg-type]
        raise InvalidField(f"must be {bounds[0]} to {bounds[1]} characters", field=name)
    return value


def read_texts(
    value: object, name: str, item: Callable[[object, str], str] | None = None
) -> tuple[str, ...]:
    """An array of strings, each checked by ``item`` (default: a string) under ``name[i]``."""
    if not isinstance(value, list):
        raise InvalidField(f"must be an array, not {json_type(value)}", field=name)
    return tuple((item or _text)(v, f"{name}[{i}]") for i, v in enumerate(value))


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidField(f"must be a string, not {json_type(value)}", field=name)
    return value


# --- reading a server frame (the client side): lenient --------------------------------------


def from_server(cls: type[F], body: Mapping[str, Any]) -> F:
    """The frame ``cls`` from the gateway's JSON object; unknown fields are skipped."""
    values: dict[str, Any] = {}
    for field in wire_fields(cls):
        value = body.get(field.name)
        if value is None:
            if field.required:
                raise Malformed(f"server frame {cls.type!r}: bad {field.name}", field=field.name)
            value = field.absent
        elif not field.kind.accepts(value):
            raise Malformed(f"server frame {cls.type!r}: bad {field.name}", field=field.name)
        elif field.kind is TEXTS:
            value = tuple(value)
        values[field.name] = value
    return cls(**values)
