"""The project's Dockerfile installs and compiles the project exactly as ``make setup``
does, copies every package the distribution ships, and runs as an unprivileged user."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
# The commands that install the project into the virtual environment and compile it.
INSTALL_COMMAND = re.compile(r"-m venv |-m pip install ")


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text()
    logical = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def _makefile_install_commands() -> list[str]:
    """What ``make setup`` runs to install and compile the project (dry run, forced)."""
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "PYTHON=python3.11", ".venv/.compiled"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [
        " ".join(line.split())
        for line in dry_run.stdout.splitlines()
        if INSTALL_COMMAND.search(line)
    ]


def test_dockerfile_runs_the_makefiles_install_commands_in_order() -> None:
    makefile = _makefile_install_commands()
    assert len(makefile) >= 4, makefile  # venv, pip upgrade, dependencies, compiled build
    docker = [args for keyword, args in _dockerfile_instructions() if keyword == "RUN"]
    docker_installs = [command for command in docker if INSTALL_COMMAND.search(command)]
    assert docker_installs == makefile


def test_dockerfile_copies_every_package_the_distribution_ships() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in included}
    copied = set()
    for keyword, args in _dockerfile_instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            copied.update(shlex.split(args)[:-1])
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert {"pyproject.toml", "setup.py"} <= copied


def test_image_is_multi_stage_and_runs_unprivileged() -> None:
    instructions = _dockerfile_instructions()
    stages = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(stages) >= 2, "a build stage with the compiler, a runtime stage without"
    final_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    users = [args for keyword, args in final_stage if keyword == "USER"]
    assert users, "the runtime stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users
    assert any(k == "COPY" and a.startswith("--from=build") for k, a in final_stage)
    # No compiler in the image that runs.
    assert not any("gcc" in args for keyword, args in final_stage if keyword == "RUN")
