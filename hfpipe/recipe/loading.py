"""Recipe files → a validated `Recipe`: YAML with line numbers, `extends:`, `--set` overrides, all errors at once.

Relative paths in a recipe (data files, local tokenizer/model folders) are resolved against the folder of the
YAML file that wrote them, so a recipe runs the same from any working directory; paths given with `--set` are
resolved against the working directory, as a shell user expects.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hfpipe.errors import RecipeError
from hfpipe.recipe.schema import TRACKER_PACKAGES, Recipe

# Keys whose values are local paths when they exist; Hub ids stay as they are.
_FILE_KEYS = (("data", "files", "train"), ("data", "files", "validation"), ("data", "files", "test"),
              ("distributed", "accelerate_config"))
_MAYBE_PATH_KEYS = (("tokenizer", "from"), ("model", "pretrained"), ("model", "encoder"), ("model", "decoder"),
                    ("gates", "baseline"))
_MAX_EXTENDS_DEPTH = 10
# Far above any real recipe (the shipped ones have ~100 values, ~5 levels, ~2 KB); they bound what a hostile file
# (an alias bomb, a device, a data file passed as the recipe) can make the loader do.
_MAX_RECIPE_VALUES = 20_000
_MAX_RECIPE_DEPTH = 64
_MAX_RECIPE_BYTES = 1 << 20


@dataclass(frozen=True)
class Issue:
    """One problem in a recipe, located by its YAML path (and file:line where known)."""

    path: str
    message: str
    location: str | None = None

    def __str__(self) -> str:
        where = f" ({self.location})" if self.location else ""
        return f"{self.path or '<recipe>'}{where}: {self.message}"


@dataclass
class LoadedRecipe:
    recipe: Recipe
    path: Path
    raw: dict[str, Any]
    lines: dict[tuple[str, ...], str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.recipe.name or self.path.stem


# --------------------------------------------------------------------------------------------- YAML with lines
class _LineLoader(yaml.SafeLoader):
    """A safe loader that reads 3e-4 as a float (YAML 1.1 reads it as a string)."""


_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$|^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"""),
    list("-+0123456789."),
)
# YAML 1.1 also reads yes/no/on/off as booleans, so `source_lang: no` (Norwegian) became False. Only true/false
# are booleans here (as in YAML 1.2); pydantic still accepts "yes"/"no"/"on"/"off" for boolean fields.
for _first in list("yYnNoOtTfF"):
    _LineLoader.yaml_implicit_resolvers[_first] = [
        (tag, regexp) for tag, regexp in _LineLoader.yaml_implicit_resolvers.get(_first, [])
        if tag != "tag:yaml.org,2002:bool"]
_LineLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))


def _read_text(path: Path) -> str:
    try:
        if path.exists() and not path.is_file():
            # A folder, a FIFO or a device such as /dev/zero: reading one would fail or never end.
            raise RecipeError(f"the recipe is not a regular file: {path}", where=str(path),
                              hint="give the path of a .yaml recipe file")
        size = path.stat().st_size
        if size > _MAX_RECIPE_BYTES:
            raise RecipeError(f"the recipe is {size:,} bytes; a recipe is a few KB (at most "
                              f"{_MAX_RECIPE_BYTES:,} bytes are read)", where=str(path),
                              hint="is this the right file? data goes in data.files, not in the recipe")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}", hint="check the path; `hfpipe recipes` lists the "
                          "shipped recipes") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:  # ValueError: a NUL byte in the path
        raise RecipeError(f"cannot read recipe {path}: {err}", where=str(path)) from None


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse documents whose anchors and aliases expand to a huge or endless tree ("billion laughs", an alias
    inside its own anchor), before anything walks, validates or hashes the expanded values."""
    count = 0
    stack: list[tuple[yaml.Node, int, frozenset[int]]] = [(root, 0, frozenset())]
    while stack:
        node, depth, ancestors = stack.pop()
        count += 1
        line = f"{path}:{node.start_mark.line + 1}"
        if id(node) in ancestors:
            raise RecipeError("the recipe refers to itself: an alias (*name) inside the anchor (&name) it names",
                              where=line, hint="remove the alias, or point it at another anchor")
        if count > _MAX_RECIPE_VALUES:
            raise RecipeError(f"the recipe expands to more than {_MAX_RECIPE_VALUES:,} values (anchors and aliases "
                              "that repeat each other, a \"billion laughs\")", where=line,
                              hint="write the values out, or use `extends:` to share settings between recipes")
        if depth > _MAX_RECIPE_DEPTH:
            raise RecipeError(f"the recipe is nested more than {_MAX_RECIPE_DEPTH} levels deep", where=line,
                              hint="check the brackets and indentation around that line")
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            continue
        inner = ancestors | {id(node)}
        stack.extend((child, depth + 1, inner) for child in children)


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    text = _read_text(path)
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        if node is not None:
            _check_expansion(node, path)
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.reader.ReaderError as err:  # a character YAML does not allow (a NUL byte, a control character)
        line = text.count("\n", 0, err.position) + 1
        raise RecipeError(f"the recipe is not valid YAML: character {err.character!r} is not allowed in YAML text",
                          where=f"{path}:{line}", hint="the file is binary or corrupted there: remove that "
                                                       "character") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise RecipeError(f"the recipe is not valid YAML: {problem}", where=where,
                          hint="check indentation and quoting around that line") from None
    except RecursionError:  # PyYAML composes nested brackets recursively
        raise RecipeError(f"the recipe is nested too deeply to read (more than {_MAX_RECIPE_DEPTH} levels)",
                          where=str(path), hint="check for unbalanced [ or { brackets") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe must be a mapping of sections (task, data, model, ...), got {type(data).__name__}",
                          where=str(path))
    lines: dict[tuple[str, ...], str] = {}
    duplicates: list[str] = []

    def walk(n: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in n.value:
                key = (*prefix, str(key_node.value))
                if key[-1] in seen and key[-1] != "<<":  # YAML keeps the last one silently
                    duplicates.append(f"{'.'.join(key)} ({path}:{key_node.start_mark.line + 1}) is given again; "
                                      f"first at {lines[key]}")
                seen.add(key[-1])
                lines[key] = f"{path}:{key_node.start_mark.line + 1}"
                walk(value_node, key)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                key = (*prefix, str(i))
                lines[key] = f"{path}:{item.start_mark.line + 1}"
                walk(item, key)

    if node is not None:
        walk(node, ())
    if duplicates:
        raise RecipeError(f"duplicate key{'s' if len(duplicates) > 1 else ''} in recipe {path}", details=duplicates,
                          hint="YAML would silently keep only the last one: merge them into one")
    return data, lines


def _get(d: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _set(d: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for k in keys[:-1]:
        nxt = d.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            d[k] = nxt
        d = nxt
    d[keys[-1]] = value


def _expanduser(value: str) -> Path:
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~name of a user this machine does not know: keep it literal (then "file not found")
        return Path(value)


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve())
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop: the file checks report it later
        return str(path)


def _resolved_file(value: Any, base: Path | None) -> Any:
    """A file key's value with `~` expanded and, given `base`, relative paths resolved against it; a list (a split
    in several files) entry by entry; anything else is left for the schema to reject."""
    if isinstance(value, list):
        return [_resolved_file(v, base) for v in value]
    if not isinstance(value, str) or not value:  # "" stays "", for the schema to name
        return value
    if base is not None and not _expanduser(value).is_absolute():
        return _resolved(base / value)
    return str(_expanduser(value)) if base is not None else _resolved(_expanduser(value))


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for keys in _FILE_KEYS:
        value = _get(data, keys)
        if isinstance(value, (str, list)):
            _set(data, keys, _resolved_file(value, base))
    for keys in _MAYBE_PATH_KEYS:
        value = _get(data, keys)
        if isinstance(value, str) and value:
            _set(data, keys, _maybe_path(value, base))
    extra = _get(data, ("evaluate", "extra_metrics"))
    if isinstance(extra, list):
        _set(data, ("evaluate", "extra_metrics"), [_maybe_path(v, base) if isinstance(v, str) and v else v
                                                   for v in extra])


def _maybe_path(value: str, base: Path) -> str:
    """A local path (resolved against `base`) when it looks like one or exists; else the value (a Hub id)."""
    candidate = _expanduser(value)
    candidate = candidate if candidate.is_absolute() else base / candidate
    if value.startswith((".", "/", "~")) or candidate.exists():
        return _resolved(candidate)
    return value


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` wins key by key; `key: null` over a mapping drops that mapping (back to its defaults), so a recipe
    can say "no tokenizer.train" or "no model.config" where the parent had one."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None and isinstance(out.get(k), dict):
            del out[k]
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _drop_other_model(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """A child recipe that names another model (a different `architecture` or `pretrained`) replaces the parent's
    whole `model` section: the parent's size overrides belong to the parent's architecture."""
    parent_model, child_model = base.get("model"), child.get("model")
    if not isinstance(parent_model, dict) or not isinstance(child_model, dict):
        return base
    for key in ("architecture", "pretrained"):
        if key in child_model and child_model[key] is not None and child_model[key] != parent_model.get(key):
            return {k: v for k, v in base.items() if k != "model"}
    return base


def _load_with_extends(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    path = path.resolve()
    if path in chain:
        cycle = " → ".join(p.name for p in (*chain, path))
        raise RecipeError(f"`extends` forms a cycle: {cycle}", where=str(path))
    if len(chain) >= _MAX_EXTENDS_DEPTH:
        raise RecipeError(f"`extends` is nested more than {_MAX_EXTENDS_DEPTH} levels deep", where=str(path))
    data, lines = _read_yaml(path)
    _resolve_paths(data, path.parent)
    parent = data.pop("extends", None)
    if parent is None:
        return data, lines
    if not isinstance(parent, str):
        raise RecipeError("`extends` must be a path to another recipe", where=lines.get(("extends",), str(path)))
    parent_path = _expanduser(parent)
    if not parent_path.is_absolute():
        parent_path = path.parent / parent_path
    if not parent_path.exists():
        raise RecipeError(f"`extends` names a recipe that does not exist: {parent}",
                          where=lines.get(("extends",), str(path)),
                          hint="paths in `extends` are relative to the recipe that writes them")
    base, base_lines = _load_with_extends(parent_path, (*chain, path))
    base = _drop_other_model(base, data)
    return _deep_merge(base, data), {**base_lines, **lines}


# --------------------------------------------------------------------------------------------- --set overrides
def apply_overrides(data: dict[str, Any], overrides: list[str], lines: dict[tuple[str, ...], str]) -> list[Issue]:
    """Apply `key.path=value` overrides in place; the value is parsed as YAML (so 3e-4, true, [1, 2] work)."""
    issues: list[Issue] = []
    for item in overrides:
        if "=" not in item:
            issues.append(Issue("--set", f"expected KEY.PATH=VALUE, got {item!r}"))
            continue
        key, _, raw_value = item.partition("=")
        keys = tuple(k for k in key.strip().split(".") if k)
        if not keys:
            issues.append(Issue("--set", f"empty key in {item!r}"))
            continue
        try:
            node = yaml.compose(raw_value, Loader=_LineLoader) if raw_value.strip() else None
            if node is not None:
                _check_expansion(node, Path(f"--set {item}"))
            value = yaml.load(raw_value, Loader=_LineLoader) if raw_value.strip() else None  # noqa: S506
        except yaml.YAMLError:
            value = raw_value
        except RecipeError as err:  # an alias bomb or a value that contains itself
            issues.append(Issue(".".join(keys), err.message, f"--set {item}"))
            continue
        except RecursionError:
            issues.append(Issue(".".join(keys), f"the value is nested more than {_MAX_RECIPE_DEPTH} levels deep",
                                f"--set {item}"))
            continue
        if keys in _FILE_KEYS:
            value = _resolved_file(value, None)
        if keys in _MAYBE_PATH_KEYS and isinstance(value, str) and _expanduser(value).exists():
            value = _resolved(_expanduser(value))
        for n in range(1, len(keys)):  # a value the override replaces with a mapping: the error is the override's
            if not isinstance(_get(data, keys[:n]), dict):
                lines[keys[:n]] = f"--set {item}"
        _set(data, keys, value)
        for stale in [k for k in lines if len(k) > len(keys) and k[:len(keys)] == keys]:
            del lines[stale]  # the file's lines of what the override replaced
        lines[keys] = f"--set {item}"
    return issues


# --------------------------------------------------------------------------------------------- errors
def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The field names (aliases where set) of the sub-model at `loc`, for a "did you mean"."""
    import typing

    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        f = None
        for name, info in current.model_fields.items():
            if part in (name, info.alias):
                f = info
                break
        if f is None:
            return None
        ann = f.annotation
        sub = None
        for cand in (ann, *typing.get_args(ann)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                sub = cand
                break
        current = sub
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return None


def _issues_from_validation(err: ValidationError, lines: dict[tuple[str, ...], str]) -> list[Issue]:
    issues = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        path = ".".join(loc)
        kind = e["type"]
        location = None
        for n in range(len(loc), 0, -1):
            if loc[:n] in lines:
                location = lines[loc[:n]]
                break
        if kind == "extra_forbidden":
            known = _fields_at(Recipe, tuple(e["loc"][:-1])) or []
            close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
            msg = f"unknown key {loc[-1]!r}"
            msg += f"; did you mean {close[0]!r}?" if close else (f"; valid keys: {', '.join(known)}" if known else "")
        elif kind == "missing":
            msg = "required key is missing"
        elif kind in ("value_error", "assertion_error"):
            msg = str(e["msg"]).removeprefix("Value error, ")
        else:
            given = e.get("input")
            shown = repr(given) if not isinstance(given, (dict, list)) else type(given).__name__
            msg = f"{e['msg']} (got {shown})"
        issues.append(Issue(path, msg, location))
    return issues


def cross_check(recipe: Recipe) -> list[Issue]:
    """Checks across sections, each naming the keys involved."""
    from hfpipe.tasks.metrics import check_metric_name

    issues = []
    d = recipe.data
    if recipe.task == "translation" and d.source_column is None and not (d.source_lang and d.target_lang):
        issues.append(Issue("data.source_lang", "translation needs data.source_lang and data.target_lang (the keys "
                                                "of the translation column), or data.source_column and "
                                                "data.target_column (two flat columns)"))
    m = recipe.model
    if m.pretrained is None and m.architecture != "encoder-decoder" and recipe.tokenizer.from_ is None \
            and recipe.tokenizer.train is None:
        issues.append(Issue("tokenizer", "a model built from a config needs a tokenizer: tokenizer.train (train one "
                                         "on the data) or tokenizer.from (a folder or Hub id)"))
    if recipe.train.metric_for_best is not None:
        problem = check_metric_name(recipe.task, recipe.train.metric_for_best)
        if problem:
            issues.append(Issue("train.metric_for_best", problem))
    for name in recipe.evaluate.fail_below:
        problem = check_metric_name(recipe.task, name)
        if problem:
            issues.append(Issue(f"evaluate.fail_below.{name}", problem))
    issues.extend(_gate_issues(recipe))
    for tracker in recipe.train.report_to:
        if not any(importlib.util.find_spec(p) for p in TRACKER_PACKAGES[tracker]):
            issues.append(Issue("train.report_to", f"{tracker} is not installed: pip install "
                                                   f"{TRACKER_PACKAGES[tracker][0]}"))
    for i, metric in enumerate(recipe.evaluate.extra_metrics):
        if metric.startswith((".", "/", "~")) and not Path(metric).exists():
            issues.append(Issue(f"evaluate.extra_metrics[{i}]", f"no metric script at {metric}"))
    if recipe.distributed is not None and recipe.distributed.accelerate_config:
        problem = accelerate_config_problem(Path(recipe.distributed.accelerate_config))
        if problem:
            issues.append(Issue("distributed.accelerate_config", problem))
    return issues


def _gate_issues(recipe: Recipe) -> list[Issue]:
    from hfpipe.errors import RecipeError as GateSyntaxError
    from hfpipe.recipe.gates import TESTABLE, parse_gate

    g = recipe.gates
    if g is None:
        return []
    issues, parsed = [], []
    for i, text in enumerate(g.checks):
        try:
            parsed.append(parse_gate(text, recipe.task))
        except GateSyntaxError as err:
            issues.append(Issue(f"gates.checks[{i}]", f"{err.message}; {err.hint}" if err.hint else err.message))
    if g.split is not None and g.split not in recipe.evaluate.splits:
        issues.append(Issue("gates.split", f"the gates read the {g.split} split, which evaluate.splits "
                                           f"({', '.join(recipe.evaluate.splits)}) does not evaluate"))
    relative = [gate for gate in parsed if gate.needs_baseline]
    if relative and not g.baseline:
        issues.append(Issue("gates.baseline", f"{relative[0].text!r} compares with a baseline, and none is given: "
                                              "set gates.baseline (a run directory or hub:NAMESPACE/NAME) or pass "
                                              "--baseline"))
    if g.significance is not None:
        for gate in relative:
            if gate.metric not in TESTABLE:
                issues.append(Issue("gates.significance", f"no significance test for {gate.metric!r} (gate "
                                                          f"{gate.text!r}); testable: {', '.join(TESTABLE)}"))
        if g.baseline_from_card:
            issues.append(Issue("gates.significance", "a significance test needs the baseline's predictions, and "
                                                      "gates.baseline_from_card gives only its card's numbers"))
    if g.baseline_from_card and not (g.baseline or "").startswith("hub:"):
        issues.append(Issue("gates.baseline_from_card", "only a Hub baseline (hub:NAMESPACE/NAME) has a model card"))
    return issues


def accelerate_config_problem(path: Path) -> str | None:
    """What is wrong with an accelerate config file for hfpipe (unreadable, or a sharded setup), or None."""
    from hfpipe.recipe.schema import UNSHARDED_ONLY

    try:
        if path.exists() and not path.is_file():
            return f"{path} is not a regular file"
        text = path.read_text(encoding="utf-8")
        config = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        return f"file not found: {path}"
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        return f"cannot read {path} as an accelerate config (YAML or JSON): {err}"
    if not isinstance(config, dict):
        return f"{path} is not an accelerate config (expected a mapping of settings)"
    kind = str(config.get("distributed_type", "")).upper()
    if kind in ("FSDP", "DEEPSPEED", "MEGATRON_LM") or config.get("fsdp_config") or config.get("deepspeed_config"):
        return f"{path} sets up {kind or 'sharded training'}. {UNSHARDED_ONLY}"
    return None


def _missing_data_files(data: dict[str, Any], lines: dict[tuple[str, ...], str]) -> list[Issue]:
    issues = []
    for keys in _FILE_KEYS:
        value = _get(data, keys)
        for k, name in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(name, str) and name and not Path(name).is_file():
                where = keys if not isinstance(value, list) else (*keys, str(k))
                issues.append(Issue(".".join(where), f"file not found: {name}", lines.get(where) or lines.get(keys)))
    return issues


def raise_issues(issues: list[Issue], path: Path) -> None:
    if issues:
        n = len(issues)
        raise RecipeError(f"{n} problem{'s' if n > 1 else ''} in recipe {path}", details=[str(i) for i in issues],
                          hint="fix the keys above; `hfpipe schema` prints every key with its type and default")


def load_recipe(path: str | Path, overrides: list[str] | None = None, *, gates: list[str] | None = None,
                baseline: str | None = None, significance: float | None = None) -> LoadedRecipe:
    """Read, merge, override and validate a recipe; raise one RecipeError listing every problem.

    `gates` (--gate) are added to the recipe's gates.checks; `baseline` (--baseline) and `significance`
    (--significance) replace gates.baseline and gates.significance."""
    path = Path(path).expanduser()
    data, lines = _load_with_extends(path)
    issues = apply_overrides(data, list(overrides or []), lines)
    if gates or baseline or significance is not None:
        section = data.get("gates") if isinstance(data.get("gates"), dict) else {}
        data["gates"] = section
        if gates:
            checks = section.get("checks") if isinstance(section.get("checks"), list) else []
            section["checks"] = [*checks, *gates]
            for i in range(len(checks), len(section["checks"])):
                lines[("gates", "checks", str(i))] = f"--gate {section['checks'][i]}"
        if baseline:
            section["baseline"] = _resolved(_expanduser(baseline)) if not baseline.startswith("hub:") else baseline
            lines[("gates", "baseline")] = f"--baseline {baseline}"
        if significance is not None:
            section["significance"] = significance
            lines[("gates", "significance")] = f"--significance {significance}"
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        issues.extend(_issues_from_validation(err, lines))
        # The data checks that need a valid recipe come later (preflight); a missing file is worth saying now, so
        # that fixing the keys does not reveal one more problem.
        issues.extend(_missing_data_files(data, lines))
        raise_issues(issues, path)
        raise  # unreachable: raise_issues raised
    issues.extend(cross_check(recipe))
    raise_issues(issues, path)
    return LoadedRecipe(recipe=recipe, path=path.resolve(), raw=data, lines=lines)


def recipe_to_yaml(recipe: Recipe) -> str:
    """The fully resolved recipe, as written to the run directory."""
    data = recipe.model_dump(mode="json", by_alias=True, exclude_none=False)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
