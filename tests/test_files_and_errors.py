from __future__ import annotations

from pathlib import Path

import pytest

from imgcls.errors import unknown_name
from imgcls.utils.files import atomic_path, atomic_write_json


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"a": 2, "broken')
            raise RuntimeError("killed mid-write")
    assert target.read_text().strip() == '{\n  "a": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind


def test_unknown_name_suggests_close_matches() -> None:
    err = unknown_name("model", "resnt18", ["resnet18", "resnet34", "vgg16"])
    assert "did you mean resnet18" in str(err)
    err = unknown_name("dataset", "zzz", ["a", "b"])
    assert "valid: a, b" in str(err)
