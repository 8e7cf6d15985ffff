"""torch.export: a .pt2 that loads and runs in a fresh process without imgcls; bf16 / fp16 where the CPU has them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from imgcls.errors import ConfigError
from imgcls.export import export_torch
from imgcls.export.torch_export import check_dtype
from imgcls.train.checkpoint import load_run
from imgcls.utils.hardware import cpu_info, fast_bf16

FRESH = """
import json, sys, numpy as np, torch
extra = {"imgcls.json": ""}
program = torch.export.load(sys.argv[1], extra_files=extra)
x = torch.from_numpy(np.load(sys.argv[2]))
np.save(sys.argv[3], program.module()(x).detach().numpy())
print(json.dumps({"classes": json.loads(extra["imgcls.json"])["classes"],
                  "imgcls_loaded": any(m.split(".")[0] == "imgcls" for m in sys.modules)}))
"""


def test_pt2_runs_in_a_fresh_process_without_imgcls(digits_run: Path, tmp_path: Path) -> None:
    result = export_torch(digits_run, tmp_path / "model.pt2")
    assert [p.batch for p in result.parity] == [1, 3, 8] and all(p.ok for p in result.parity)
    x = torch.randn(5, 1, 8, 8)  # a batch size the export never saw
    np.save(tmp_path / "x.npy", x.numpy())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", FRESH, str(result.path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"classes": load_run(digits_run).classes, "imgcls_loaded": False}
    with torch.no_grad():
        want = load_run(digits_run).model(x).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-5, atol=1e-6)


def test_bf16_export_where_the_cpu_is_fast_at_it_else_refused(digits_run: Path, tmp_path: Path) -> None:
    if not fast_bf16():
        with pytest.raises(ConfigError, match="no fast bf16"):
            export_torch(digits_run, tmp_path / "m.pt2", dtype="bf16")
        return
    result = export_torch(digits_run, tmp_path / "m.pt2", dtype="bf16")
    assert result.metadata["dtype"] == "bf16" and all(p.ok for p in result.parity)
    program = torch.export.load(result.path)
    weights = [v for k, v in program.state_dict.items() if k.endswith("weight")]
    assert weights and all(w.dtype == torch.bfloat16 for w in weights)
    assert 0 < max(p.max_abs_diff for p in result.parity)  # bf16 is not fp32: the check compared something


def test_fp16_refused_without_fp16_arithmetic() -> None:
    has_fp16 = bool(cpu_info().flags & {"avx512_fp16", "amx_fp16", "fphp", "asimdhp"})
    if has_fp16:
        assert check_dtype("fp16") is torch.float16
    else:
        with pytest.raises(ConfigError, match="no fp16 arithmetic.*use --dtype fp32"):
            check_dtype("fp16")
    with pytest.raises(ConfigError, match="unknown dtype"):
        check_dtype("int4")
