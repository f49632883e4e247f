"""The MLproject mirrors the CLI: same parameter names and defaults, commands that pass each one; conda.yaml."""
from __future__ import annotations

import re
import shlex
import tomllib

import click
import pytest
import yaml

from gradacc.cli import cli
from tests.support.e2e import REPO_ROOT

ENTRY_COMMANDS = {"main": "sweep", "micro": "micro", "update": "update", "converge": "converge", "ddp": "ddp",
                  "verify": "verify", "commmodel": "commmodel", "critical": "critical"}
NOT_PARAMETERS = {"experiment"}  # `mlflow run --experiment-name` chooses it
PREFIX = ["python", "-m", "gradacc"]


@pytest.fixture(scope="module")
def project() -> dict:
    return yaml.safe_load((REPO_ROOT / "MLproject").read_text())


def options(command: click.Command) -> dict[str, click.Option]:
    """The command's options by parameter name (data_dir for --data-dir), --help left out."""
    return {p.name: p for p in command.params if isinstance(p, click.Option) and p.name != "help"}


def as_string(value) -> str:
    """A click default as an MLproject default is written: booleans 'false'/'true', None as ''."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


def subcommand(entry: dict) -> str:
    words = entry["command"].split()
    assert words[:3] == PREFIX, entry["command"]
    return words[3]


def test_entry_points_call_the_cli(project):
    points = project["entry_points"]
    assert set(ENTRY_COMMANDS) <= set(points)
    for name, command in ENTRY_COMMANDS.items():
        assert subcommand(points[name]) == command
    for name, entry in points.items():  # any other entry point also calls a CLI command
        assert subcommand(entry) in cli.commands, name


def test_parameter_names_and_defaults_mirror_the_options(project):
    for name, entry in project["entry_points"].items():
        command = cli.commands[subcommand(entry)]
        opts = {key: opt for key, opt in options(command).items() if key not in NOT_PARAMETERS}
        params = entry["parameters"]
        assert set(params) == set(opts), name
        for key, opt in opts.items():
            assert params[key]["type"] == "string", (name, key)
            assert str(params[key]["default"]) == as_string(opt.default), (name, key)
            assert opt.opts == [f"--{key.replace('_', '-')}"], (name, key)


def test_every_parameter_is_passed_once(project):
    for name, entry in project["entry_points"].items():
        passed = re.findall(r"--([\w-]+)=\{(\w+)\}", entry["command"])
        assert all(flag == key.replace("_", "-") for flag, key in passed), (name, passed)
        assert sorted(key for _, key in passed) == sorted(entry["parameters"]), name
        # nothing else is on the command line: the subcommand and --name={name} pairs only
        assert len(entry["command"].split()) == len(PREFIX) + 1 + len(passed), name


def test_mlflow_builds_commands_that_parse_as_the_cli_defaults(tmp_path):
    """The command `mlflow run` would execute with no -P, parsed by click, equals the CLI's own defaults."""
    from mlflow.projects import _project_spec
    spec = _project_spec.load_project(str(REPO_ROOT))
    for name, command_name in ENTRY_COMMANDS.items():
        line = spec.get_entry_point(name).compute_command({}, str(tmp_path))
        args = shlex.split(line)
        assert args[:4] == PREFIX + [command_name]
        command = cli.commands[command_name]
        via_mlflow = command.make_context(command_name, args[4:]).params
        direct = command.make_context(command_name, []).params
        assert via_mlflow == direct, name


def test_mlflow_parameters_reach_the_options(tmp_path):
    from mlflow.projects import _project_spec
    spec = _project_spec.load_project(str(REPO_ROOT))
    line = spec.get_entry_point("converge").compute_command(
        {"k": "4", "smoke": "true", "threads": "1", "data_dir": "/some where", "device": "cpu"}, str(tmp_path))
    params = cli.commands["converge"].make_context("converge", shlex.split(line)[4:]).params
    assert (params["k"], params["smoke"], params["threads"]) == (4, True, 1)
    assert (params["data_dir"], params["device"], params["experiment"]) == ("/some where", "cpu", None)


def test_no_parameter_defaults_to_an_empty_value(project):
    """`mlflow run` logs an empty parameter as the literal '': an option left out says so with a word (auto)."""
    empty = [(name, key) for name, entry in project["entry_points"].items()
             for key, param in entry["parameters"].items() if str(param["default"]).strip() in ("", "''")]
    assert not empty


def test_commmodel_link_options_take_auto_as_they_took_the_empty_value():
    command = cli.commands["commmodel"]
    link = ("latency_us", "bandwidth_gb_s")
    defaults = command.make_context("commmodel", []).params
    assert [options(command)[key].default for key in link] == ["auto", "auto"]
    for value in ("auto", "", " auto "):
        params = command.make_context("commmodel", [f"--latency-us={value}", f"--bandwidth-gb-s={value}"]).params
        assert params == defaults and (params["latency_us"], params["bandwidth_gb_s"]) == (None, None), value
    given = command.make_context("commmodel", ["--latency-us=20", "--bandwidth-gb-s=2.5"]).params
    assert (given["latency_us"], given["bandwidth_gb_s"]) == (20.0, 2.5)


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~ \[;]", spec, maxsplit=1)[0].strip().lower()


def test_conda_env(project):
    assert project["conda_env"] == "conda.yaml"
    env = yaml.safe_load((REPO_ROOT / "conda.yaml").read_text())
    deps = env["dependencies"]
    assert any(str(d).startswith("python") for d in deps) and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "mlflow==3.17.2" in pip
    names = {requirement_name(p) for p in pip}
    assert {"mlflow", "torch", "torchvision", "click", "matplotlib", "numpy"} <= names
    # the same packages as the package itself declares, so `mlflow run` with conda can import it
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {requirement_name(d) for d in declared} <= names
