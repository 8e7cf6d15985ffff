"""ONNX export of the whole zoo: the smallest variant of every family, exported and checked in onnxruntime.

The test suite exports one model per layer type that needs its own ONNX operators (tests/export/test_onnx.py);
exporting every family takes minutes, so it is swept here. For each family, its variant with the fewest
parameters is built for 10 classes in its small-image form (``create_model(..., image_size=SIZE)``; parameters
initialised to zero made random, so no branch is checked on zeros), exported
by ``imgcls.export.export_model_onnx`` (dynamo exporter, opset 18, dynamic batch, ``onnx.checker`` full check)
and run in onnxruntime against eager PyTorch at batch 1, 3 and 8: largest logit difference within 1e-4 of the
largest logit, same argmax. A failure is a row with its reason, not a stop.

    python benchmarks/export_zoo.py                  # 3x32x32, writes benchmarks/results/export_zoo.md
    python benchmarks/export_zoo.py --pattern 'swin*' --size 64
"""

from __future__ import annotations

import os

# Passive OpenMP waiting, as `import imgcls` sets it, must be in place before torch loads (see README).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import hardware  # noqa: E402

from imgcls.errors import ExportError  # noqa: E402
from imgcls.export.onnx import export_model_onnx  # noqa: E402
from imgcls.models import create_model, list_models  # noqa: E402
from imgcls.models.registry import count_params, get_model_spec  # noqa: E402


def smallest_per_family(pattern: str) -> list[str]:
    """The variant of each family with the fewest parameters (at its reference settings), families sorted."""
    best: dict[str, tuple[int, str]] = {}
    for name in list_models(pattern):
        spec = get_model_spec(name)
        size = spec.num_params if spec.num_params is not None else count_params(create_model(name))
        if spec.family not in best or size < best[spec.family][0]:
            best[spec.family] = (size, name)
    return [best[f][1] for f in sorted(best)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pattern", default="*", help="registry names to consider (glob)")
    ap.add_argument("--size", type=int, default=32, help="image side (small-image forms up to 64)")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "export_zoo.md"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = datetime.now()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in smallest_per_family(args.pattern):
            torch.manual_seed(0)
            model = create_model(name, num_classes=10, in_chans=args.channels, image_size=args.size).eval()
            # zero-initialised parameters (ViT's head, last-BN gammas) made random: zeros check nothing
            with torch.no_grad():
                g = torch.Generator().manual_seed(0)
                for p in model.parameters():
                    if not p.any():
                        p.normal_(0.0, 0.1, generator=g)
            t = time.perf_counter()
            try:
                parities = export_model_onnx(
                    model, (args.channels, args.size, args.size), Path(tmp) / "m.onnx"
                )
                worst = max(p.rel_diff for p in parities)
                result = f"ok: largest difference {worst:.1e} of the largest logit, same argmax"
            except ExportError as e:
                result = f"**failed**: {e}"
            seconds = time.perf_counter() - t
            family = get_model_spec(name).family
            rows.append(f"| {family} | `{name}` | {count_params(model):,} | {seconds:.1f} | {result} |")
            print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# ONNX export of the zoo (smallest variant per family)",
            "",
            f"`python benchmarks/export_zoo.py --size {args.size} --channels {args.channels}"
            + (f" --pattern '{args.pattern}'" if args.pattern != "*" else "")
            + f"`, {started:%Y-%m-%d %H:%M}. Machine: {hardware()}.",
            "",
            f"Each model built for 10 classes at {args.channels}x{args.size}x{args.size} (its small-image form; "
            "parameters initialised to zero made random), "
            "exported with the dynamo exporter at opset 18 with a dynamic batch, `onnx.checker` full check, then "
            "onnxruntime against eager PyTorch at batch 1, 3 and 8 (allowed: 1e-4 of the largest logit).",
            "",
            "| family | variant | parameters | export + check s | result |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
