"""The README's Python code runs as written: every ```python block, in a folder holding the files it names.

The blocks run in a fresh interpreter each, in a scratch folder with tiny stand-ins for what a reader would
have: CIFAR-10 (through ``$IMGCLS_DATA``), ``cat.png``, a folder of ``photos``, and torchvision-layout
checkpoints. A block that names a file this test does not provide fails here first.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from .conftest import pattern_images

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory, tiny_cifar10: Path) -> tuple[Path, dict[str, str]]:
    import imgcls

    root = tmp_path_factory.mktemp("readme")
    x, y = pattern_images(48, 2, 32, 3, 0)
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / "photos" / ("test" if i % 4 == 0 else "train") / ["cat", "dog"][label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{i}.jpg")
    Image.fromarray(x[0].transpose(1, 2, 0)).save(root / "cat.png")
    for name, file in (("resnet18", "tv_resnet18.pth"), ("resnet50", "resnet50-0676ba61.pth")):
        torch.save(imgcls.create_model(name).state_dict(), root / file)
    env = os.environ | {"IMGCLS_DATA": str(tiny_cifar10), "OMP_NUM_THREADS": "1"}
    return root, env


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs_as_written(index: int, scratch: tuple[Path, dict[str, str]]) -> None:
    root, env = scratch
    script = root / f"block{index}.py"
    script.write_text(BLOCKS[index], encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"README block {index} failed:\n{BLOCKS[index]}\n{proc.stderr[-3000:]}"
