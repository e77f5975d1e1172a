"""The type of every loop setting, checked before any work and before config.json is written.

A wrongly typed setting (``iterations = "twenty"``, ``seeds = 0.5``, ``lr = "fast"`` in
``train_options``) is one line naming the setting; ``*_options`` tables may hold only
options of the function they reach, with values of their defaults' types.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from ..errors import AlsegError

# The type of every setting, checked before any work (and before config.json is written):
# int (with a minimum), number, bool, str, table, or list-like (a list or "a,b,c").
SCHEMA: Dict[str, tuple] = {
    "dataset": ("str",), "methods": ("list",), "budgets": ("list",), "first_budget": ("number?", 0), "pixels_size": ("int?", 1), "seeds": ("list",),
    "models_per_round": ("int", 1), "ensemble_models": ("int", 2), "supervision": ("str",), "model": ("str?",), "encoder": ("str?",), "pretrain": ("bool",),
    "reuse_encoders": ("list",), "reuse_models": ("list",), "pretrain_epochs": ("int", 1), "pretrain_options": ("table",), "train_options": ("table",),
    "select_options": ("table",), "iterations": ("int?", 1), "iterations_per_percent": ("number", 0),
    "min_iterations": ("int", 0), "max_iterations": ("int?", 1), "base_channels": ("int", 1),
    "batch_size": ("int", 1), "device": ("str",), "preset": ("str?",), "jobs": ("int", 1),
    "threads": ("int?", 1), "eval_split": ("str",), "method_embeddings": ("table",), "variants": ("table",), "unit": ("str",),
    "executor": ("str",), "ray_address": ("str?",), "cpus_per_task": ("number", 0),
    "gpus_per_train": ("number", 0), "gpus_per_pretrain": ("number", 0), "gpus_per_select": ("number", 0),
    "gpus_per_evaluate": ("number", 0), "propagation_options": ("table",), "semi_options": ("table",),
    "human": ("bool",), "warm_start": ("bool",),
}
# What each *_options table may hold: the keywords of the function it is passed to, less
# those the loop itself sets; select's are the fields of SelectOptions.
_COMMON = {"dataset", "out", "seed", "device", "force", "progress", "resume", "args"}
OPTION_TARGETS = {
    "train_options": ("alseg_cli.segmentation.train", "train_seg",
                      _COMMON | {"labels", "model", "supervision", "iterations", "ensemble", "base_channels",
                                 "batch_size", "init"}),
    "pretrain_options": ("alseg_cli.encoders.pretrain", "pretrain", _COMMON | {"epochs"}),
}


def _option_defaults(key: str) -> Dict[str, Any]:
    """{option: default} a *_options table may set."""
    if key == "propagation_options":
        from ..acquisition.propagate import DEFAULTS
        return dict(DEFAULTS)
    if key == "semi_options":
        from ..segmentation.semi import DEFAULTS
        return dict(DEFAULTS)
    if key == "select_options":
        from dataclasses import fields

        from ..acquisition.options import SelectOptions
        return {f.name: f.default for f in fields(SelectOptions)}
    import inspect
    from importlib import import_module

    module, name, loop_set = OPTION_TARGETS[key]
    params = inspect.signature(getattr(import_module(module), name)).parameters
    return {k: _typed_default(p) for k, p in params.items()
            if k not in loop_set and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _typed_default(param):
    """A parameter's default; for ``Optional[float] = None`` (a default resolved later, as the
    network's own learning rate) a value of the annotated type, so the type is still checked."""
    if param.default is not None:
        return param.default
    note = str(param.annotation).replace("Optional[", "").rstrip("]")
    return {"float": 0.0, "str": ""}.get(note)


def _show(value) -> str:
    return f'"{value}"' if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) \
        else str(value)


def _whole(value, key: str):
    """An int from an int, an integral float (YAML 300.0) or digits; else a one-line error."""
    if isinstance(value, bool):
        raise AlsegError(f"setting {key} = {_show(value)}: not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    what = "not a whole number" if is_number(value) else "not a number"
    raise AlsegError(f"setting {key} = {_show(value)}: {what}")


def is_number(value) -> bool:
    try:
        float(value)
        return not isinstance(value, bool)
    except (TypeError, ValueError):
        return False


def check_types(cfg: Dict[str, Any]) -> None:
    """Every setting has the type its SCHEMA entry says; normalises ints in place."""
    for key, (kind, *bound) in SCHEMA.items():
        value = cfg.get(key)
        if value is None and (kind.endswith("?") or key in ("dataset",)):
            continue
        base = kind.rstrip("?")
        if base == "int":
            value = cfg[key] = _whole(value, key)
        elif base == "number":
            if not is_number(value) or isinstance(value, str):
                raise AlsegError(f"setting {key} = {_show(value)}: not a number")
            value = cfg[key] = float(value)
        elif base == "bool" and not isinstance(value, bool):
            raise AlsegError(f"setting {key} = {_show(value)}: not true or false")
        elif base == "str" and not isinstance(value, (str, Path)):
            raise AlsegError(f"setting {key} = {_show(value)}: not a string")
        elif base == "table" and not isinstance(value, dict):
            raise AlsegError(f"setting {key} = {_show(value)}: not a table of settings")
        elif base == "list" and not isinstance(value, (list, tuple, str, int, float)):
            raise AlsegError(f"setting {key} = {_show(value)}: not a list")
        if bound and base in ("int", "number") and value < bound[0]:
            raise AlsegError(f"setting {key} = {_show(value)}: must be at least {bound[0]}")
    for key in ("train_options", "select_options", "pretrain_options", "propagation_options", "semi_options"):
        _check_options(key, cfg.get(key) or {})


def _check_options(key: str, options: Dict[str, Any]) -> None:
    """Keys must be options of what the table reaches, with values of their defaults' types."""
    if not options:
        return
    defaults = _option_defaults(key)
    for opt, value in options.items():
        if opt not in defaults:
            raise AlsegError(f"setting {key}.{opt}: not an option the loop can pass on "
                             f"(known: {', '.join(sorted(defaults))})")
        default = defaults[opt]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise AlsegError(f"setting {key}.{opt} = {_show(value)}: not true or false")
        elif isinstance(default, int):
            _whole(value, f"{key}.{opt}")
        elif isinstance(default, float) and (not is_number(value) or isinstance(value, str)):
            raise AlsegError(f"setting {key}.{opt} = {_show(value)}: not a number")
