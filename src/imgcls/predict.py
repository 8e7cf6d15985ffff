"""Prediction: the top-k classes of images with a trained run (``imgcls predict``).

:func:`predict` takes image files and folders, and images already in memory:

- a ``PIL.Image.Image`` of any mode (converted as a file of that mode would be: alpha on black, 16-bit scaled);
- a ``torch.Tensor`` laid out as torchvision lays images out: ``(C, H, W)`` or a batch ``(B, C, H, W)``;
- a ``numpy.ndarray`` laid out as Pillow and OpenCV lay images out: ``(H, W)``, ``(H, W, C)`` or a batch
  ``(B, H, W, C)``.

``C`` is 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA). Values are ``uint8`` in 0..255, or floating point in
[0, 1] (as ``torchvision.transforms.functional.to_tensor`` gives), which is rounded to 8 bits. Every input then
takes exactly the path a file takes: converted to the run's channels, resized (bilinear, antialiased) to the run's
image size and normalised with the mean and std in the run's ``model.json``; so a file and the same picture in
memory get the same probabilities.

Each :class:`Prediction` names its input: the file's path, or ``<image N>``, ``<tensor N>``, ``<array N>`` for
in-memory inputs, ``N`` counting the images of that kind from 0 in the order given (a batch of 4 tensors is
``<tensor 0>`` .. ``<tensor 3>``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imgcls.data.folder import READ_ERRORS, BadImagesError, decode_image, image_extensions, image_to_array
from imgcls.errors import ConfigError, DataError
from imgcls.metrics import predict_logits
from imgcls.train.checkpoint import LoadedRun, load_run
from imgcls.utils.device import autocast, inference_amp, resolve_device

__all__ = ["ImageInput", "Prediction", "Predictor", "load_images", "predict"]

log = logging.getLogger(__name__)

ImageInput = str | Path | Image.Image | torch.Tensor | np.ndarray
_IN_MEMORY = (Image.Image, torch.Tensor, np.ndarray)


@dataclass
class Prediction:
    input: str  # the file's path, or <image N>, <tensor N>, <array N> for an in-memory input
    top: list[tuple[str, float]]  # (class name, probability), most probable first

    @property
    def path(self) -> str:
        """The input's name (kept from when only files were accepted)."""
        return self.input

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "top": [{"class": c, "prob": p} for c, p in self.top]}


def _files_of(item: str | Path, exts: frozenset[str]) -> list[Path]:
    """A file itself, or the image files in a folder (recursively, sorted); DataError where neither exists."""
    p = Path(item)
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        if not found:
            log.warning("no images in folder '%s'", p)
        return found
    if p.is_file():
        return [p]
    raise DataError(f"'{p}' does not exist: give image files or folders")


def _to_uint8(a: np.ndarray, name: str) -> np.ndarray:
    """uint8 as is; floats in [0, 1] scaled to 0..255 and rounded; anything else refused."""
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind != "f":
        raise DataError(
            f"{name} has dtype {a.dtype}: give uint8 values in 0..255 (convert with .astype(np.uint8) or "
            ".to(torch.uint8)) or floats in [0, 1]"
        )
    if a.size and not np.isfinite(a).all():
        raise DataError(f"{name} holds NaN or infinite values: give finite floats in [0, 1]")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < 0 or hi > 1:
        raise DataError(
            f"{name} has float values in [{lo:.4g}, {hi:.4g}], outside [0, 1]: give floats in [0, 1] "
            "(divide 0..255 values by 255), or uint8"
        )
    return np.clip(np.rint(a.astype(np.float64) * 255), 0, 255).astype(np.uint8)


def _hwc_to_pil(a: np.ndarray, name: str) -> Image.Image:
    """An (H, W) or (H, W, C) array (C in 1..4, uint8 or floats in [0, 1]) as a Pillow image."""
    a = _to_uint8(a, name)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise DataError(f"{name} is empty ({a.shape[0]}x{a.shape[1]} pixels): give an image with pixels")
    return Image.fromarray(np.ascontiguousarray(a))  # (H, W): L; (H, W, 2|3|4): LA, RGB, RGBA


def _expand(inputs: Sequence[ImageInput]) -> Iterator[tuple[str, Path | Image.Image]]:
    """(name, file or Pillow image) for every image the inputs hold, in order; folders and batches expanded."""
    counts = {"image": 0, "tensor": 0, "array": 0}
    exts = image_extensions()

    def name(kind: str) -> str:
        counts[kind] += 1
        return f"<{kind} {counts[kind] - 1}>"

    for item in inputs:
        if isinstance(item, Image.Image):
            yield name("image"), item
        elif isinstance(item, torch.Tensor):
            shape = tuple(item.shape)
            if item.ndim not in (3, 4) or shape[-3] not in (1, 2, 3, 4):
                raise DataError(
                    f"<tensor {counts['tensor']}> has shape {shape}: give (C, H, W) or (B, C, H, W) with C in "
                    "1..4 (for (H, W, C) pass x.permute(2, 0, 1))"
                )
            batch = item.detach().cpu()
            batch = batch.float() if batch.is_floating_point() else batch  # bfloat16 has no numpy dtype
            batch = batch[None] if batch.ndim == 3 else batch
            for x in batch:  # (C, H, W) -> (H, W, C)
                label = name("tensor")
                yield label, _hwc_to_pil(x.permute(1, 2, 0).numpy(), label)
        elif isinstance(item, np.ndarray):
            shape = item.shape
            if item.ndim not in (2, 3, 4) or (item.ndim >= 3 and shape[-1] not in (1, 2, 3, 4)):
                raise DataError(
                    f"<array {counts['array']}> has shape {shape}: give (H, W), (H, W, C) or (B, H, W, C) with C in "
                    "1..4 (for (C, H, W) pass a.transpose(1, 2, 0), or torch.from_numpy(a))"
                )
            for x in item if item.ndim == 4 else [item]:
                label = name("array")
                yield label, _hwc_to_pil(x, label)
        elif isinstance(item, (str, Path)):
            for f in _files_of(item, exts):
                yield str(f), f
        else:
            raise DataError(
                f"cannot classify a {type(item).__name__}: give image files, folders, Pillow images, tensors "
                "or numpy arrays"
            )


def _pil_to_array(img: Image.Image, channels: int, size: tuple[int, int], name: str) -> np.ndarray:
    """A Pillow image as the uint8 ``(C, H, W)`` array :func:`decode_image` makes of a file: same rules."""
    try:
        return image_to_array(img, channels, size)
    except READ_ERRORS as e:  # a lazily loaded image whose file is truncated
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read {name}: {reason}") from None


Logits = Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, C, H, W) at the run's size -> logits (B, K)
RunSource = str | Path | LoadedRun


def _torch_model(
    runs: list[RunSource], device: str, which: str, tta_flip: bool | None, combine: str
) -> tuple[dict[str, Any], list[str], Logits]:
    """The run's info, classes, and its logits as the run computes them (normalisation, flip TTA, autocast).

    Several runs make an ensemble (:class:`imgcls.ensemble.Ensemble`): images are read and normalised as the
    first run reads them, and each member converts them to its own normalisation and flips (or not) itself.
    """
    dev = resolve_device(device)
    if len(runs) > 1:
        from imgcls.ensemble import load_ensemble

        model, members = load_ensemble(runs, combine=combine, device=dev, which=which, tta_flip=tta_flip)
        loaded, flip = members[0], False
    else:
        loaded = runs[0] if isinstance(runs[0], LoadedRun) else load_run(runs[0], dev, which=which)
        model = loaded.model.to(dev).eval()
        flip = loaded.info.get("tta_flip", False) if tta_flip is None else tta_flip
    info = loaded.info
    mean = torch.tensor(info["mean"], device=dev).view(1, -1, 1, 1)
    std = torch.tensor(info["std"], device=dev).view(1, -1, 1, 1)
    amp: list[torch.dtype | None] = []  # chosen at the first batch, by its shape (inference_amp)

    def logits_of(pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(dev).float().div_(255).sub_(mean).div_(std)  # (B, C, H, W)
        if not amp:
            amp.append(inference_amp(model, dev, tuple(x.shape)))
        with autocast(dev, amp[0]):
            return predict_logits(model, x, flip)

    return info, loaded.classes, logits_of


def _onnx_model(path: Path, tta_flip: bool | None) -> tuple[dict[str, Any], list[str], Logits]:
    """The same for an ONNX file written by ``imgcls export``: onnxruntime, fed as its metadata says."""
    from imgcls.export.onnx import OnnxClassifier

    clf = OnnxClassifier(path)
    return clf.meta, clf.classes, lambda pixels: torch.from_numpy(clf.logits(pixels.numpy(), tta_flip))


class Predictor:
    """A loaded run (or an exported ``.onnx`` file) and its preprocessing: uint8 ``(C, H, W)`` images in, class
    probabilities out.

    What :func:`predict` and the server (``imgcls serve``) share, so both give the same probabilities for the
    same file: the same normalisation, autocast choice and test-time flip. Several runs make an ensemble
    (:class:`imgcls.ensemble.Ensemble`, combined as ``combine`` says): images are read as the first run reads
    them, and each member applies its own normalisation and test-time flip.
    """

    def __init__(
        self,
        run: RunSource | Sequence[RunSource],
        *,
        device: str = "auto",
        tta_flip: bool | None = None,
        which: str = "best",
        combine: str = "mean-logits",
    ) -> None:
        runs = list(run) if isinstance(run, (list, tuple)) else [run]
        if len(runs) == 1 and isinstance(runs[0], (str, Path)) and Path(runs[0]).suffix.lower() == ".onnx":
            self.info, self.classes, self._logits = _onnx_model(Path(runs[0]), tta_flip)
        else:
            self.info, self.classes, self._logits = _torch_model(runs, device, which, tta_flip, combine)
        self.channels: int = self.info["in_chans"]
        self.size: tuple[int, int] = (self.info["image_size"], self.info["image_size"])  # (H, W)

    @torch.no_grad()
    def probabilities(self, images: Sequence[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """Softmax probabilities ``(B, num_classes)`` (float32, CPU) of uint8 ``(C, H, W)`` images of the run's
        channels and size (what :func:`decode_image` gives)."""
        batch = (
            images if isinstance(images, torch.Tensor) else torch.stack([torch.from_numpy(a) for a in images])
        )
        return self._logits(batch).float().softmax(1).cpu()

    def top(self, probs: torch.Tensor, top_k: int) -> list[list[tuple[int, float]]]:
        """The ``top_k`` (class index, probability) of each row of ``probs``, most probable first."""
        p, idx = probs.topk(min(top_k, len(self.classes)), dim=1)
        return [list(zip(ix, pr)) for ix, pr in zip(idx.tolist(), p.tolist())]


def load_images(
    inputs: ImageInput | Sequence[ImageInput], in_chans: int, image_size: int
) -> tuple[list[str], torch.Tensor]:
    """The names of ``inputs`` and their pixels as :func:`predict` feeds them, before normalisation: uint8
    (B, ``in_chans``, ``image_size``, ``image_size``), converted and resized as the run's training images."""
    items: Sequence[ImageInput] = (
        [inputs] if isinstance(inputs, (str, Path, *_IN_MEMORY)) else list(inputs)  # type: ignore[arg-type]
    )
    size = (image_size, image_size)
    names, arrays = [], []
    for label, src in _expand(items):
        names.append(label)
        arr = (
            _pil_to_array(src, in_chans, size, label)
            if isinstance(src, Image.Image)
            else decode_image(src, in_chans, size)
        )
        arrays.append(torch.from_numpy(arr))
    if not arrays:
        raise DataError("no images: give image files, folders, Pillow images, tensors or arrays")
    return names, torch.stack(arrays)


@torch.no_grad()
def predict(
    run: RunSource | Sequence[RunSource],
    inputs: ImageInput | Sequence[ImageInput],
    *,
    top_k: int = 5,
    device: str = "auto",
    tta_flip: bool | None = None,
    which: str = "best",
    batch_size: int = 64,
    skip_bad: bool = False,
    combine: str = "mean-logits",
) -> list[Prediction]:
    """Classify images: files, folders (searched recursively), Pillow images, tensors or numpy arrays.

    ``run`` is a run directory, a weights file in one, a loaded run, or an ``.onnx`` file written by ``imgcls
    export`` (run in onnxruntime, without torch model code; ``device`` and ``which`` do not apply to it).

    ``inputs`` is one of those or a sequence of them; the layouts and value ranges accepted are in the module
    docstring. Each image is converted to the run's channels and size and normalised as in training; the result
    holds one :class:`Prediction` per image, in input order, naming its input. A list of several runs
    predicts with their ensemble, combined as ``combine`` says (see :mod:`imgcls.ensemble`). Every file is
    tried: unreadable ones raise one :class:`BadImagesError` naming them, or with ``skip_bad`` are left out
    (and logged).
    """
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}: pass -k 1 or more")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}: pass --batch-size 1 or more")
    items: Sequence[ImageInput] = (
        [inputs] if isinstance(inputs, (str, Path, *_IN_MEMORY)) else list(inputs)  # type: ignore[arg-type]
    )
    predictor = Predictor(run, device=device, tta_flip=tta_flip, which=which, combine=combine)
    channels, size, classes = predictor.channels, predictor.size, predictor.classes
    images = list(
        _expand(items)
    )  # files stay paths (decoded a batch at a time); in-memory inputs are checked
    if not images:
        raise DataError("no images to classify: give image files, folders, Pillow images, tensors or arrays")
    out: list[Prediction] = []
    bad: list[tuple[Path, str]] = []
    for i in range(0, len(images), batch_size):
        read: list[tuple[str, np.ndarray]] = []
        for label, src in images[i : i + batch_size]:
            if isinstance(src, Image.Image):
                read.append((label, _pil_to_array(src, channels, size, label)))
                continue
            try:
                read.append((label, decode_image(src, channels, size)))
            except DataError as e:
                bad.append((src, str(e)))
        if not read or (bad and not skip_bad):
            continue  # the rest is still read, so that one error names every bad file
        tops = predictor.top(predictor.probabilities([a for _, a in read]), top_k)
        for (label, _), top in zip(read, tops):
            out.append(Prediction(label, [(classes[j], q) for j, q in top]))
    if bad and not skip_bad:
        raise BadImagesError([p for p, _ in bad], [r for _, r in bad])
    if bad:
        log.warning(
            "skipped %d unreadable image(s) (--skip-bad): %s",
            len(bad),
            ", ".join(str(p) for p, _ in bad[:20]),
        )

    return out
