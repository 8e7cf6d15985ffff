"""The HTTP server of ``imgcls serve``: a FastAPI app around a trained run, run by uvicorn.

Routes:

- ``POST /predict``: a multipart form with one or more image files in the field ``file`` (or a raw body of
  type ``image/*``). One file gives ``{"model", "run", "predictions": [{"label", "index", "prob"}, ...]}``,
  the top ``k`` (query parameter, default 5) most probable first; several give ``{"model", "run", "results":
  [{"filename", "predictions"}, ...]}`` in the order sent. The probabilities are those of ``imgcls predict``
  on the same file: both decode with :func:`imgcls.data.folder.decode_image` and classify with
  :class:`imgcls.predict.Predictor`.
- ``GET /health``: 200 with the model's name and the batching counts (the model is loaded before the server
  accepts connections).
- ``GET /``: a page to upload an image and see its top 5; its script and style are served from this package,
  and its Content-Security-Policy lets it load nothing from anywhere else.

Bad input is answered, never crashes the server: a body over ``max_upload_mb`` gets 413 before it is read
(from its Content-Length; a body without one is counted as it streams and cut off at the limit), a content
type other than an image gets 415, bytes that are no image or an image declaring more than ``max_pixels``
pixels (a decompression bomb) get 400, without decoding it. Each error is JSON ``{"detail": "one line"}``.

Requests are micro-batched (:class:`imgcls.serve.batcher.MicroBatcher`): the images of concurrent requests go
through the model together, up to ``batch_size`` at a time.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import torch
from PIL import Image

from imgcls.data.folder import decode_image
from imgcls.errors import ConfigError, DataError
from imgcls.predict import Predictor
from imgcls.serve.batcher import MicroBatcher

try:
    import anyio
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.datastructures import UploadFile
except ImportError as e:  # the [serve] extra is not installed
    raise ConfigError(
        f"imgcls serve needs fastapi, uvicorn and python-multipart ({e.name} is missing): "
        "pip install 'imgcls[serve]'"
    ) from None

__all__ = ["DEFAULT_MAX_PIXELS", "bind_socket", "create_app", "serve"]

log = logging.getLogger(__name__)

# 40 megapixels: a large camera's photo. Decoded as RGB that is 120 MB; a declared size above it is refused
# from the header, before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000
# Content types of an upload that may hold an image (browsers and curl send the file's type, or
# application/octet-stream when they do not know it).
_GENERIC_TYPES = {"", "application/octet-stream"}
# At most this many images decode at once: each may take max_pixels * 3 bytes while it does.
_DECODE_THREADS = 2
# Files one request may carry.
_MAX_FILES = 64
_STATIC = {  # page assets: (file in imgcls/serve/static, media type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
_SECURITY_HEADERS = {
    # The page may talk to this server only: no script, style, font or image from anywhere else.
    "content-security-policy": (
        "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _too_large(limit: int) -> str:
    return (
        f"upload larger than the server's limit of {limit / 2**20:g} MB: send a smaller image "
        "(or start the server with a larger --max-upload-mb)"
    )


class _BodyLimit:
    """ASGI middleware: 413 for a request whose body is over ``limit`` bytes, before that body is read.

    A declared Content-Length over the limit is answered at once; a body sent without one (chunked) is counted
    as it arrives and cut off with 413 as soon as it passes the limit, so no more than the limit is ever read.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            size = int(declared) if declared.isdigit() else -1
            if size < 0 or size > self.limit:
                status, detail = (413, _too_large(self.limit)) if size > 0 else (400, "bad Content-Length")
                response = JSONResponse({"detail": detail}, status, headers={"connection": "close"})
                await response(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, _too_large(self.limit), headers={"connection": "close"})
            return message

        await self.app(scope, limited, send)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _check_image_type(content_type: str | None, name: str) -> None:
    media = _media_type(content_type)
    if media not in _GENERIC_TYPES and not media.startswith("image/"):
        raise HTTPException(
            415,
            f"'{name}' has content type '{media}', not an image: send an image file (PNG, JPEG, ...) "
            "as image/* or application/octet-stream",
        )


def _finite(p: float) -> float | None:
    return p if math.isfinite(p) else None  # JSON has no NaN


def create_app(
    run_dir: str | Path,
    *,
    batch_size: int = 16,
    max_upload_mb: float = 10.0,
    max_wait_ms: float = 2.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    device: str = "auto",
    which: str = "best",
    tta_flip: bool | None = None,
) -> FastAPI:
    """A FastAPI app that classifies uploaded images with the run in ``run_dir`` (routes: module docstring).

    The run is loaded here, so a bad run directory raises at once (an :class:`ImgclsError`), before any server
    starts; the micro-batcher's worker runs while the app's lifespan does.
    """
    problems = []
    if batch_size < 1:
        problems.append(f"--batch-size must be >= 1, got {batch_size}")
    if not 0 < max_upload_mb <= 1024:
        problems.append(f"--max-upload-mb must be in (0, 1024], got {max_upload_mb:g}")
    if not 0 <= max_wait_ms <= 1000:
        problems.append(f"--max-wait-ms must be in [0, 1000], got {max_wait_ms:g}")
    if max_pixels < 1:
        problems.append(f"--max-pixels must be >= 1, got {max_pixels}")
    if problems:
        raise ConfigError("; ".join(problems))
    limit = int(max_upload_mb * 2**20)
    # Pillow's own decompression-bomb guard, set explicitly rather than left at its default (89 M pixels): it
    # refuses (DecompressionBombError) what declares more than twice this, even where decode_image's own check
    # of the header (max_pixels) is bypassed. The setting is per process; a server process serves one run.
    Image.MAX_IMAGE_PIXELS = max_pixels

    predictor = Predictor(run_dir, device=device, tta_flip=tta_flip, which=which)
    info, classes = predictor.info, predictor.classes
    run_name = Path(run_dir).name if Path(run_dir).is_dir() else Path(run_dir).parent.name

    def classify(images: list[Any]) -> list[torch.Tensor]:
        return list(predictor.probabilities(images))  # (B, K) -> B rows of (K,)

    batcher: MicroBatcher[Any, torch.Tensor] = MicroBatcher(
        classify, max_batch=batch_size, max_wait_s=max_wait_ms / 1000
    )
    decode_limiter = anyio.CapacityLimiter(_DECODE_THREADS)
    # One forward pass now: the first request should not pay for lazy initialisation.
    classify([torch.zeros((predictor.channels, *predictor.size), dtype=torch.uint8).numpy()])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        log.info(
            "serving %s (%s, %d classes) with batches of up to %d",
            run_name,
            info["model"],
            len(classes),
            batch_size,
        )
        try:
            yield
        finally:
            batcher.close()

    app = FastAPI(title="imgcls", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.predictor = predictor
    app.state.batcher = batcher
    app.add_middleware(_BodyLimit, limit=limit)

    def decode(source: BinaryIO, name: str) -> Any:
        return decode_image(source, predictor.channels, predictor.size, name=name, max_pixels=max_pixels)

    async def predictions(source: BinaryIO, name: str, k: int) -> list[dict[str, Any]]:
        try:
            image = await anyio.to_thread.run_sync(decode, source, name, limiter=decode_limiter)
        except DataError as e:
            raise HTTPException(400, str(e)) from None
        probs = await asyncio.wrap_future(batcher.submit(image))
        (top,) = predictor.top(probs[None], k)
        return [{"label": classes[i], "index": i, "prob": _finite(p)} for i, p in top]

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        k_arg = request.query_params.get("k", "5")
        if not k_arg.isdigit() or int(k_arg) < 1:
            raise HTTPException(400, f"k must be a whole number >= 1, got '{k_arg}': pass ?k=5")
        k = int(k_arg)
        head = {"model": info["model"], "run": run_name}
        media = _media_type(request.headers.get("content-type"))
        if media != "multipart/form-data":  # a raw body: one image
            _check_image_type(media, "the request body")
            body = io.BytesIO()
            async for chunk in request.stream():  # bounded by _BodyLimit
                body.write(chunk)
            body.seek(0)
            return {**head, "predictions": await predictions(body, "upload", k)}
        async with request.form(max_files=_MAX_FILES, max_fields=_MAX_FILES) as form:
            files = form.getlist("file")
            if not files or not all(isinstance(f, UploadFile) for f in files):
                raise HTTPException(400, "no file: send the image as the multipart form field 'file'")
            for f in files:
                _check_image_type(f.content_type, f.filename or "file")
            names = [f.filename or f"file {i}" for i, f in enumerate(files)]
            tops = await asyncio.gather(*(predictions(f.file, n, k) for f, n in zip(files, names)))
        if len(files) == 1:
            return {**head, "predictions": tops[0]}
        return {**head, "results": [{"filename": n, "predictions": t} for n, t in zip(names, tops)]}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = batcher.stats
        return {
            "status": "ok",
            "model": info["model"],
            "run": run_name,
            "classes": len(classes),
            "image_size": info["image_size"],
            "in_chans": info["in_chans"],
            "batches": stats.batches,
            "images": stats.items,
            "largest_batch": stats.largest,
        }

    def asset(route: str) -> Callable[[], Awaitable[Response]]:
        filename, media_type = _STATIC[route]
        content = resources.files("imgcls.serve").joinpath("static", filename).read_bytes()

        async def get() -> Response:
            return Response(content, media_type=media_type, headers=_SECURITY_HEADERS)

        return get

    for route in _STATIC:
        app.get(route, include_in_schema=False)(asset(route))
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port); ConfigError naming the flag to change."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ConfigError(
            f"cannot resolve --host '{host}': {e.strerror}: give an address such as 127.0.0.1"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {e.strerror or e}: pass another --port or --host"
        ) from None
    sock.set_inheritable(True)
    return sock


def serve(
    run_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    access_log: bool = True,
    **app_options: Any,
) -> None:
    """Serve ``run_dir`` over HTTP until interrupted (Ctrl-C or SIGTERM); options as :func:`create_app`."""
    import uvicorn

    app = create_app(run_dir, **app_options)
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    log.info("imgcls serve: http://%s:%d/ (Ctrl-C stops)", shown, bound)
    config = uvicorn.Config(app, log_config=None, access_log=access_log, timeout_keep_alive=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
