"""ivlite.common's atomic writes: the old file or folder survives a failed write, nothing
temporary is left behind, and a cache folder another process finished first is kept."""

import json

import pytest

from ivlite.common import atomic_write, atomic_write_dir, atomic_write_json, atomic_write_text, \
    is_temporary


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_json(path, {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n'

    def half_then_fail(tmp):
        tmp.write_text('{"a": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    atomic_write_json(path, [1], indent=None, newline=False)
    assert path.read_text() == "[1]"


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "state"
    assert atomic_write_dir(folder, lambda tmp: (tmp / "a.txt").write_text("1"))

    def fail(tmp):
        (tmp / "a.txt").write_text("2")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write_dir(folder, fail)
    assert (folder / "a.txt").read_text() == "1"
    assert atomic_write_dir(folder, lambda tmp: (tmp / "b.txt").write_text("3"))
    assert sorted(p.name for p in folder.iterdir()) == ["b.txt"]  # replaced, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # no .tmp or .old left


def test_a_cache_folder_finished_first_is_kept(tmp_path):
    folder = tmp_path / "cache"
    assert atomic_write_dir(folder, lambda tmp: (tmp / "v.txt").write_text("first"),
                            replace=False)
    assert not atomic_write_dir(folder, lambda tmp: (tmp / "v.txt").write_text("second"),
                                replace=False)
    assert (folder / "v.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_temporaries_are_recognised_by_name(tmp_path):
    path = tmp_path / "metrics.json"

    def look(tmp):
        assert is_temporary(tmp.name), tmp.name
        tmp.write_text("{}")

    atomic_write(path, look)
    assert not is_temporary("metrics.json") and not is_temporary(".tmp")
    assert not is_temporary(".metrics.json.tmp") and is_temporary(".step-000004.123.tmp")
