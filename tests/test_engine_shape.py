"""The shape of the compiled core, counted over its C sources (aioqloop/_csrc/).

The core talks to Python through a few documented entry points: the callables that
``configure()``/``configure_timers()`` hand it once (a table of functions, called
without a name lookup), and a handful of names it still looks up at run time.  These
tests hold that shape: a new by-name call has to be argued for here, not slipped in.
Run as a script to print the counts per part.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

CSRC = Path(__file__).resolve().parent.parent / "aioqloop" / "_csrc"

#: The most by-name uses of the interned names of the module state (``CORE_NAMES``)
#: over all parts: a lookup of an attribute or a method by name, on a Python object
#: whose layout the core does not own.
MAX_BY_NAME = 25

#: Ways to reach a Python attribute by a C string, which would bypass the count above.
_STRING_LOOKUPS = re.compile(
    r"PyObject_GetAttrString|PyObject_SetAttrString|PyObject_HasAttrString"
    r"|PyObject_CallMethod\s*\(|_PyObject_GetAttrId|_PyObject_CallMethodId"
)


def _parts() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(CSRC.glob("*.h"))}


def _names(common: str) -> list[str]:
    """The fields of the ``CORE_NAMES`` table in common.h."""
    table = re.search(r"#define CORE_NAMES\(X\)(.*?)\n\n", common, re.S)
    assert table is not None, "common.h has no CORE_NAMES table"
    return re.findall(r"X\((\w+),", table.group(1))


def by_name_uses() -> Counter[str]:
    """Uses of each interned name, per part (``part.h``), outside its definition."""
    parts = _parts()
    names = _names(parts["common.h"])
    uses: Counter[str] = Counter()
    for part, text in parts.items():
        for name in names:
            uses[part] += len(re.findall(rf"->{name}\b", text))
    return uses


def string_lookups() -> list[str]:
    """``part:line`` of every attribute reached by a C string."""
    found = []
    for part, text in _parts().items():
        for no, line in enumerate(text.splitlines(), 1):
            if _STRING_LOOKUPS.search(line):
                found.append(f"{part}:{no}: {line.strip()}")
    return found


def test_by_name_calls_are_few() -> None:
    uses = by_name_uses()
    total = sum(uses.values())
    assert total <= MAX_BY_NAME, (
        f"{total} by-name uses of interned names (at most {MAX_BY_NAME}): "
        + ", ".join(f"{p} {n}" for p, n in uses.most_common() if n)
    )


def test_no_attribute_is_reached_by_a_c_string() -> None:
    assert string_lookups() == []


def test_no_file_scope_python_objects_or_static_types() -> None:
    offenders = []
    for part, text in _parts().items():
        for no, line in enumerate(text.splitlines(), 1):
            if re.match(r"static\s+(PyObject|PyTypeObject)\s*\*?\s*\w+\s*(=|;|\[)", line):
                offenders.append(f"{part}:{no}: {line.strip()}")
    assert offenders == []


def test_no_deprecated_error_api_outside_the_shim() -> None:
    offenders = []
    for part, text in _parts().items():
        # the one shim for 3.10/3.11 sits between these markers in common.h
        text = re.sub(r"#if PY_VERSION_HEX < 0x030C0000.*?#endif", "", text, flags=re.S)
        for name in ("PyErr_Fetch", "PyErr_Restore", "PyErr_NormalizeException"):
            if name in text:
                offenders.append(f"{part}: {name}")
    assert offenders == []


if __name__ == "__main__":  # pragma: no cover - a report for people
    counts = by_name_uses()
    for part, n in counts.most_common():
        if n:
            print(f"{n:4d}  {part}")
    print(f"{sum(counts.values()):4d}  total (at most {MAX_BY_NAME})")
    for hit in string_lookups():
        print("by string:", hit)
