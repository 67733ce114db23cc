"""Hostile files: every finding of the fuzzing campaign (``benchmarks/fuzz_readers.py``) stays fixed, and a
short seeded run of the campaign itself finds nothing.

``fuzz_regressions/`` holds the files the campaign found, each a one-line reason today. Before the fixes
they raised ``ValueError`` (a PLY count written '¹', a digit to ``str.isdigit`` but not to ``int``),
``tokenize.TokenError``, ``OverflowError``, ``zlib.error``, ``NotImplementedError`` or h5py's
``RuntimeError`` out of the readers, gave a reason of two lines (a newline in an .npz member's name),
crashed the process inside scipy's MATLAB v5 reader (a segmentation fault), failed an assertion (glTF
positions of one number each, ``"POSITION": true`` naming accessor 1), ran out of memory naming the
537 million volumes a MATLAB header claimed, or held a worker for minutes
walking a glTF node tree that shares its children 2⁴⁰ times.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.hostile import fuzzer
from voxgan.ingest import formats
from voxgan.ingest.formats import MeshError, mat
from voxgan.ingest.sample import Settings, voxelize_source

REGRESSIONS = Path(__file__).parent / "fuzz_regressions"

# file -> a piece of the reason it must give
FINDINGS = {
    "npy_header_token_error.npy": "bad .npy header",
    "npy_memmap_overflow.npy": "claims more data than the file holds",
    "npz_zlib_error.npz": "cannot read .npz member",
    "npz_zip_version.npz": "cannot read .npz: zip file version",
    "npz_newline_in_name.npz": "cannot read .npz member v xels.npy",
    "mat73_bad_symbol_table.mat": "cannot read .mat (v7.3)",
    "mat73_link_iteration.mat": "cannot read .mat (v7.3)",
    "mat5_scipy_segfault.mat": "cannot read .mat",
    "mat5_scipy_segfault_stack.mat": "cannot read .mat",
    "gltf_exponential_tree.gltf": "node tree is too deep or too large",
    "glb_exponential_tree.glb": "node tree is too deep or too large",
    "gltf_scalar_positions.gltf": "POSITION accessor holds 1 numbers a vertex",
    "mat5_stack_claims_billions.mat": "need 34,359,738,496 values, the file holds 128",
    "mat5_ragged_dimensions.mat": "a damaged element (buffer size must be a multiple",
    "ply_superscript_count.ply": "cannot parse PLY: bad header line: element",
}


def read_all(root: Path, name: str):
    """Read a file as a pipeline worker does: every source it names."""
    return [
        formats.read_source(root, source, max_faces=2_000_000)
        for source in formats.volume_sources(root, [name])
    ]


def test_every_finding_is_in_the_table():
    assert sorted(p.name for p in REGRESSIONS.iterdir()) == sorted(FINDINGS)


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_fuzz_finding_is_one_line_reason(name):
    with pytest.raises(MeshError, match=FINDINGS[name].replace("(", r"\(").replace(")", r"\)")) as caught:
        read_all(REGRESSIONS, name)
    assert "\n" not in str(caught.value)


def test_fuzz_finding_through_the_worker_entry(tmp_path):
    """voxelize_source (what a pool worker runs) turns each finding into a reason, not an exception name."""
    settings = Settings(root=str(REGRESSIONS), resolution=8, mode="solid", padding=0.5, up_axis="z",
                        max_faces=2_000_000, grid_coords=False)  # fmt: skip
    for name in FINDINGS:
        for source in formats.volume_sources(REGRESSIONS, [name]):
            outcome = voxelize_source(settings, source)
            assert outcome.reason is not None and FINDINGS[name].split()[0] in outcome.reason, (
                name,
                outcome.reason,
            )


def test_mat_v5_read_by_our_reader_matches_what_scipy_wrote(tmp_path):
    """Compressed (MATLAB's default) and plain v5 files, every numeric class and logical, texts and cells
    beside them skipped: the arrays come back equal, in MATLAB's index order."""
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    arrays = {
        "instance": rng.integers(0, 2, (5, 6, 7)).astype(np.uint8),
        "stack": rng.random((2, 4, 4, 4)) > 0.5,
        "floats": rng.random((3, 3, 3)).astype(np.float32),
        "ints": rng.integers(-9, 9, (4, 4, 4)).astype(np.int16),
    }
    for compressed in (False, True):
        path = tmp_path / f"v5-{compressed}.mat"
        savemat(path, {**arrays, "text": "a label", "cell": np.array([1, "a"], dtype=object)},
                do_compression=compressed)  # fmt: skip
        assert mat._v5_shapes(path) == {name: array.shape for name, array in arrays.items()}
        for name, array in arrays.items():
            got = mat._load_v5(str(path), name)
            assert got.dtype == array.dtype and np.array_equal(got, array), name


def test_mat_v5_compressed_element_never_inflates_past_the_cap(tmp_path, monkeypatch):
    """A compressed element that would inflate past MAX_WHOLE_BYTES is refused while inflating (a zip
    bomb: 2 MB of zeros in a 2 KB file with the cap lowered to 1 MB)."""
    header = b"MATLAB 5.0 MAT-file".ljust(116) + b"\0" * 8 + b"\x00\x01IM"
    bomb = zlib.compress(b"\0" * 2_000_000)
    path = tmp_path / "bomb.mat"
    path.write_bytes(header + np.array([15, len(bomb)], "<u4").tobytes() + bomb)
    monkeypatch.setattr(mat, "MAX_WHOLE_BYTES", 1_000_000)
    with pytest.raises(MeshError, match="inflates past 1,000,000 bytes"):
        read_all(tmp_path, "bomb.mat")


def test_mat_v73_data_in_another_file_is_never_read(tmp_path):
    """An HDF5 dataset may keep its bytes in another file (external storage) or link to another file:
    a .mat naming a secret file beside the input folder is refused, and the secret is never opened."""
    root = tmp_path / "input"
    root.mkdir()
    secret = tmp_path / "secret.raw"
    secret.write_bytes(np.ones((4, 4, 4), np.uint8).tobytes())
    with h5py.File(root / "external.mat", "w") as f:
        f.create_dataset("instance", shape=(4, 4, 4), dtype=np.uint8, external=[(str(secret), 0, 64)])
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["instance"] = np.ones((4, 4, 4), np.uint8)
    with h5py.File(root / "link.mat", "w") as f:
        f["instance"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "instance")
    with pytest.raises(MeshError, match="keeps its data in another file"):
        read_all(root, "external.mat")
    with pytest.raises(MeshError, match="links to another file"):
        read_all(root, "link.mat")


def test_a_stack_claiming_more_volumes_than_bytes_is_one_error_not_a_billion_sources(tmp_path):
    """An HDF5 dataset may declare any shape and store nothing (chunks never written): a v7.3 .mat claiming
    2⁴⁰ volumes stays one source, whose read names the lie (its sources alone would fill the memory)."""
    with h5py.File(tmp_path / "vast.mat", "w") as f:
        f.create_dataset("instance", shape=(4, 4, 4, 2**40), dtype=np.uint8, chunks=(4, 4, 4, 1))
    assert formats.volume_sources(tmp_path, ["vast.mat"]) == ["vast.mat"]
    with pytest.raises(MeshError, match="claims a stack of 1,099,511,627,776 volumes"):
        formats.read_source(tmp_path, "vast.mat")


def test_short_seeded_campaign_finds_nothing(tmp_path):
    """A few hundred mutated inputs of every format, through a real worker process with its memory cap
    and time limit: each ends as a sample or a one-line error (no crash, hang, overrun or escape)."""
    fuzz_readers = fuzzer()
    counts = fuzz_readers.campaign(
        60, list(fuzz_readers.FORMATS), seed=1234, time_limit=60.0, memory_cap_mib=1024,
        findings=tmp_path / "findings", minutes=None,
    )  # fmt: skip
    counts.pop("_settings")
    findings = sorted(path.name for path in (tmp_path / "findings").glob("*.txt"))
    for fmt, count in counts.items():
        assert count["inputs"] == 60, fmt
        assert count["sample"] + count["error"] == 60, (fmt, count, findings)
    assert sum(count["sample"] for count in counts.values()) > 0  # mutants of real files, some still good


def test_seeds_are_real_files_of_each_format(tmp_path):
    """The campaign's seeds read as samples (so its mutants start from files the readers accept)."""
    fuzz_readers = fuzzer()
    root = tmp_path / "input"
    seeds = fuzz_readers.write_seeds(root)
    for fmt, names in seeds.items():
        good = 0
        for name in names:
            try:
                read_all(root, name)
                good += 1
            except MeshError as error:  # the seeds that point outside the input folder are refused
                assert "outside" in str(error) or "no finite" in str(error) or "URL" in str(error), (
                    name,
                    error,
                )
        assert good >= 1, fmt
