"""What every command shares: the console, the error panel and the exit codes."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from hfpipe.errors import HfpipeError

DEBUG_ENV = "HFPIPE_DEBUG"


def is_main_process() -> bool:
    """True on the process that prints and writes (rank 0), also before Accelerate is initialised."""
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def _finite(value: object) -> object:
    """NaN and infinities as null: they are not JSON, and jq and most parsers refuse them."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def print_json(document: object) -> None:
    """The one JSON document of a `--json` command, on the real stdout (under `--json`, run_cli points
    sys.stdout at stderr, so whatever a library prints stays out of it), from the main process only."""
    if is_main_process():
        import json

        out = sys.__stdout__ or sys.stdout
        out.write(json.dumps(_finite(document), indent=2, default=str, allow_nan=False) + "\n")
        out.flush()


def print_error_record(err: HfpipeError) -> None:
    """Under `--json`, a failed command still prints exactly one document, saying what went wrong."""
    if "--json" in sys.argv[1:]:
        from hfpipe.runs.record import error_record

        print_json(error_record(next((a for a in sys.argv[1:] if not a.startswith("-")), "hfpipe"), err))


def make_console(*, stderr: bool = False) -> Console:
    """A console that is silent on every process but the main one."""
    return Console(stderr=stderr, quiet=not is_main_process(), highlight=False)


def error_panel(err: HfpipeError) -> Panel:
    body = Text(err.message, style="bold")
    if err.where:
        body.append("\n\nwhere: ", style="dim").append(err.where)
    for detail in err.details:
        body.append("\n  • ").append(detail)
    if err.hint:
        body.append("\n\nfix: ", style="green").append(err.hint)
    return Panel(body, title=f"[red]{err.title}[/red] (exit {err.exit_code})", title_align="left",
                 border_style="red", expand=False)


def _click_error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Click's ClickException and Abort, from the copy of click that recent Typer versions vendor
    (`typer._click`, with `typer.Abort`) and from click itself where it is installed."""
    import importlib

    errors, aborts = [], [typer.Abort] if hasattr(typer, "Abort") else []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        errors += [c for c in (getattr(module, "ClickException", None),) if c is not None]
        aborts += [c for c in (getattr(module, "Abort", None),) if c is not None]
    return tuple(errors), tuple(aborts)


def run_cli(app: typer.Typer) -> NoReturn:
    """Run the Typer app and exit with the code `exit_code_of` gives: the one place a command's exit code comes
    from, so no framework return value (Typer returns the code of an Exit in non-standalone mode, and turns
    Ctrl-C into such an Exit) can turn a failure into 0."""
    debug = "--debug" in sys.argv or os.environ.get(DEBUG_ENV) == "1"
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
        os.environ[DEBUG_ENV] = "1"
    if "--json" in sys.argv[1:]:
        sys.stdout = sys.stderr  # people's output and libraries' prints; the document goes to sys.__stdout__
    code = 1
    try:
        code = exit_code_of(app, debug)
    finally:
        if os.environ.get("HFPIPE_EXIT_CODE_DIR"):  # a process of `hfpipe run --processes N`
            from hfpipe.pipeline.distributed import record_exit_code

            record_exit_code(code)
    sys.exit(code)


# A write that failed for lack of room, whichever library did it: torch and safetensors report it in their own
# exception types, with the OS error only in the text.
_NO_ROOM = {errno_name: text for errno_name, text in (
    ("ENOSPC", "No space left on device"), ("EFBIG", "File too large"), ("EDQUOT", "Disk quota exceeded"))}


def _disk_full(err: BaseException) -> HfpipeError | None:
    """A run-directory error for an exception that comes from a full disk (or a file-size or quota limit), else
    None. Only the environment can fix it, so it gets the documented code rather than "internal error"."""
    import errno

    from hfpipe.errors import RunDirError

    codes = {getattr(errno, name) for name in _NO_ROOM if hasattr(errno, name)}
    seen: BaseException | None = err
    while seen is not None:
        text = str(seen)
        reason = next((t for t in _NO_ROOM.values() if t.lower() in text.lower()), None)
        if isinstance(seen, OSError) and seen.errno in codes:
            reason = seen.strerror or reason
        if reason:
            filename = getattr(seen, "filename", None) or _written_path(seen)
            return RunDirError(f"a file could not be written: {reason} (the disk is full, or a file-size or quota "
                               "limit was reached)", where=str(filename) if filename else None,
                               hint="free some space (or raise the limit), then continue the run with "
                                    "`hfpipe run RECIPE --run-dir RUN_DIR --resume`")
        seen = seen.__cause__ or seen.__context__
    return None


def _written_path(err: BaseException) -> str | None:
    """The file a failed write was writing, from the innermost call that names one (safetensors and torch give
    only the OS error's text). Only these argument names are read: locals can hold a token."""
    tb, found = err.__traceback__, None
    while tb is not None:
        for name in ("filename", "output_model_file", "output_file", "path", "save_directory"):
            value = tb.tb_frame.f_locals.get(name)
            if isinstance(value, (str, os.PathLike)):
                found = os.fspath(value)
                break
        tb = tb.tb_next
    return found


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    from hfpipe.errors import Interrupted

    raise Interrupted(signum)


def exit_code_of(app: typer.Typer, debug: bool) -> int:
    """Run the app; every way out of it (success, an hfpipe error, an interrupt, a usage error, a bug) becomes
    one message and the documented exit code, returned here and nowhere else."""
    import signal

    from hfpipe.errors import Interrupted

    # SIGTERM (what a CI runner or scheduler sends before killing) ends every command like Ctrl-C does, through
    # the same cleanup (lock released, manifest marked), with 143; training installs its own graceful handlers.
    try:
        previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    except ValueError:  # not the main thread (an embedding program's): signals are its business
        previous = None
    try:
        result = app(standalone_mode=False)
    except Interrupted as err:
        return _interrupted(err)
    except KeyboardInterrupt:
        return _interrupted(Interrupted(signal.SIGINT))
    except SystemExit as done:  # sys.exit / typer.Exit raised past Typer (a command's own, or --version)
        return _code_of(done.code)
    except HfpipeError as err:
        if debug:  # the traceback, then the same panel and documented exit code as without --debug
            import traceback

            traceback.print_exc()
        return _failed(err)
    except Exception as err:  # click's own usage errors arrive here in non-standalone mode
        return _unexpected(err, debug)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if isinstance(result, bool) or not isinstance(result, int):
        return 0  # a command's return value (None), never an exit code
    # The code of a typer.Exit, and Typer's answer to Ctrl-C (Exit(130), returned rather than raised).
    if result == 128 + signal.SIGINT:
        return _interrupted(Interrupted(signal.SIGINT))
    return result


def _code_of(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"), as Python itself does
    return 1


def _interrupted(err: BaseException) -> int:
    from hfpipe.errors import Interrupted

    code = err.exit_code if isinstance(err, Interrupted) else 130
    message = getattr(err, "message", None) or f"interrupted (exit {code})"
    from rich.markup import escape

    make_console(stderr=True).print(f"[yellow]{escape(message)}[/yellow]", soft_wrap=True)  # one line: a command
    record = HfpipeError(message)
    record.title, record.exit_code = "Interrupted", code
    record.status = "interrupted"  # type: ignore[attr-defined]
    print_error_record(record)
    return code


def _failed(err: HfpipeError) -> int:
    make_console(stderr=True).print(error_panel(err))
    if not err.reported:
        print_error_record(err)
    return err.exit_code


def _unexpected(err: Exception, debug: bool) -> int:
    full = _disk_full(err)
    if full is not None:
        if debug:
            import traceback

            traceback.print_exc()
        return _failed(full)
    usage_errors, aborts = _click_error_types()
    if isinstance(err, usage_errors):
        err.show()
        return int(getattr(err, "exit_code", 2))
    if isinstance(err, aborts):
        return _interrupted(err)
    if debug:
        import traceback

        traceback.print_exc()
    # Printed by every process: an unexpected failure (out of memory, a DDP error) often hits one process
    # only, and the launcher then stops the others, so the main process may not know why.
    rank = os.environ.get("RANK", "0")
    internal = HfpipeError(f"{type(err).__name__}: {err}", hint="rerun with --debug and report it")
    internal.title = "Internal error"
    print_error_record(internal)
    console = Console(stderr=True, highlight=False)
    console.print(Panel(
        Text(f"{type(err).__name__}: {err}\n\nThis is a bug in hfpipe (or an environment problem it does not "
             "recognise yet). Rerun with --debug for the traceback and please report it."),
        title=f"[red]Internal error[/red] (exit 1){f' on process {rank}' if rank != '0' else ''}",
        title_align="left", border_style="red", expand=False))
    return 1
