"""End-to-end CLI tests on tiny datasets written as real files (IDX, CIFAR pickles, image folders)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from imgcls.cli.main import main
from tests.cli import run_cli


@pytest.fixture(scope="module")
def trained(tiny_fmnist: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run trained by ``imgcls train`` and what the command printed (module-scoped: capsys cannot be)."""
    out = tmp_path_factory.mktemp("runs")
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        code = main(
            [
                "-q",
                "train",
                "--dataset",
                "fashion-mnist",
                "--data-dir",
                str(tiny_fmnist),
                "--epochs",
                "4",
                "--batch-size",
                "32",
                "--lr",
                "0.1",
                "--augment",
                "none",
                "--out-dir",
                str(out),
                "--name",
                "r",
                "--no-progress",
                "--tta-flip",
            ]
        )
    assert code == 0
    return out / "r", stdout.getvalue()


@pytest.fixture(scope="module")
def trained_run(trained: tuple[Path, str]) -> Path:
    return trained[0]


def test_train_prints_result_and_saves_config(trained: tuple[Path, str]) -> None:
    run, printed = trained
    result = json.loads((run / "result.json").read_text())
    # one line, the figures of result.json: the test accuracy of the reported weights, the epochs, the run
    assert (
        printed.startswith(f"test accuracy {100 * result['test_acc']:.2f}% (top-5 ")
        and printed.count("\n") == 1
    )
    assert f"of the {result['weights']} weights" in printed and f"{result['epochs']} epochs in" in printed
    assert printed.rstrip().endswith(f"run saved in {run}")
    cfg = (run / "config.yaml").read_text()
    assert "epochs: 4" in cfg and "tta_flip: true" in cfg and "fallback_dataset: null" in cfg


def test_train_json_and_yaml_config(tiny_fmnist: Path, tmp_path: Path, capsys) -> None:
    yml = tmp_path / "c.yaml"
    yml.write_text("epochs: 1\nbatch_size: 40\nmodel_kwargs: {}\n")
    code, out, _ = run_cli(
        capsys,
        "-q",
        "train",
        "--config",
        str(yml),
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(tiny_fmnist),
        "--out-dir",
        str(tmp_path),
        "--name",
        "j",
        "--no-progress",
        "--json",
    )
    assert code == 0
    res = json.loads(out)
    assert res["epochs"] == 1 and Path(res["run_dir"]).name == "j"
    saved = json.loads((tmp_path / "j" / "result.json").read_text())
    assert {k: res[k] for k in ("test_acc", "test_top5", "weights", "epochs")} == {
        k: saved[k] for k in ("test_acc", "test_top5", "weights", "epochs")
    }
    correct = 80 * res["test_acc"]  # an accuracy is a count of the 80 test images, not any number in [0, 1]
    assert correct == pytest.approx(round(correct), abs=1e-9)
    assert "batch_size: 40" in (tmp_path / "j" / "config.yaml").read_text()


def test_eval_table_json_and_reports(trained_run: Path, tiny_fmnist: Path, capsys) -> None:
    code, out, _ = run_cli(capsys, "eval", str(trained_run), "--data-dir", str(tiny_fmnist))
    assert code == 0 and "top-1 acc" in out and "Ankle boot" in out
    code, out, _ = run_cli(
        capsys,
        "eval",
        str(trained_run / "last.safetensors"),
        "--data-dir",
        str(tiny_fmnist),
        "--json",
        "--no-tta-flip",
    )
    res = json.loads(out)
    assert code == 0 and res["n"] == 80 and len(res["confusion_counts"]) == 10
    assert res["top1"] == pytest.approx(1 - res["top1_error"])
    report = Path(res["out_dir"])
    assert (report / "confusion_counts.csv").is_file() and (report / "confusion_row_normalised.png").is_file()
    result = json.loads((trained_run / "result.json").read_text())
    assert result["test_acc"] > 0.3  # it learned the bands


def test_predict_files_and_folders(trained_run: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    from tests.conftest import pattern_images

    x, y = pattern_images(4, 10, 40, 3, 7)  # RGB and larger: converted to 1x28x28 like the training data
    files = []
    for i, img in enumerate(x):
        p = tmp_path / "imgs" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(img.transpose(1, 2, 0)).save(p)
        files.append(p)
    code, out, _ = run_cli(
        capsys, "predict", str(trained_run), str(files[0]), str(tmp_path / "imgs"), "-k", "3", "--json"
    )
    preds = json.loads(out)
    assert code == 0 and len(preds) == 5  # one file + a folder of four
    assert all(len(p["top"]) == 3 for p in preds)
    probs = [t["prob"] for t in preds[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    code, out, _ = run_cli(capsys, "predict", str(trained_run), str(files[1]))
    assert code == 0 and out.splitlines()[0].endswith("1.png") and "%" in out.splitlines()[1]


def test_models_lists_registry(capsys) -> None:
    code, out, _ = run_cli(capsys, "models", "quicknet")
    assert code == 0 and "quicknet_s" in out and "295,048" in out
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0 and any(r["name"] == "quicknet_m" for r in json.loads(out))


def test_other_datasets_end_to_end(tiny_cifar10: Path, tiny_folder: Path, tmp_path: Path, capsys) -> None:
    for name, data_dir in (("cifar10", str(tiny_cifar10)), (f"folder:{tiny_folder}", None)):
        argv = [
            "-q",
            "train",
            "--dataset",
            name,
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--out-dir",
            str(tmp_path),
            "--no-progress",
            "--json",
        ]
        code, out, err = run_cli(capsys, *argv, *(["--data-dir", data_dir] if data_dir else []))
        assert code == 0, err
        info = json.loads((Path(json.loads(out)["run_dir"]) / "model.json").read_text())
        assert info["in_chans"] == 3 and info["image_size"] in (32, 24)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "resnet1800"], "unknown model 'resnet1800'"),
        (["train", "--dataset", "imagenet-21k"], "unknown dataset 'imagenet-21k'"),
        (["train", "--dataset", "cifar100", "--data-dir", "{empty}"], "dataset 'cifar100' not found"),
        (["train", "--epochs", "0"], "epochs must be > 0"),
        (["train", "--config", "{empty}/none.yaml"], "does not exist"),
        (["eval", "{empty}/no-run"], "does not exist"),
        (["predict", "{empty}/no-run", "x.png"], "does not exist"),
        (["train", "--resume", "{empty}"], "cannot resume"),
    ],
)
def test_user_errors_are_one_line(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    argv = [a.replace("{empty}", str(tmp_path)) for a in argv]
    code, out, err = (
        run_cli(capsys, "-q", *argv, "--out-dir", str(tmp_path))
        if argv[0] == "train"
        else run_cli(capsys, "-q", *argv)
    )
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_corrupt_image_and_mismatched_checkpoint(trained_run: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, _, err = run_cli(capsys, "predict", str(trained_run), str(bad))
    assert code == 2 and "bad.png" in err and "Traceback" not in err
    # a run whose weights do not fit its model.json (e.g. edited by hand) is refused clearly
    broken = tmp_path / "broken"
    broken.mkdir()
    info = json.loads((trained_run / "model.json").read_text())
    info |= {"num_classes": 7, "classes": info["classes"][:7]}
    (broken / "model.json").write_text(json.dumps(info))
    (broken / "last.safetensors").write_bytes((trained_run / "last.safetensors").read_bytes())
    code, _, err = run_cli(capsys, "predict", str(broken), str(bad))
    assert code == 2 and "does not match the model" in err


def test_no_arguments_shows_help(capsys) -> None:
    code, out, _ = run_cli(capsys)
    assert code == 0 and "train" in out and "predict" in out


def test_skip_bad_on_train_eval_and_predict(tmp_path: Path, capsys) -> None:
    from PIL import Image

    from tests.conftest import pattern_images

    x, y = pattern_images(60, 2, 12, 1, 0)
    for i, (img, label) in enumerate(zip(x, y)):
        (tmp_path / "data" / "ab"[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(tmp_path / "data" / "ab"[label] / f"{i}.png")
    truncated = tmp_path / "data" / "a" / "truncated.jpg"
    Image.fromarray(x[0, 0]).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    base = ["train", "--dataset", f"folder:{tmp_path / 'data'}", "--out-dir", str(tmp_path / "runs")]
    base += ["--max-steps", "2", "--no-progress", "--val-fraction", "0"]
    code, _, err = run_cli(capsys, *base, "--name", "strict")
    assert code == 2 and "1 unreadable image(s)" in err and "truncated.jpg" in err and "--skip-bad" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, *base, "--name", "lenient", "--skip-bad")
    run = tmp_path / "runs" / "lenient"
    assert code == 0 and (run / "skipped.txt").read_text() == f"{truncated}\n"
    code, out, _ = run_cli(
        capsys, "eval", str(run), "--dataset", f"folder:{tmp_path / 'data'}", "--split", "all"
    )
    assert code == 2
    code, out, _ = run_cli(capsys, "eval", str(run), "--split", "all", "--skip-bad", "--json")
    assert code == 0 and json.loads(out)["n"] == 60
    folder_a = str(tmp_path / "data" / "a")
    assert run_cli(capsys, "predict", str(run), folder_a, "--json")[0] == 2
    code, out, _ = run_cli(capsys, "predict", str(run), folder_a, "--skip-bad", "--json")
    assert code == 0 and len(json.loads(out)) == sum(1 for v in y if v == 0)
