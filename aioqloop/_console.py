"""Text output of the demo, the benchmarks and `statistics_table`: rich when it is installed.

rich is an optional extra (``pip install 'aioqloop[rich]'``): the event loop itself never
imports it.  The faces write their lines with rich's console markup (``[bold]up[/]``) and
build their tables with `Table`; with rich installed they go through a rich console, and
without it `PlainConsole` prints the same text with the markup tags dropped and each
table as aligned columns.  Text that must show literally (a file name, a traceback, an
install hint such as ``pip install 'aioqloop[uvloop]'``, whose ``[uvloop]`` reads as a
tag) goes through `escape` first; it means the same to rich's parser and to ours.
"""

from __future__ import annotations

import importlib
import re
import shutil
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TextIO, cast

__all__ = ("Console", "PlainConsole", "Table", "escape", "make_console", "rich_available",
           "strip_markup")

Justify = Literal["left", "right", "center"]
Overflow = Literal["fold", "crop", "ellipsis"]

# A tag as rich's markup reads it: "[" then a lowercase letter, "#", "/" or "@", up to the
# first "]" with no "[" in between; an odd run of backslashes before it makes it literal.
# Outside tags, rich drops a backslash that stands before "[", and so does strip_markup.
_TAG = re.compile(r"(\\*)(\[[a-z#/@][^\[]*?\])")
_TAG_BODY = re.compile(r"[a-z#/@][^\[]*?\]")
_BRACKET = re.compile(r"(\\*)\[")
#: Narrowest a plain column is squeezed to before the table overflows its width.
_MIN_COLUMN = 6
_GAP = "  "


class Console(Protocol):
    """What the faces need of a console: rich's ``Console`` and `PlainConsole` both fit."""

    @property
    def is_terminal(self) -> bool: ...

    def print(self, *objects: Any, markup: bool | None = None,
              highlight: bool | None = None) -> None: ...


def rich_available() -> bool:
    """Whether rich can be imported (asked each time: tests hide it)."""
    try:
        for module in ("rich.console", "rich.markup", "rich.table"):
            importlib.import_module(module)
    except ImportError:
        return False
    return True


def escape(text: str) -> str:
    """``text`` made literal inside console markup (rich's and `strip_markup`'s alike).

    A tag-shaped ``[...]`` gets its backslashes doubled and one more (an escaped tag);
    another ``[`` after backslashes gets one more (the one the parser drops); a
    trailing run of backslashes is doubled, so that it cannot escape a tag that follows.
    """

    def bracket(m: re.Match[str]) -> str:
        slashes = m.group(1)
        if _TAG_BODY.match(text, m.end()):
            return f"{slashes}{slashes}\\["
        return f"{slashes}\\[" if slashes else "["

    escaped = _BRACKET.sub(bracket, text)
    trailing = len(escaped) - len(escaped.rstrip("\\"))
    return escaped + "\\" * trailing


def strip_markup(text: str) -> str:
    """The text of console markup without its tags (what rich would show, unstyled)."""
    out: list[str] = []
    position = 0
    for m in _TAG.finditer(text):
        out.append(text[position : m.start()].replace("\\[", "["))
        slashes, tag = m.group(1), m.group(2)
        literal, escaped = divmod(len(slashes), 2)
        out.append("\\" * literal + (tag if escaped else ""))
        position = m.end()
    out.append(text[position:].replace("\\[", "["))
    return "".join(out)


@dataclass
class _Column:
    header: str
    justify: Justify
    overflow: Overflow | None


class Table:
    """A table that rich renders as its own (``__rich__``) and ``str()`` as aligned text.

    Titles, captions and cells are console markup (see `escape`); a cell may hold
    several lines.
    """

    def __init__(self, title: str | None = None, *, caption: str | None = None,
                 title_justify: Justify = "center") -> None:
        self.title = title
        self.caption = caption
        self.title_justify: Justify = title_justify
        self.columns: list[_Column] = []
        self.rows: list[tuple[str, ...]] = []

    def add_column(self, header: str, *, justify: Justify = "left",
                   overflow: Overflow | None = None) -> None:
        """A column; ``overflow`` is passed to rich (the plain layout wraps)."""
        self.columns.append(_Column(header, justify, overflow))

    def add_row(self, *cells: str) -> None:
        """A row of one markup string per column."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(tuple(cells))

    def __rich__(self) -> Any:
        """The same table as a ``rich.table.Table``."""
        from rich.table import Table as RichTable

        table = RichTable(title=self.title, caption=self.caption,
                          title_justify=self.title_justify)
        for col in self.columns:
            table.add_column(col.header, justify=col.justify,
                             overflow=col.overflow or "ellipsis")
        for row in self.rows:
            table.add_row(*row)
        return table

    def render(self, width: int | None = None) -> str:
        """The table as plain text; ``width`` (columns) wraps cells to fit, if it can."""
        headers = [strip_markup(c.header) for c in self.columns]
        rows = [[strip_markup(cell) for cell in row] for row in self.rows]
        widths = [max([len(h), *(len(line) for row in rows for line in row[i].split("\n"))])
                  for i, h in enumerate(headers)]
        if width is not None:
            room = width - len(_GAP) * max(len(widths) - 1, 0)
            while sum(widths) > room:
                widest = max(range(len(widths)), key=lambda i: widths[i])
                if widths[widest] <= _MIN_COLUMN:
                    break  # as narrow as it goes: the table overflows
                widths[widest] -= 1
        lines: list[str] = []
        total = sum(widths) + len(_GAP) * max(len(widths) - 1, 0)
        wrap_at = max(width or total, total, 20)
        if self.title:
            lines += textwrap.wrap(strip_markup(self.title), wrap_at) or [""]
        lines += self._cells(headers, widths)
        lines.append(_GAP.join("-" * w for w in widths).rstrip())
        for row in rows:
            lines += self._cells(row, widths)
        if self.caption:
            lines += textwrap.wrap(strip_markup(self.caption), wrap_at)
        return "\n".join(lines)

    def _cells(self, cells: list[str], widths: list[int]) -> list[str]:
        wrapped = []
        for text, w in zip(cells, widths, strict=True):
            parts: list[str] = []
            for line in text.split("\n"):
                parts += textwrap.wrap(line, w, break_long_words=True) or [""]
            wrapped.append(parts)
        height = max((len(p) for p in wrapped), default=0)
        out = []
        for n in range(height):
            row = []
            for col, parts, w in zip(self.columns, wrapped, widths, strict=True):
                text = parts[n] if n < len(parts) else ""
                if col.justify == "right":
                    row.append(text.rjust(w))
                elif col.justify == "center":
                    row.append(text.center(w))
                else:
                    row.append(text.ljust(w))
            out.append(_GAP.join(row).rstrip())
        return out

    def __str__(self) -> str:
        return self.render()


class PlainConsole:
    """A console without rich: markup tags dropped, `Table` laid out as aligned text.

    :param width: columns that tables are wrapped to; default the terminal's width
        when ``file`` is a terminal, else no limit.
    """

    def __init__(self, file: TextIO | None = None, *, stderr: bool = False,
                 width: int | None = None) -> None:
        self._file = file
        self._stderr = stderr
        self._width = width

    @property
    def file(self) -> TextIO:
        """Where the text goes (looked up at each print, as ``print()`` does)."""
        if self._file is not None:
            return self._file
        return sys.stderr if self._stderr else sys.stdout

    @property
    def is_terminal(self) -> bool:
        """Whether the output is a terminal."""
        isatty = getattr(self.file, "isatty", None)
        return bool(isatty and isatty())

    @property
    def width(self) -> int | None:
        """Columns that tables are wrapped to, or None for no limit."""
        if self._width is not None:
            return self._width
        return shutil.get_terminal_size().columns if self.is_terminal else None

    def print(self, *objects: Any, markup: bool | None = None,
              highlight: bool | None = None) -> None:
        """Write ``objects`` separated by spaces, then a newline (``highlight`` is rich's)."""
        del highlight  # nothing to highlight without colour
        width = self.width
        parts = []
        for obj in objects:
            if isinstance(obj, Table):
                parts.append(obj.render(width))
            elif isinstance(obj, str):
                parts.append(_wrap(obj if markup is False else strip_markup(obj), width))
            else:
                parts.append(str(obj))
        file = self.file
        file.write(" ".join(parts) + "\n")
        file.flush()


def _wrap(text: str, width: int | None) -> str:
    """Prose wrapped at spaces to ``width`` columns, as rich does (a word longer than the
    width stays whole; line breaks already there are kept)."""
    if width is None:
        return text
    return "\n".join(line if len(line) <= width else
                     textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False)
                     for line in text.split("\n"))


def make_console(file: TextIO | None = None, *, stderr: bool = False,
                 width: int | None = None) -> Console:
    """A rich console if rich is installed, else a `PlainConsole` (same arguments)."""
    if rich_available():
        from rich.console import Console as RichConsole

        return cast(Console, RichConsole(file=file, stderr=stderr, width=width))
    return PlainConsole(file, stderr=stderr, width=width)
