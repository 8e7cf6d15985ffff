"""ONNX export: every kind of layer in the zoo exports and matches eager PyTorch in onnxruntime; a run's export
carries its metadata, runs ``imgcls predict`` without torch model code, and a mismatch is caught."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from imgcls import create_model, get_model_spec
from imgcls.cli.main import main
from imgcls.errors import ConfigError, DataError, ExportError
from imgcls.export import OnnxClassifier, export_onnx
from imgcls.export.onnx import compare_logits, export_model_onnx, verify_onnx
from imgcls.predict import predict
from imgcls.train.checkpoint import read_model_info


def _shrunk(name: str, **changes: object) -> dict[str, object]:
    """The variant's config with fewer blocks or channels: the same layer types, a graph that exports faster."""
    return {"cfg": dataclasses.replace(get_model_spec(name).kwargs["cfg"], **changes)}


# One model per layer type that needs its own ONNX operators (the exporter takes 5-20 s per model here, so the
# zoo is swept by benchmarks/export_zoo.py, not by the test suite). A known exporter failure would be listed
# with pytest.mark.xfail(strict=True, reason=...); none is known.
LAYER_CASES = {
    # conv, batch norm, ReLU and global pooling: quicknet_s, the run of the other tests (conftest.py)
    "LRN, grouped conv, adaptive pooling to 6x6 (alexnet_paper_2gpu)": (
        "alexnet_paper_2gpu",
        _shrunk("alexnet_paper_2gpu", hidden=64),
    ),
    "channel shuffle, depthwise conv (shufflenet_v2_x0_5)": (
        "shufflenet_v2_x0_5",
        _shrunk("shufflenet_v2_x0_5", depths=(1, 1, 1)),
    ),
    "window attention, shifted windows, relative position bias, stochastic depth in eval (swin)": (
        "swin_t_patch2_window4_32",
        _shrunk(
            "swin_t_patch2_window4_32", embed_dim=32, depths=(2, 2), num_heads=(1, 2), drop_path_rate=0.3
        ),
    ),
    "MBConv with squeeze-excitation, relative attention (coatnet_0)": (
        "coatnet_0",
        _shrunk("coatnet_0", depths=(2, 1, 1, 1, 1), dims=(16, 16, 32, 32, 64)),
    ),
}


def _randomised(model: nn.Module) -> nn.Module:
    """Zero-initialised parameters (a zero head, zero last-BN gammas) made random: a zero branch checks nothing."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_types_export_and_match_eager(case: str, tmp_path: Path) -> None:
    name, kwargs = LAYER_CASES[case]
    torch.manual_seed(0)
    model = _randomised(create_model(name, num_classes=10, in_chans=3, image_size=32, **kwargs))
    parity = export_model_onnx(model, (3, 32, 32), tmp_path / "m.onnx")
    assert [p.batch for p in parity] == [1, 3, 8]
    assert all(p.ok and p.max_abs_logit > 0.01 for p in parity), parity  # real logits, matched to 1e-4
    # Independently of the exporter's own check: another batch size through the dynamic axis.
    import onnxruntime as ort

    x = torch.randn(5, 3, 32, 32)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_run_export_stores_metadata_and_a_dynamic_batch(digits_run: Path, onnx_file: Path) -> None:
    import onnx

    info = read_model_info(digits_run)
    # read as the module docstring tells users to: the "imgcls" entry of the file's metadata_props, as JSON
    meta = json.loads({p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}["imgcls"])
    for key in ("model", "classes", "in_chans", "image_size", "mean", "std", "tta_flip"):
        assert meta[key] == info[key], key
    assert meta["input"] == "float32" and "(x - mean[c]) / std[c]" in meta["preprocessing"]
    graph = onnx.load(str(onnx_file)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 8, 8]
    assert OnnxClassifier(onnx_file).meta == meta  # the checked reader agrees


def debug_annotations(path: Path) -> list[str]:
    """Where an ONNX file carries per-node debugging (stack traces, scopes) or doc strings: "node name: key"."""
    import onnx

    model = onnx.load(str(path))
    found = [f"{n.name}: {p.key}" for n in model.graph.node for p in n.metadata_props]
    found += [f"{n.name}: doc_string" for n in model.graph.node if n.doc_string]
    values = [*model.graph.initializer, *model.graph.value_info, *model.graph.input, *model.graph.output]
    found += [f"{v.name}: {p.key}" for v in values for p in v.metadata_props]
    return found + (["graph: doc_string"] if model.graph.doc_string or model.doc_string else [])


def test_export_carries_no_debug_annotations(onnx_file: Path) -> None:
    import onnx

    from imgcls.export.onnx import strip_debug_info

    assert debug_annotations(onnx_file) == []  # no stack traces with the exporting machine's source paths
    assert {p.key for p in onnx.load(str(onnx_file)).metadata_props} == {
        "imgcls"
    }  # what predict --onnx needs
    # the proto form, as the int8 file is stripped: every annotated place, subgraphs included, is emptied
    model = onnx.load(str(onnx_file))
    model.graph.node[0].metadata_props.add(key="pkg.torch.onnx.stack_trace", value="File /home/me/x.py")
    model.graph.node[0].doc_string = "made by x.py"
    body = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["a"], ["b"], doc_string="d")], "body", [], []
    )
    body.node[0].metadata_props.add(key="namespace", value="m")
    model.graph.node.append(onnx.helper.make_node("If", ["c"], ["o"], then_branch=body, else_branch=body))
    strip_debug_info(model)
    assert not model.graph.node[0].metadata_props and not model.graph.node[0].doc_string
    branch = model.graph.node[-1].attribute[0].g.node[0]
    assert not branch.metadata_props and not branch.doc_string


def test_uint8_input_bakes_in_the_normalisation(digits_run: Path, onnx_file: Path, tmp_path: Path) -> None:
    baked = export_onnx(digits_run, tmp_path / "u8.onnx", uint8_input=True)
    assert baked.metadata["input"] == "uint8" and all(p.ok for p in baked.parity)
    pixels = np.random.default_rng(0).integers(0, 256, (4, 1, 8, 8), dtype=np.uint8)
    a, b = OnnxClassifier(onnx_file).logits(pixels), OnnxClassifier(baked.path).logits(pixels)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_predict_with_onnx_matches_the_run(digits_run: Path, onnx_file: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    by_run = predict(digits_run, tmp_path, top_k=3, device="cpu")
    by_onnx = predict(onnx_file, tmp_path, top_k=3)
    assert [p.input for p in by_onnx] == [p.input for p in by_run]
    for r, o in zip(by_run, by_onnx):
        assert (
            r.top[0][0] == o.top[0][0]
        )  # the run may compute in bf16 (autocast): classes equal, probs close
        np.testing.assert_allclose([q for _, q in o.top], [q for _, q in r.top], atol=1e-2)
    assert main(["predict", "--onnx", str(onnx_file), str(tmp_path), "-k", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [p["top"][0]["class"] for p in printed] == [p.top[0][0] for p in by_onnx]


def test_verification_catches_a_model_that_computes_something_else(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _randomised(create_model("lenet5_modern", num_classes=10, in_chans=1))
    export_model_onnx(model, (1, 28, 28), tmp_path / "m.onnx")
    with torch.no_grad():
        model.reset_classifier(10)  # a new random head: the file no longer computes what the model does
    with pytest.raises(ExportError, match="does not match eager PyTorch"):
        verify_onnx(tmp_path / "m.onnx", model.eval(), (1, 28, 28))


def test_compare_logits_tolerates_only_ties() -> None:
    want = np.array([[1.0, 3.0, 2.0], [0.5, 0.5 + 1e-9, 0.0]])
    assert compare_logits(want + 1e-6, want).ok  # the second row's argmax flips within the error: a tie
    assert not compare_logits(want[:, [1, 0, 2]], want).ok  # a clear argmax change
    assert not compare_logits(want * (1 + 1e-3), want).ok  # 1e-3 relative is beyond 1e-4


def test_bad_inputs_give_one_line_errors(digits_run: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="--opset"):
        export_onnx(digits_run, tmp_path / "x.onnx", opset=3)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(DataError, match="onnxruntime cannot load"):
        OnnxClassifier(garbage)
    bare = tmp_path / "bare.onnx"
    export_model_onnx(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 2, 2), bare, dynamic_batch=False)
    with pytest.raises(DataError, match="no imgcls metadata"):
        OnnxClassifier(bare)
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert main(["export", str(digits_run), "--format", "onnx", "--dtype", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("imgcls export: error:") for line in err)
