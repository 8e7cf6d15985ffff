"""Fixtures for the data tests: real files written to tmp_path (IDX, CIFAR pickles, image folders).

Every test runs with HOME, the working directory, $IMGCLS_DATA and the system dataset folder pointed at empty
temporary folders, so nothing on this machine leaks in; and with the network fetcher replaced by one that
fails, so no test can download by accident.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imgcls.data import datasets

from .data_files import save_image


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty HOME, cwd and system dataset folder; no $IMGCLS_DATA; a fetcher that refuses; a clean cache."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("IMGCLS_DATA", raising=False)
    monkeypatch.chdir(home)
    monkeypatch.setattr(datasets, "SYSTEM_DIR", home / "no-system-datasets")

    def no_network(url: str, dest: Path) -> None:
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(datasets, "fetch_url", no_network)
    datasets.clear_cache()
    return home


@pytest.fixture
def color_folder(tmp_path: Path) -> Path:
    """Three classes, 8 images each, every format and mode the folder loader promises to read."""
    root = tmp_path / "shapes"
    kinds = [("png", "L"), ("png", "RGB"), ("png", "RGBA"), ("gif", "P"), ("jpg", "CMYK"), ("png", "I;16"),
             ("bmp", "RGB"), ("jpg", "RGB")]  # fmt: skip
    for c, cls in enumerate(("bird", "cat", "dog")):
        for i, (ext, mode) in enumerate(kinds):
            save_image(root / cls / f"{i}.{ext}", mode, seed=10 * c + i)
    return root
