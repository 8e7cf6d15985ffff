"""Serving a trained run over HTTP (``imgcls serve``): a FastAPI app, a micro-batcher and an upload page.

Needs the ``serve`` extra (``pip install 'imgcls[serve]'``: fastapi, uvicorn, python-multipart); importing
:mod:`imgcls` or this package does not import them: :func:`create_app` and :func:`serve` do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgcls.serve.batcher import BatchStats, MicroBatcher

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["BatchStats", "MicroBatcher", "create_app", "serve"]


def create_app(run_dir: str | Path, **options: Any) -> FastAPI:
    """A FastAPI app serving ``run_dir``: see :func:`imgcls.serve.app.create_app`."""
    from imgcls.serve.app import create_app as _create_app

    return _create_app(run_dir, **options)


def serve(run_dir: str | Path, **options: Any) -> None:
    """Serve ``run_dir`` until interrupted: see :func:`imgcls.serve.app.serve`."""
    from imgcls.serve.app import serve as _serve

    _serve(run_dir, **options)
