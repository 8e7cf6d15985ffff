"""``imgcls serve RUN``: serve a trained run over HTTP (POST /predict, GET /health, an upload page at /)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a trained run over HTTP",
        description=(
            "Serve a trained run over HTTP: POST /predict (multipart field 'file'), GET /health, and an upload "
            "page at /. Needs the serve extra: pip install 'imgcls[serve]'."
        ),
    )
    p.add_argument("run", help="run directory (runs/NAME) or a .safetensors file inside one")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=8000, help="port to listen on, 0 for a free one (default: 8000)"
    )
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body (default: 10)")
    p.add_argument("--batch-size", type=int, default=16, help="most images per forward pass (default: 16)")
    p.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="longest wait for a batch to fill (default: 2)"
    )
    p.add_argument(
        "--max-pixels", type=int, default=None, help="largest image (width x height) accepted (default: 40 M)"
    )
    p.add_argument("--weights", default="best", choices=["best", "last"])
    p.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.serve import serve
    from imgcls.serve.app import DEFAULT_MAX_PIXELS

    serve(
        args.run,
        host=args.host,
        port=args.port,
        access_log=not args.no_access_log,
        batch_size=args.batch_size,
        max_upload_mb=args.max_upload_mb,
        max_wait_ms=args.max_wait_ms,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
        device=args.device,
        which=args.weights,
        tta_flip=args.tta_flip,
    )
    return 0
