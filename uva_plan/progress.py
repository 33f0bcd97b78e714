"""The project's one rich progress display (``progress_bar``): every long loop (collection,
caches, training, episode runs) shows the same columns."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar(*fields: str, console: Console | None = None, transient: bool = False, **kwargs: Any) -> Progress:
    """A ``rich.progress.Progress`` with the standard columns: description, bar, done / total,
    one text column per entry of ``fields`` (a template such as ``"success {task.fields[success]}"``,
    whose field each ``add_task`` / ``update`` sets), elapsed time and time remaining.

    ``console``: where it draws (rich's global console if None); ``transient``: erase the display
    when it stops; ``kwargs`` go to ``Progress`` (e.g. ``disable=True``)."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               *(TextColumn(field) for field in fields), TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console, transient=transient, **kwargs)
