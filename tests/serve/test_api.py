"""POST /predict, GET /health and GET / against a real uvicorn server: answers, and every kind of bad input."""

from __future__ import annotations

import socket
import struct
import zlib
from pathlib import Path

import httpx
import pytest

from imgcls.predict import predict

from .conftest import Running


def expected(run_dir: Path, path: Path, k: int = 5) -> list[dict]:
    """What ``imgcls predict`` says of the file, in the server's format.

    The server answers a micro-batch of images, ``predict`` one image: the same classes, and probabilities equal
    to float32 rounding (on an AVX2 CPU the batched kernels round the 8th digit differently).
    """
    (pred,) = predict(run_dir, [path], top_k=k)
    classes = [str(i) for i in range(10)]
    return [
        {"label": c, "index": classes.index(c), "prob": pytest.approx(p, rel=1e-5, abs=1e-7)}
        for c, p in pred.top
    ]


def post(server: Running, *paths: Path, k: int | None = None) -> httpx.Response:
    files = [
        ("file", (p.name, p.read_bytes(), "image/png" if p.suffix == ".png" else "image/jpeg")) for p in paths
    ]
    params = {} if k is None else {"k": k}
    return httpx.post(f"{server.url}/predict", files=files, params=params, timeout=30)


def test_health_names_the_model(server: Running) -> None:
    r = httpx.get(f"{server.url}/health")
    assert r.status_code == 200
    body = r.json()
    assert (body["status"], body["model"], body["run"], body["classes"]) == ("ok", "quicknet_s", "d", 10)


def test_predict_is_identical_to_imgcls_predict(server: Running, run_dir: Path, images: list[Path]) -> None:
    for path in images[:4]:
        r = post(server, path)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "quicknet_s"
        assert body["predictions"] == expected(run_dir, path)
        probs = [p["prob"] for p in body["predictions"]]
        assert probs == sorted(probs, reverse=True) and len(probs) == 5


def test_several_files_answer_in_order(server: Running, run_dir: Path, images: list[Path]) -> None:
    r = post(server, *images[:3], k=2)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["filename"] for x in results] == [p.name for p in images[:3]]
    for x, path in zip(results, images[:3]):
        assert x["predictions"] == expected(run_dir, path, k=2)


def test_top_k_and_a_raw_image_body(server: Running, run_dir: Path, images: list[Path]) -> None:
    assert len(post(server, images[0], k=100).json()["predictions"]) == 10  # all the classes there are
    r = httpx.post(
        f"{server.url}/predict", content=images[0].read_bytes(), headers={"content-type": "image/png"}
    )
    assert r.status_code == 200 and r.json()["predictions"] == expected(run_dir, images[0])
    bad_k = post(server, images[0], k=0)
    assert bad_k.status_code == 400 and "k must be" in bad_k.json()["detail"]


def test_the_page_and_its_assets_are_local(server: Running) -> None:
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'id="file"' in page.text and "http" not in page.text  # no address outside the server
    for asset in ("/static/app.js", "/static/style.css"):
        r = httpx.get(f"{server.url}{asset}")
        assert r.status_code == 200 and "http" not in r.text


def test_wrong_content_types_get_415(server: Running) -> None:
    r = httpx.post(f"{server.url}/predict", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "notes.txt" in r.json()["detail"]
    r = httpx.post(f"{server.url}/predict", json={"file": "x"})
    assert r.status_code == 415 and "application/json" in r.json()["detail"]


@pytest.mark.parametrize(
    "content",
    [b"hello, not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b""],
    ids=["text", "broken-png", "empty"],
)
def test_bytes_that_are_no_image_get_400(server: Running, content: bytes) -> None:
    r = httpx.post(f"{server.url}/predict", files={"file": ("x.png", content, "image/png")})
    assert r.status_code == 400 and "cannot read image 'x.png'" in r.json()["detail"]


def test_a_form_without_a_file_gets_400(server: Running) -> None:
    r = httpx.post(f"{server.url}/predict", files={"other": (None, b"1")})  # multipart, no file
    assert r.status_code == 400 and "'file'" in r.json()["detail"]
    r = httpx.post(f"{server.url}/predict", files={"file": (None, b"1")})  # a plain field named file
    assert r.status_code == 400 and "'file'" in r.json()["detail"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A valid 8-bit grayscale PNG of ``width`` x ``height`` zeros: kilobytes that inflate to gigabytes."""
    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_gets_400_without_being_decoded(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageFile

    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self.size) or real_load(self))
    bomb = png_bomb(7000, 7000)  # 49 M pixels, over the 40 M limit; 48 KB on the wire
    assert len(bomb) < 100_000
    r = httpx.post(f"{server.url}/predict", files={"file": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 400 and "7000x7000" in r.json()["detail"]
    assert loads == []  # refused from the header: no pixel decoded
    # Declaring 10^10 pixels: Pillow's own guard (set by the server) refuses it as it opens the file.
    huge = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0))
    r = httpx.post(
        f"{server.url}/predict", files={"file": ("huge.png", huge + _chunk(b"IEND", b""), "image/png")}
    )
    assert r.status_code == 400 and "decompression bomb" in r.json()["detail"]
    assert loads == []


def _raw_request(server: Running, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a request by hand (so the test controls what is sent) and read the server's answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head)
        for c in body_chunks:
            s.sendall(c)
        answer = b""
        while b"\r\n\r\n" not in answer:
            got = s.recv(65536)
            if not got:
                break
            answer += got
        return answer


def test_an_upload_over_the_limit_gets_413_before_it_is_read(server: Running) -> None:
    # A declared 50 MB body: answered from the headers alone, no byte of the body sent.
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        b"Content-Length: 52428800\r\n\r\n"
    )
    answer = _raw_request(server, head, [])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # No length declared (chunked): cut off once past the 1 MB limit, with the rest never sent.
    head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"%x\r\n%s\r\n" % (65536, b"\0" * 65536)
    answer = _raw_request(server, head, [piece] * 17)  # 17 x 64 KB = 1.06 MB
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # The same through a multipart form.
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    start = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    answer = _raw_request(server, head, [b"%x\r\n%s\r\n" % (len(start), start)] + [piece] * 17)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_server_keeps_serving_after_bad_input(server: Running, run_dir: Path, images: list[Path]) -> None:
    for content in (b"junk", png_bomb(7000, 7000)[:5000], b"\x89PNG\r\n\x1a\n"):
        assert (
            httpx.post(f"{server.url}/predict", files={"file": ("x.png", content, "image/png")}).status_code
            == 400
        )
    _raw_request(server, b"POST /predict HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", [])  # hangs up mid-body
    r = post(server, images[5])
    assert r.status_code == 200 and r.json()["predictions"] == expected(run_dir, images[5])
