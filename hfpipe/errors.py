"""The hfpipe error hierarchy.

Library code raises these; only `hfpipe.cli` turns them into a message and an exit code. Each error carries
what went wrong, where (a file, a YAML path, a column) and how to fix it, so the CLI can print one clear panel
instead of a traceback.

Exit codes (documented in the README):
    0  success
    1  internal error (a bug in hfpipe: please report it, `--debug` shows the traceback)
    2  recipe or command-line error (schema, unknown key, bad override)
    3  data error (missing file, missing column, empty split, unreadable format)
    4  Hugging Face Hub error (no token, auth, repo not found, network)
    5  model or tokenizer error (cannot load/build, incompatible sizes)
    6  training error (loss became NaN/inf, out of memory)
    7  run-directory error (not a run, missing artifact, resume mismatch)
    8  metric gate failed (a gate in `gates:` / `--gate`, or `evaluate.fail_below`)
    9  could not compare with the baseline (none given, not found, unreadable, or not scorable the same way)
  130  interrupted by SIGINT (Ctrl-C); training saved a checkpoint first unless interrupted twice
  143  interrupted by SIGTERM (a CI runner or scheduler stopping the job); the same
"""

from __future__ import annotations


class HfpipeError(Exception):
    """Base class: a problem hfpipe can explain to the user."""

    exit_code: int = 1
    title: str = "hfpipe error"

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None,
                 details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint
        self.details = list(details or [])
        self.reported = False  # True once a `--json` record has said it (the CLI then prints no error record)

    def __str__(self) -> str:
        parts = [self.message]
        if self.where:
            parts.append(f"where: {self.where}")
        parts.extend(f"  - {d}" for d in self.details)
        if self.hint:
            parts.append(f"fix: {self.hint}")
        return "\n".join(parts)


class RecipeError(HfpipeError):
    exit_code = 2
    title = "Recipe error"


class DataError(HfpipeError):
    exit_code = 3
    title = "Data error"


class HubError(HfpipeError):
    exit_code = 4
    title = "Hugging Face Hub error"


class ModelError(HfpipeError):
    exit_code = 5
    title = "Model error"


class TrainingError(HfpipeError):
    exit_code = 6
    title = "Training error"


class RunDirError(HfpipeError):
    exit_code = 7
    title = "Run directory error"


class MetricGateError(HfpipeError):
    exit_code = 8
    title = "Metric gate failed"


class BaselineError(HfpipeError):
    """A gate needs the baseline and it could not be scored: never a pass."""

    exit_code = 9
    title = "Could not compare with the baseline"


class Interrupted(BaseException):
    """A run stopped by a signal: exit 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).

    A BaseException like KeyboardInterrupt, not an HfpipeError: library code that catches Exception must never
    swallow it, and Typer (which turns a KeyboardInterrupt into a bare exit 130) lets it through to the CLI.
    `message` is the one line the CLI prints (what was saved and the command that resumes)."""

    def __init__(self, signum: int = 2, message: str | None = None) -> None:
        super().__init__(message or "interrupted")
        self.signum = signum
        self.message = message

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
