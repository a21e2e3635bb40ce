"""How the runner tells the user what is happening: a silent Reporter (tests, library use) and a rich one (CLI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class Reporter:
    """How the runner tells the user what is happening; the CLI passes a rich one, tests a silent one."""

    def stage(self, name: str, detail: str = "") -> None: ...

    def info(self, message: str) -> None: ...

    def progress(self, description: str, total: int | None) -> Callable[[int, dict[str, Any]], None]:
        return lambda advance, fields: None

    def done(self) -> None: ...


class RichReporter(Reporter):
    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Any = None

    def stage(self, name: str, detail: str = "") -> None:
        self.done()
        self.console.print(f"[bold cyan]▶ {name}[/bold cyan] {detail}")

    def info(self, message: str) -> None:
        self.console.print(f"  {message}")

    def progress(self, description: str, total: int | None) -> Callable[[int, dict[str, Any]], None]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.done()
        self._progress = Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                  console=self.console, transient=False)
        self._progress.start()
        task = self._progress.add_task(description, total=total, info="")

        def update(advance: int, fields: dict[str, Any]) -> None:
            info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            self._progress.update(task, advance=advance, **({"info": info} if info else {}))

        return update

    def done(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def quiet_libraries() -> None:
    """hfpipe draws its own progress; the libraries' bars and save-time notices would interleave with it."""
    import logging

    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for name in ("accelerate", "accelerate.checkpointing", "accelerate.accelerator"):
        logging.getLogger(name).setLevel(logging.ERROR)
