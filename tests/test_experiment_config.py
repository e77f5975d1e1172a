"""Loop config: TOML/YAML files, presets, precedence, validation, iteration schedule."""
from __future__ import annotations

import pytest

from alseg_cli.errors import AlsegError
from alseg_cli.experiment.config import (iterations_for, parse_budgets, resolve_config,
                                         round_name)


def test_toml_and_yaml_agree(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text('[loop]\ndataset = "d.zarr"\nmethods = ["random", "coreset"]\n'
                    'budgets = [2, 3, 4]\nseeds = "0,1"\nmodels-per-round = 2\n')
    yaml = tmp_path / "exp.yaml"
    yaml.write_text("dataset: d.zarr\nmethods: [random, coreset]\nbudgets: [2, 3, 4]\n"
                    "seeds: '0,1'\nmodels_per_round: 2\n")
    a, b = resolve_config({}, str(toml)), resolve_config({}, str(yaml))
    assert a == b
    assert a["methods"] == ["random", "coreset"] and a["budgets"] == [2.0, 3.0, 4.0]
    assert a["seeds"] == [0, 1] and a["models_per_round"] == 2
    assert a["dataset"].endswith("d.zarr")


def test_precedence_flags_over_file_over_preset(tmp_path):
    f = tmp_path / "exp.toml"
    f.write_text('dataset = "d.zarr"\npreset = "paper"\nseeds = [7]\n')
    cfg = resolve_config({"budgets": "2,5%", "methods": None}, str(f))
    assert cfg["budgets"] == [1.0, 2.0, 5.0]     # flag, after the paper preset's first 1 %
    assert cfg["seeds"] == [7]                   # file over preset
    assert cfg["models_per_round"] == 5          # preset
    assert cfg["pretrain_epochs"] == 100
    quick = resolve_config({"dataset": "d", "preset": "quick"})
    assert quick["models_per_round"] == 1 and quick["seeds"] == [0, 1, 2]
    assert quick["warm_start"] is True and cfg["warm_start"] is False      # the paper retrains each round
    assert resolve_config({"dataset": "d", "preset": "quick", "warm_start": False})["warm_start"] is False


def test_bad_values(tmp_path):
    with pytest.raises(AlsegError, match="strictly increase"):
        parse_budgets("3,2")
    with pytest.raises(AlsegError, match="percentage"):
        parse_budgets("0,120")
    with pytest.raises(AlsegError, match="not a number"):
        parse_budgets("2,x")
    with pytest.raises(AlsegError, match="no dataset"):
        resolve_config({})
    with pytest.raises(AlsegError, match="unknown loop setting"):
        resolve_config({"dataset": "d", "budgetz": "1"})
    with pytest.raises(AlsegError, match="preset"):
        resolve_config({"dataset": "d", "preset": "huge"})
    with pytest.raises(AlsegError, match="supervision"):
        resolve_config({"dataset": "d", "supervision": "weak"})
    with pytest.raises(AlsegError, match="twice"):
        resolve_config({"dataset": "d", "methods": "random,random"})
    bad = tmp_path / "bad.toml"
    bad.write_text("dataset = [")
    with pytest.raises(AlsegError, match="bad.toml"):
        resolve_config({}, str(bad))
    with pytest.raises(AlsegError, match="not found"):
        resolve_config({}, str(tmp_path / "missing.yaml"))


def test_iterations_and_round_names():
    cfg = resolve_config({"dataset": "d", "preset": "paper"})
    assert iterations_for(cfg, 3) == 1800        # 60,000 x 3 %
    quick = resolve_config({"dataset": "d", "preset": "quick"})
    assert iterations_for(quick, 2) == 300 and iterations_for(quick, 10) == 300
    assert iterations_for(quick, 20) == 600 and iterations_for(quick, 60) == 1500
    assert iterations_for({**quick, "iterations": 9}, 40) == 9
    assert round_name(2.0) == "round2" and round_name(2.5) == "round2.5" and round_name(10) == "round10"


@pytest.mark.parametrize("line, message", [
    ('iterations = "twenty"', 'setting iterations = "twenty": not a number'),
    ("iterations = 2.5", "setting iterations = 2.5: not a whole number"),
    ("seeds = 0.5", "--seeds: 0.5 is not a whole number"),
    ('seeds = ["a"]', "--seeds: a is not a number"),
    ('pretrain = "yes"', 'setting pretrain = "yes": not true or false'),
    ("jobs = 0", "setting jobs = 0: must be at least 1"),
    ('train_options = { lr = "fast" }', 'setting train_options.lr = "fast": not a number'),
    ("train_options = { lrr = 0.1 }", "setting train_options.lrr: not an option"),
    ("select_options = { mc_samples = 2.5 }", "select_options.mc_samples = 2.5: not a whole number"),
    ('select_options = "x"', 'setting select_options = "x": not a table'),
])
def test_every_setting_is_type_checked_before_any_work(tmp_path, line, message):
    from alseg_cli.experiment.loop import run_loop

    cfg = tmp_path / "exp.toml"
    cfg.write_text(f'dataset = "{tmp_path / "d.zarr"}"\n{line}\n')
    with pytest.raises(AlsegError, match=message.replace("(", r"\(").replace(".", r"\.")):
        run_loop(tmp_path / "run", config=str(cfg))
    assert not (tmp_path / "run").exists()          # no config.json, no selection


def test_integral_values_from_yaml_are_accepted(tmp_path):
    cfg = resolve_config({"dataset": "d", "iterations": 300.0, "seeds": "0,1.0", "train_options": {"lr": 1}})
    assert cfg["iterations"] == 300 and cfg["seeds"] == [0, 1]


def test_budgets_are_parsed_once_and_exact():
    from fractions import Fraction

    from alseg_cli.acquisition.budget import Budget, parse_budget
    from alseg_cli.experiment.config import round_budgets

    cfg = resolve_config({"dataset": "d", "budgets": "2,2.5,12.3456789"})
    b = round_budgets(cfg)
    assert b == ["2%", "2.5%", "12.3456789%"] and all(isinstance(x, Budget) for x in b)
    assert b[2].fraction == Fraction(123456789, 10 ** 9) and round_name(b[2]) == "round12.3456789"
    assert round_name(b[0]) == round_name(2.0) == "round2"
    assert parse_budget(b[1], None, 1000, 0) == (25, 25) and Budget("+7").total(10, 3) == 10
    with pytest.raises(AlsegError, match="--seeds"):
        resolve_config({"dataset": "d", "seeds": "1%"})


def test_option_tables_merge_over_the_preset(tmp_path):
    from alseg_cli.experiment.config import PRESETS, resolve_config

    cfg = resolve_config({"dataset": str(tmp_path), "preset": "quick", "train_options": {"lr": 0.05}})
    want = {**PRESETS["quick"]["train_options"], "lr": 0.05}
    assert cfg["train_options"] == want and cfg["train_options"]["class_weights"] == "balanced"
    assert resolve_config({"dataset": str(tmp_path), "preset": "paper"})["train_options"] == {}


def test_first_budget_is_a_round_before_the_schedule(tmp_path):
    ds = str(tmp_path / "d.zarr")
    cfg = resolve_config({"dataset": ds, "budgets": "2,3", "first_budget": "1%"})
    assert cfg["budgets"] == [1.0, 2.0, 3.0] and cfg["first_budget"] == 1.0
    again = resolve_config({"dataset": ds, **{k: cfg[k] for k in ("budgets", "first_budget")}})
    assert again["budgets"] == [1.0, 2.0, 3.0]            # resolving a saved config adds nothing
    assert resolve_config({"dataset": ds, "preset": "paper"})["budgets"][:2] == [1.0, 2.0]
    assert resolve_config({"dataset": ds, "preset": "quick"})["budgets"][0] == 2.0
    with pytest.raises(AlsegError, match="must be below the first budget"):
        resolve_config({"dataset": ds, "budgets": "2,3", "first_budget": 5})
    with pytest.raises(AlsegError, match="percentage"):
        resolve_config({"dataset": ds, "first_budget": "-1"})


def test_paper_preset_runs_the_pixel_baseline_at_the_working_size(phantom_store):
    from alseg_cli.experiment.chain import pixels_size
    from alseg_cli.store import DatasetStore

    assert pixels_size(resolve_config({"dataset": phantom_store, "preset": "paper"})) == DatasetStore(phantom_store).size
    assert pixels_size(resolve_config({"dataset": phantom_store, "preset": "quick"})) == 32


@pytest.mark.parametrize("name", ["demo.toml", "ablation.toml", "hippocampus.toml"])
def test_example_configs_resolve(name):
    """Every config in examples/ passes the setting checks as shipped (a typo there would stop
    its make target only after its data were prepared)."""
    from pathlib import Path

    cfg = resolve_config({"dataset": "data.zarr"}, str(Path(__file__).resolve().parents[1] / "examples" / name))
    assert cfg["methods"] and cfg["budgets"] == sorted(cfg["budgets"])
    if name == "hippocampus.toml":
        assert cfg["pretrain_options"] == {"size": 32} and cfg["warm_start"] is True and cfg["supervision"] == "full"
