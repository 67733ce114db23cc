import json

import numpy as np
import pytest

from voxgan.atomic import append_json_line, atomic_open, atomic_path, write_json_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half of the new")
        raise RuntimeError("crash in the middle")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_finished_write_replaces_the_file(tmp_path):
    target = tmp_path / "shard.h5"
    with atomic_path(target) as tmp:
        assert tmp != str(target) and not target.exists()
        with open(tmp, "wb") as handle:
            handle.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["shard.h5"]


def test_json_is_written_whole_and_indented_and_a_record_that_cannot_be_written_leaves_the_old_file(tmp_path):
    target = tmp_path / "manifest.json"
    write_json_atomic(target, {"count": 2, "name": "é"})
    assert target.read_text() == '{\n  "count": 2,\n  "name": "\\u00e9"\n}\n'
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert json.loads(target.read_text())["count"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_json_lines_append_one_record_a_line_with_numpy_numbers_as_floats(tmp_path):
    target = tmp_path / "metrics.jsonl"
    append_json_line(target, {"step": 1, "fid": np.float32(0.5)})
    append_json_line(target, {"step": 2})
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert records == [{"step": 1, "fid": 0.5}, {"step": 2}]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_a_new_file_gets_under_the_umask(tmp_path, umask, mode):
    """Checkpoints, shards and pictures are readable by colleagues where the umask lets them be, as any
    new file is, not owner-only as a temporary file is made."""
    import stat
    import subprocess
    import sys

    script = (
        f"import os; os.umask({umask}); from pathlib import Path; import h5py; "
        "from voxgan.atomic import atomic_path, write_once, write_text_atomic; "
        f"folder = Path({str(tmp_path)!r}); write_text_atomic(folder / 'a.json', '{{}}'); "
        "write_once(folder / 'b.bin', b'x')\n"
        "with atomic_path(folder / 'c.h5') as tmp: h5py.File(tmp, 'w').close()"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    for name in ("a.json", "b.bin", "c.h5"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
