from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from imgcls.metrics import evaluate

from .fixed_model import FixedLogits


def test_metrics_against_hand_computed_values(tmp_path: Path) -> None:
    # 6 samples, 6 classes. Predictions (argmax): 0, 1, 1, 3, 0, 5; labels: 0, 1, 2, 3, 4, 4.
    logits = torch.full((6, 6), -10.0)
    for i, (p, second) in enumerate([(0, 1), (1, 2), (1, 2), (3, 0), (0, 1), (5, 0)]):
        logits[i, p] = 5.0
        logits[i, second] = 4.0
    labels = torch.tensor([0, 1, 2, 3, 4, 4])
    x = torch.arange(6.0).view(6, 1, 1, 1)
    batches = [(x[:4], labels[:4]), (x[4:], labels[4:])]
    r = evaluate(FixedLogits(logits), batches, 6, classes=list("abcdef"))
    assert r.n == 6
    assert r.top1 == pytest.approx(3 / 6)  # samples 0, 1, 3
    # top-5 of 6 classes: only the lowest-scored class is excluded; sample 4 (label 4) has -10 on 4 among 4 ties
    top5 = (logits.topk(5, 1).indices == labels[:, None]).any(1).float().mean()
    assert r.top5 == pytest.approx(float(top5))
    assert r.confusion[2][1] == 1 and r.confusion[4][0] == 1 and r.confusion[4][5] == 1
    assert sum(map(sum, r.confusion)) == 6
    assert r.per_class[:4] == [1.0, 1.0, 0.0, 1.0] and r.per_class[4] == 0.0
    assert r.per_class[5] != r.per_class[5]  # NaN: class f has no sample
    loss = torch.nn.functional.cross_entropy(logits, labels)
    assert r.loss == pytest.approx(float(loss), rel=1e-5)
    assert r.top1_error == pytest.approx(0.5)

    r.save(tmp_path)
    csv = (tmp_path / "confusion_counts.csv").read_text().splitlines()
    assert csv[0] == "counts: true\\pred,a,b,c,d,e,f" and csv[3] == "c,0,1,0,0,0,0"
    assert (tmp_path / "confusion_row_normalised.png").read_bytes()[:4] == b"\x89PNG"
    assert "top-1 acc     50.00%" in r.table()


def test_flip_tta_averages_mirrored_logits() -> None:
    class Asym(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # left half vs right half brightness
            w = x.shape[-1] // 2
            return torch.stack([x[..., :w].mean((1, 2, 3)), x[..., w:].mean((1, 2, 3))], 1)

    x = torch.zeros(1, 1, 2, 4)
    x[..., :2] = 1.0
    y = torch.tensor([0])
    assert evaluate(Asym(), [(x, y)], 2).top1 == 1.0
    r = evaluate(Asym(), [(x, y)], 2, tta_flip=True)  # mirrored logits cancel the asymmetry: a tie
    assert r.loss == pytest.approx(float(torch.log(torch.tensor(2.0))))
