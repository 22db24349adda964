"""Canonical JSON of audit entries: RFC 8785 (the JSON Canonicalization Scheme), through the rfc8785 library.

An entry's ``hash`` is the SHA-256 of its canonical JSON, so that a customer
can recompute it offline with any RFC 8785 implementation (``pip install
rfc8785`` in Python, ``canonicalize`` in JavaScript). In short: members
sorted by name (as UTF-16 code units), no whitespace, UTF-8, strings escaped
as JavaScript's JSON.stringify does, numbers printed as JavaScript prints
them (integers stay integers).

A number has one canonical form only while every JSON reader gets the same
value back from it, so the values an entry holds are checked first: numbers
are finite and within ±(2^53 - 1), strings are valid Unicode, objects nest
at most 32 deep.
"""

import math
from collections.abc import Mapping
from typing import Any

import rfc8785

# Integers that a double holds exactly: JSON readers that use doubles (JavaScript) read them back unchanged.
MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 32


class NotCanonical(ValueError):
    """The value has no stable canonical JSON form."""


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 form of a JSON value, as UTF-8 bytes."""
    check_json_value(value)
    return rfc8785.dumps(value)


def check_json_value(value: Any, path: str = "$") -> None:
    """Refuse what would not read back as the same value from its canonical form.

    Non-finite numbers, numbers beyond ±(2^53 - 1) (``1e20`` prints as an
    integer that JavaScript rounds), lone surrogates, non-string member names,
    types other than JSON's, and nesting deeper than 32.
    """
    _check(value, path, 0)


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise NotCanonical(f"{path}: values nest at most {MAX_DEPTH} deep")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, int | float):
        if not (math.isfinite(value) and abs(value) <= MAX_SAFE_INTEGER):
            raise NotCanonical(f"{path}: numbers must be finite and within ±(2^53 - 1)")
    elif isinstance(value, Mapping):
        for name, item in value.items():
            if not isinstance(name, str):
                raise NotCanonical(f"{path}: member names must be strings")
            _check_text(name, path)
            _check(item, f"{path}.{name}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
    else:
        raise NotCanonical(f"{path}: {type(value).__name__} is not a JSON value")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NotCanonical(f"{path}: strings must be valid Unicode (no lone surrogates)") from exc
