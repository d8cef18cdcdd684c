"""What a report page is made of: summary cards and sections of charts, tables and notes.

The template (``templates/report.html``) lays these out; the section builders fill them.
A block marked ``wide`` spans the page, the others share it two a row on a wide screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Chart:
    """An inline ``<svg>`` chart (`webly.report.plots`) under a title, with a caption."""

    title: str
    svg: str
    caption: str = ""
    wide: bool = False
    kind: Literal["chart"] = "chart"


@dataclass(frozen=True)
class Table:
    """A table of preformatted cells; ``numeric`` columns are right-aligned."""

    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    numeric: frozenset[str] = frozenset()
    caption: str = ""
    wide: bool = False
    kind: Literal["table"] = "table"


@dataclass(frozen=True)
class Note:
    """A paragraph; ``missing`` marks one that says what the run lacks for this part,
    ``warning`` one that says a figure should not be trusted as it stands (both are also
    listed at the top of the page)."""

    text: str
    missing: bool = False
    warning: bool = False
    wide: bool = True
    kind: Literal["note"] = "note"


@dataclass(frozen=True)
class Link:
    """A link to a file written beside the page (``href`` relative to it), with a caption."""

    text: str
    href: str
    caption: str = ""
    wide: bool = True
    kind: Literal["link"] = "link"


@dataclass(frozen=True)
class Code:
    """Preformatted text (the resolved recipe), scrollable."""

    title: str
    text: str
    wide: bool = True
    kind: Literal["code"] = "code"


Block = Chart | Table | Note | Link | Code


@dataclass(frozen=True)
class Section:
    """One part of the page: an anchor id, a title, a one-line lead and its blocks."""

    id: str
    title: str
    lead: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """The notes saying what the run lacks for this section."""
        return [b.text for b in self.blocks if isinstance(b, Note) and b.missing]

    @property
    def warnings(self) -> list[str]:
        """The notes saying a figure of this section should not be trusted as it stands."""
        return [b.text for b in self.blocks if isinstance(b, Note) and b.warning]


@dataclass(frozen=True)
class Card:
    """A headline figure of the summary: a label, the value, and one line of detail."""

    label: str
    value: str
    detail: str = ""


NO_PREDICTIONS = Note("No predictions to score yet: the zoo stage has not finished.", missing=True)
"""What a section scoring the shown model's predictions holds before there are any."""
