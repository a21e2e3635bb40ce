"""hfpipe's cache of derived data (examples read into Arrow, trained tokenizers, tokenized splits), keyed
by a fingerprint of the inputs.

Entries are renamed into place whole (hfpipe.runs.files.atomic_copytree), so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from hfpipe.errors import RunDirError

__all__ = ["cache_error", "cache_root", "fingerprint"]


def cache_root() -> Path:
    return Path(os.environ.get("HFPIPE_CACHE", Path.home() / ".cache" / "hfpipe")).expanduser()


def cache_error(err: OSError, where: Path) -> RunDirError:
    """The cache could not be written (not writable, a file in the way, the disk full): say where and how to move
    it. Nothing half-written is left under its final name: entries are renamed into place whole."""
    return RunDirError(f"cannot write the hfpipe cache: {err.strerror or err}", where=str(err.filename or where),
                       hint=f"free space there, or point HFPIPE_CACHE at a writable folder (now {cache_root()})")


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]
