"""Loop configuration: flags and/or a TOML/YAML file, presets, budget schedule.

Precedence: explicit flags > config file > preset > defaults. The resolved config is
written to RUN_DIR/config.json; a rerun into the same RUN_DIR must agree with it on every
setting that changes results (methods and seeds may grow: chains are independent).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..acquisition.budget import Budget
from ..errors import AlsegError
from .settings import check_types, is_number

# Presets fill what the user did not set. Iterations follow the reference protocol's
# "60,000 x cumulative fraction" (= 600 per percent), scaled down for the quick preset.
# Quick: 300 iterations per round up to 10 %, a 16-channel UNet at 128 px; with SGD, 8
# channels or lr 0.01 (the paper's, for 60,000 x fraction iterations) still predicted
# background only after 150-300 iterations; the preset's recipe is below.
OPTION_TABLES = ("train_options", "select_options", "pretrain_options", "propagation_options", "semi_options")

PRESETS: Dict[str, Dict[str, Any]] = {
    "quick": {
        "budgets": [2, 3, 4, 5, 10], "seeds": [0, 1, 2], "models_per_round": 1, "ensemble_models": 2,
        "iterations_per_percent": 30, "min_iterations": 300, "max_iterations": 1500,
        "base_channels": 16, "batch_size": 6, "pretrain_epochs": 5,
        # AdamW at lr 1e-3, class-balanced CE, validation every 100 iterations and retries of
        # degenerate models: chosen on validation Dice with benchmarks/bench_stability.py --acdc
        # at the CPU of the rounds before it (README, "Round models that learn")
        "train_options": {"optimizer": "adamw", "lr": 0.001, "class_weights": "balanced", "val_every": 100,
                          "retries": 2},
        # each round's model starts from the previous round's: chosen on ACDC validation Dice with
        # benchmarks/bench_stability.py --acdc-chain at the same CPU per round (README)
        "warm_start": True,
        "select_options": {"mc_samples": 10},
        # ARCO (+arco) with 2 unlabelled slices per step: 1.86x a plain round's CPU per iteration
        # on ACDC 128 px (6: 3.06x; benchmarks/bench_related.py), under stochastic-batches' 2 models
        "semi_options": {"unlabelled_batch": 2},
    },
    "paper": {
        "pixels_size": None,    # the pixel Coreset baseline on the whole working-size image
        "budgets": [2, 3, 4, 5, 10, 15, 20, 40], "seeds": [0, 1, 2, 3, 4], "models_per_round": 5,
        "first_budget": 1,      # the reference code's start: 1 % with the method, then "2 %" adds 1 %
        "iterations_per_percent": 600, "min_iterations": 0, "max_iterations": None,
        "base_channels": 16, "batch_size": 6, "pretrain_epochs": 100,
        "select_options": {"mc_samples": 40},
    },
}

DEFAULTS: Dict[str, Any] = {
    "dataset": None, "methods": ["random"], "budgets": [2, 3, 4, 5, 10], "first_budget": None, "seeds": [0],
    "pixels_size": 32, "variants": {}, "unit": "slice",
    "models_per_round": 1, "ensemble_models": 3, "supervision": "full", "model": None, "encoder": None, "pretrain": False,
    "reuse_encoders": [], "reuse_models": [], "pretrain_epochs": 5, "pretrain_options": {}, "train_options": {}, "select_options": {},
    "iterations": None, "iterations_per_percent": 60, "min_iterations": 150,
    "max_iterations": 1500, "base_channels": 8, "batch_size": 6, "device": "auto",
    "preset": None, "jobs": 1, "threads": None, "eval_split": "test", "method_embeddings": {},
    "executor": "local", "ray_address": None, "cpus_per_task": 1.0, "gpus_per_train": 0.0,
    "gpus_per_pretrain": 0.0, "gpus_per_select": 0.0, "gpus_per_evaluate": 0.0,
    "propagation_options": {}, "semi_options": {}, "human": False,
    # each round's model starts from the previous round's (train-seg --init); rounds from scratch
    # are the paper's protocol
    "warm_start": False,
}

# Settings that may change between a run and its resume without changing any result.
# (threads may change CPU float rounding, never selections of seeded non-model methods.)
# (reuse_encoders and reuse_models only link encoders and models trained with the same settings.)
FREE_KEYS = {"methods", "seeds", "jobs", "device", "preset", "threads", "executor", "ray_address", "reuse_encoders",
             "reuse_models",
             "cpus_per_task", "gpus_per_train", "gpus_per_pretrain", "gpus_per_select", "gpus_per_evaluate"}


def parse_list(value, cast=float, name: str = "value", percent: bool = False) -> List:
    """'2,3,4' or [2, 3] -> [2.0, 3.0]; with ``percent``, '2%,3%' too."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out = []
    for item in items:
        text = str(item).strip()
        if percent:
            text = text.rstrip("%")
        if not text:
            continue
        try:
            if cast is int and is_number(text) and not float(text).is_integer():
                raise AlsegError(f"--{name}: {text} is not a whole number (write e.g. 0,1,2)")
            out.append(cast(float(text)) if cast is int and is_number(text) else cast(text))
        except ValueError:
            raise AlsegError(f"--{name}: {text} is not a number (write e.g. 2,3,4)") from None
    return out


def parse_budgets(value) -> List[float]:
    budgets = parse_list(value, float, "budgets", percent=True)
    if not budgets:
        raise AlsegError("--budgets is empty; give cumulative percentages, e.g. 2,3,4,5,10")
    if any(b <= 0 or b > 100 for b in budgets):
        raise AlsegError(f"--budgets {budgets}: each must be a percentage in (0, 100]")
    if any(b2 <= b1 for b1, b2 in zip(budgets, budgets[1:])):
        raise AlsegError(f"--budgets {budgets}: cumulative budgets must strictly increase")
    return budgets


def round_budgets(cfg: Dict[str, Any]) -> List[Budget]:
    """The schedule as Budget values ('2%', '2.5%', ...), exact, parsed once."""
    return [Budget.percent(p) for p in cfg["budgets"]]


def round_name(budget) -> str:
    """round2, round2.5, round10: the percentage itself (a Budget or a number), exactly."""
    b = budget if isinstance(budget, Budget) else Budget.percent(budget)
    return f"round{b.percent_text}"


def iterations_for(cfg: Dict[str, Any], pct: float) -> int:
    """Training iterations at a cumulative budget (fixed, or per-percent within bounds)."""
    if cfg.get("iterations"):
        return int(cfg["iterations"])
    its = math.ceil(cfg["iterations_per_percent"] * pct)
    its = max(its, int(cfg.get("min_iterations") or 0))
    if cfg.get("max_iterations"):
        its = min(its, int(cfg["max_iterations"]))
    return max(1, its)


def load_config_file(path) -> Dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config; a top-level [loop] table is accepted."""
    path = Path(path)
    if not path.exists():
        raise AlsegError(f"{path}: config file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:    # Python 3.10: the same parser, as a package
                import tomli as tomllib
            data = tomllib.loads(path.read_text())
        elif suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(path.read_text()) or {}
        elif suffix == ".json":
            data = json.loads(path.read_text())
        else:
            raise AlsegError(f"{path}: unknown config format; use .toml, .yaml/.yml or .json")
    except AlsegError:
        raise
    except Exception as exc:  # parser errors: one line naming the file
        raise AlsegError(f"{path}: cannot parse config ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise AlsegError(f"{path}: config must be a table/mapping of settings")
    if isinstance(data.get("loop"), dict):
        data = data["loop"]
    return {k.replace("-", "_"): v for k, v in data.items()}


def encoder_for(template: str, seed: int) -> str:
    """--encoder DIR for every seed, or a template such as runs/x/encoders/seed{seed}."""
    return template.replace("{seed}", str(seed))


def resolve_config(options: Dict[str, Any], config_file: Optional[str] = None) -> Dict[str, Any]:
    """Merge defaults, preset, file and explicit options (None means 'not given'); the
    ``*_options`` tables merge key by key, later layers winning."""
    given = {k: v for k, v in options.items() if v is not None}
    from_file = load_config_file(config_file) if config_file else {}
    preset = given.get("preset", from_file.get("preset"))
    if preset is not None and preset not in PRESETS:
        raise AlsegError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    cfg = dict(DEFAULTS)
    layers = (PRESETS.get(preset, {}), from_file, given)
    for layer in layers:
        cfg.update(layer)
    # option tables merge key by key (a file's {lr = 0.05} keeps the preset's other train options)
    for key in OPTION_TABLES:
        tables = [layer[key] for layer in layers if key in layer]
        if tables and all(isinstance(t, dict) for t in tables):     # else check_types names the bad one
            cfg[key] = {k: v for t in tables for k, v in t.items()}
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise AlsegError(f"unknown loop setting(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    if cfg["first_budget"] is not None:
        cfg["first_budget"] = parse_budgets([cfg["first_budget"]])[0]
    check_types(cfg)
    if not cfg["dataset"]:
        raise AlsegError("no dataset: pass --dataset PATH (a store from 'alseg prep') or set dataset in the config")
    cfg["dataset"] = str(Path(cfg["dataset"]).resolve())
    if cfg.get("encoder"):
        cfg["encoder"] = str(Path(cfg["encoder"]).resolve())
    for key in ("reuse_encoders", "reuse_models"):
        cfg[key] = [str(Path(r).resolve()) for r in parse_list(cfg[key], str)]
        missing = [r for r in cfg[key] if not Path(r).is_dir()]
        if missing:
            raise AlsegError(f"--{key.replace('_', '-')} {missing[0]}: no such directory")
    methods = cfg["methods"]
    cfg["methods"] = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    if not cfg["methods"]:
        raise AlsegError("--methods is empty; e.g. --methods random,coreset,gcl-coreset")
    if len(set(cfg["methods"])) != len(cfg["methods"]):
        raise AlsegError(f"--methods {cfg['methods']}: a method is listed twice")
    _check_variants(cfg)
    if cfg["unit"] not in ("slice", "volume"):
        raise AlsegError(f"--unit {cfg['unit']!r}: choose slice or volume")
    cfg["budgets"] = parse_budgets(cfg["budgets"])
    first = cfg["first_budget"]
    if first is not None and first != cfg["budgets"][0]:
        # the reference's start: a round of its own before the first budget (selected, trained
        # and evaluated like every round, so model-based methods have a model for it)
        if first > cfg["budgets"][0]:
            raise AlsegError(f"--first-budget {first:g}%: must be below the first budget ({cfg['budgets'][0]:g}%)")
        cfg["budgets"] = [first] + cfg["budgets"]
    cfg["seeds"] = [int(s) for s in parse_list(cfg["seeds"], int, "seeds")]
    if not cfg["seeds"] or len(set(cfg["seeds"])) != len(cfg["seeds"]):
        raise AlsegError(f"--seeds {cfg['seeds']}: give distinct integers, e.g. 0,1,2")
    for seed in cfg["seeds"] if cfg.get("encoder") else []:
        if not Path(encoder_for(cfg["encoder"], seed)).exists():
            raise AlsegError(f"--encoder {encoder_for(cfg['encoder'], seed)}: no such encoder directory"
                             + (f" (seed {seed})" if "{seed}" in cfg["encoder"] else ""))
    _check_model(cfg)
    if cfg["human"] and (cfg["executor"] != "local" or len(cfg["seeds"]) * len(cfg["methods"]) != 1):
        raise AlsegError("--human drives one annotation campaign: one method, one seed, the local executor "
                         f"(got {len(cfg['methods'])} method(s) x {len(cfg['seeds'])} seed(s), {cfg['executor']})")
    if cfg["executor"] not in ("local", "ray"):
        raise AlsegError(f"--executor {cfg['executor']}: choose local or ray")
    if cfg["supervision"] not in ("full", "scribble"):
        raise AlsegError(f"--supervision {cfg['supervision']!r}: choose full or scribble")
    for key in ("models_per_round", "jobs", "base_channels", "batch_size"):
        if int(cfg[key]) < 1:
            raise AlsegError(f"--{key.replace('_', '-')} {cfg[key]}: must be at least 1")
        cfg[key] = int(cfg[key])
    if cfg["threads"] is None:
        # torch's default (all cores in every process) oversubscribes a shared or parallel
        # machine badly (14x slower training measured on 2 busy cores): split the cores.
        import os
        cfg["threads"] = max(1, (os.cpu_count() or 1) // cfg["jobs"])
    cfg["threads"] = int(cfg["threads"])
    return cfg


VARIANT_KEYS = ("method", "embeddings", "pretrain_options")
# Round modifiers, written METHOD+NAME in --methods: they change what a round trains on, not
# what the oracle is asked for. knn-prop: Belharbi et al.'s k-NN label propagation
# (propagation_options); arco: ARCO semi-supervised training on the pool (semi_options).
MODIFIERS = ("knn-prop", "arco")


def _check_variants(cfg: Dict[str, Any]) -> None:
    """Named variants (the ablation's rows): [variants.NAME] with a registered ``method``, an
    optional ``embeddings`` (pixels | encoder) and optional ``pretrain_options`` (its own GCL
    encoder per seed). Every entry of methods is a registered method or a variant's name."""
    from ..acquisition import METHODS       # the full registry (learned methods included)
    from .settings import _check_options

    variants = cfg["variants"]
    for name, v in variants.items():
        where = f"variants.{name}"
        if name in METHODS.names():
            raise AlsegError(f"{where}: {name!r} is a method's name; give the variant a name of its own")
        if not isinstance(v, dict) or "method" not in v:
            raise AlsegError(f"{where}: a variant is a table with at least method = \"...\"")
        extra = sorted(set(v) - set(VARIANT_KEYS))
        if extra:
            raise AlsegError(f"{where}: unknown key(s) {', '.join(extra)} (known: {', '.join(VARIANT_KEYS)})")
        METHODS.get(v["method"])
        if v.get("embeddings") not in (None, "pixels", "encoder"):
            raise AlsegError(f"{where}.embeddings = {v['embeddings']!r}: choose pixels or encoder")
        if v.get("pretrain_options") is not None:
            if not isinstance(v["pretrain_options"], dict):
                raise AlsegError(f"{where}.pretrain_options: not a table of settings")
            _check_options("pretrain_options", v["pretrain_options"])
            if cfg.get("encoder"):
                raise AlsegError(f"{where}: a variant with pretrain_options trains its own encoder; "
                                 f"it cannot use --encoder")
    for m in cfg["methods"]:
        base, *mods = m.split("+")
        if base not in variants:
            METHODS.get(base)           # unknown -> one line naming the known methods
        bad = [x for x in mods if x not in MODIFIERS]
        if bad or len(set(mods)) != len(mods):
            raise AlsegError(f"--methods {m}: {'unknown modifier ' + repr(bad[0]) if bad else 'a modifier twice'}"
                             f" (modifiers: {', '.join(f'+{x}' for x in MODIFIERS)})")
        if mods and cfg.get("unit") == "volume":
            raise AlsegError(f"--methods {m}: +{mods[0]} trains a 2D network on slices; not with --unit volume")


def _check_model(cfg: Dict[str, Any]) -> None:
    """The round network: any registered one (default unet, or dmpls for scribbles), checked
    before any work: its supervision, and a backbone file where it needs one."""
    weights = (cfg.get("train_options") or {}).get("backbone_weights")
    if cfg.get("model") is None and not weights:
        return
    from ..segmentation.nets import check_network

    model = cfg.get("model") or ("dmpls" if cfg["supervision"] == "scribble" else "unet")
    info = check_network(model, cfg["supervision"], weights, "train_options.backbone_weights (--backbone-weights FILE)")
    if info.get("volumetric") and cfg.get("unit") != "volume":
        raise AlsegError(f"--model {model} trains on whole volumes with full masks; pass --unit volume")


def pretrained_network(cfg: Dict[str, Any]) -> bool:
    """Is the round network pretrained (a loaded backbone)? Then GCL uses the paper's weights
    for that case, the patient group alone (appendix A)."""
    if cfg.get("model") is None:
        return False
    from ..segmentation.nets import NETWORKS
    return bool(NETWORKS.info(cfg["model"]).get("needs_backbone"))


# Input files a run is tied to by content, not by path: a moved store or encoder with the same
# sha256 resumes (records copied to another checkout); the same path with new content does not.
INPUT_KEYS = ("dataset", "encoder")


def check_compatible(saved: Dict[str, Any], cfg: Dict[str, Any], path) -> None:
    """Refuse to resume a run directory with settings that would change its results."""
    for key in sorted(set(saved) | set(cfg)):
        if key in FREE_KEYS:
            continue
        if key not in saved:
            continue        # a setting newer than the run directory: its later steps use it
        if key in INPUT_KEYS or (key.endswith("_sha256") and key[:-7] in INPUT_KEYS):
            _check_input(saved, cfg, key.replace("_sha256", ""), path)
            continue
        if key == "variants":    # variants may be added; a variant already run may not change
            changed = [n for n, v in (saved.get(key) or {}).items() if (cfg.get(key) or {}).get(n, v) != v]
            if changed:
                raise AlsegError(f"{path}: variant {changed[0]} was run with other settings "
                                 f"({saved[key][changed[0]]}); give the new one another name")
            continue
        if saved.get(key) != cfg.get(key):
            raise AlsegError(
                f"{path}: this run was started with {key}={saved.get(key)!r}, not {cfg.get(key)!r}; "
                "rerun with the same settings to resume, or use another -o RUN_DIR")


def _check_input(saved: Dict[str, Any], cfg: Dict[str, Any], key: str, path) -> None:
    """The same content at any path resumes; other content, or another path whose content
    cannot be told (a run from before hashes were kept), is refused."""
    was, now = saved.get(key + "_sha256"), cfg.get(key + "_sha256")
    if was is not None and now is not None:
        if was != now:
            raise AlsegError(f"{path}: the {key} {cfg.get(key)} has other content than the one this run "
                             f"was started with (sha256 {was[:12]}..., now {now[:12]}...); "
                             "rerun on that one to resume, or use another -o RUN_DIR")
    elif saved.get(key) != cfg.get(key):
        raise AlsegError(f"{path}: this run was started with {key}={saved.get(key)!r}, not {cfg.get(key)!r}; "
                         "rerun with the same settings to resume, or use another -o RUN_DIR")
