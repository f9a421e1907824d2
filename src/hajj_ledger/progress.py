"""One progress bar for the long commands (simulate, demo, export): a line redrawn on a terminal, nothing when the
output is a file or a pipe."""

from __future__ import annotations

from typing import Protocol, TextIO

WIDTH = 30


class Progress(Protocol):
    def __call__(self, done: int, total: int, note: str = "") -> None: ...


def progress_bar(stream: TextIO, unit: str) -> Progress:
    """`show(done, total, note)`: how far, in `unit`s, with a note after the count (a rate, say)."""

    def show(done: int, total: int, note: str = "") -> None:
        if not stream.isatty():
            return
        filled = int(WIDTH * done / max(total, 1))
        stream.write(f"\r[{'#' * filled}{'.' * (WIDTH - filled)}] {done:,}/{total:,} {unit}  {note} ")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show
