"""Fixtures of the CLI tests: one tiny trained run (digits, two optimizer steps) and a few images for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgcls.cli.main import main


@pytest.fixture(scope="package")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    argv = ["-q", "train", "--dataset", "digits", "--max-steps", "2", "--out-dir", str(out), "--name", "d"]
    assert main([*argv, "--no-progress"]) == 0
    return out / "d"


@pytest.fixture(scope="package")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    for i in range(3):
        Image.new("L", (8, 8), color=40 * i).save(folder / f"{i}.png")
    return folder
