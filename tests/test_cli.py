"""The CLI surface: every subcommand has help and a README entry; --version; errors are one line."""
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alseg_cli import __version__
from alseg_cli.cli.main import COMMANDS, app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("prep", "pretrain", "embed", "select", "train-seg", "evaluate", "bootstrap", "loop", "stats",
                 "plot"):
        assert name in result.output
    assert set(COMMANDS) == {"prep", "pretrain", "embed", "select", "train-seg", "evaluate", "bootstrap", "loop",
                             "verify", "stats", "propagate", "predict", "export", "import-labels"}
    for sub in ("overlay", "map", "montage"):          # the plot group's commands
        assert runner.invoke(app, ["plot", sub, "--help"]).exit_code == 0
        assert f"alseg plot {sub}" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_and_readme_entry(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"alseg {name}" in (ROOT / "README.md").read_text()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_real_subprocess_version_and_unknown_command():
    exe = Path(sys.executable).with_name("alseg")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"alseg {__version__}"
    bad = subprocess.run([str(exe), "no-such-command"], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stdout == ""
