"""Make the README's example pictures of ``imgcls explain`` (docs/explain/*.png).

A synthetic task where a bright bar at a random position decides the class (horizontal or vertical): the
maps should light up on the bar. Trains ``lenet5_modern`` (20 epochs) and a 3-block ViT (12 epochs) on it,
about a minute on a 2-core CPU, runs every method on two images, and stores the CNN's pictures and the
ViT's attention maps as 128-colour PNGs.

    python docs/explain/make_examples.py [--work /tmp/imgcls-explain]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from imgcls.explain.run import explain_run
from imgcls.train import TrainConfig, train

HERE = Path(__file__).resolve().parent


def make_bars(root: Path, n: int = 800, seed: int = 0) -> None:
    """28x28 grey noise with one bright 3x10 bar, horizontal or vertical, at a random position."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        cls = "horizontal" if i % 2 == 0 else "vertical"
        a = np.clip(rng.normal(60, 25, (28, 28)), 0, 255)
        h, w = (3, 10) if cls == "horizontal" else (10, 3)
        t, l = rng.integers(0, 28 - h + 1), rng.integers(0, 28 - w + 1)
        a[t : t + h, l : l + w] = 230
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a.astype(np.uint8)).save(root / cls / f"{i}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/imgcls-explain"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    bars = args.work / "bars"
    make_bars(bars)
    common = dict(dataset=f"folder:{bars}", batch_size=32, optimizer="adamw", out_dir=str(args.work / "runs"))
    cnn = train(TrainConfig(model="lenet5_modern", epochs=20, lr=0.003, name="lenet", **common)).run_dir
    vit_kwargs = dict(depth=3, embed_dim=48, num_heads=3, mlp_dim=96, patch_size=4, img_size=28)
    vit = train(
        TrainConfig(
            model="vit_tiny_patch4_32", model_kwargs=vit_kwargs, epochs=12, lr=0.002, name="vit", **common
        )
    ).run_dir
    images = [bars / "horizontal" / "0.png", bars / "vertical" / "1.png"]
    for run, prefix in ((cnn, "cnn"), (vit, "vit")):
        result = explain_run(run, images, out_dir=args.work / f"explain-{prefix}", device="cpu")
        for path in result.files:
            if path.suffix == ".png" and (prefix == "cnn" or path.stem in ("attention", "rollout")):
                small = Image.open(path).convert("RGB").quantize(colors=128)  # a few tens of KB
                small.save(HERE / f"{prefix}-{path.name}", optimize=True)


if __name__ == "__main__":
    main()
