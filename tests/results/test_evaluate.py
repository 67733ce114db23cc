"""voxgan.results.evaluate: a run's record with its context rows and classes, the table, metrics.jsonl,
and the command line."""

import json
import subprocess
import sys

from tests.results.sources import CLASSES, make_run
from voxgan.results.evaluate import evaluate_run


def test_evaluate_run_records_metrics_with_context_and_classes(evaluation_shards, tmp_path):
    run_dir = make_run(tmp_path / "runs", conditional=True, step=7)
    record = evaluate_run(run_dir, evaluation_shards, split="test")
    for key in ("step", "split", "num", "mmd_iou", "cov_iou", "nna_iou", "mmd_cd", "cov_cd", "nna_cd", "fid"):
        assert key in record
    assert record["step"] == 7 and record["num"] == 40 and record["split"] == "test"
    train, noise = record["context"]["train"], record["context"]["noise"]
    # the train split is a far better generator than noise or an untrained network
    assert train["mmd_iou"] < noise["mmd_iou"] and train["cov_iou"] > noise["cov_iou"]
    assert train["nna_iou"] < 0.75 and noise["nna_cd"] > 0.9
    assert train["fid"] < noise["fid"] and train["fid"] < record["fid"]
    assert set(record["per_class"]) <= set(CLASSES) and record["per_class"]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["nna_iou"] == record["nna_iou"]
    table = (run_dir / "eval-step-0000007.md").read_text()
    assert "train split (ceiling)" in table and "synthetic:noise (floor)" in table and "class torus" in table


def test_evaluate_cli_prints_table_and_appends(evaluation_shards, tmp_path):
    run_dir = make_run(tmp_path / "runs", step=3)
    args = ["evaluate", "--data", str(evaluation_shards), "--num", "12", "--device", "cpu", "--no-context"]
    done = subprocess.run(
        [sys.executable, "-m", "voxgan", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "newest run" in done.stderr and "| model |" in done.stdout
    record = json.loads((run_dir / "metrics.jsonl").read_text())
    assert record["num"] == 12 and "context" not in record
    done = subprocess.run(
        [sys.executable, "-m", "voxgan", "evaluate", "--data", str(evaluation_shards), "--split", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "nope" in done.stderr and len(done.stderr.strip().splitlines()) == 2


def test_a_full_disk_ends_in_one_line_and_a_rerun_records_once(evaluation_shards, tmp_path, full_disk_dir):
    """evaluate with a run folder on a full filesystem: exit 1 and one line naming the run folder, the
    checkpoint untouched, no table, no record and no temporary; after space is freed the same command
    writes the table and one record, as a run on a roomy disk does."""
    import shutil

    run_dir = make_run(tmp_path / "runs", step=3)
    disk = full_disk_dir(16 * 1024 * 1024)
    on_disk = shutil.copytree(run_dir, disk.path / "runs" / run_dir.name)
    before = {p.relative_to(on_disk): p.read_bytes() for p in on_disk.rglob("*") if p.is_file()}
    args = ["evaluate", "--data", str(evaluation_shards), "--num", "8", "--device", "cpu", "--no-context"]

    def evaluate(run):
        return subprocess.run([sys.executable, "-m", "voxgan", *args, "--run", str(run)], capture_output=True,
                              text=True, cwd=tmp_path, preexec_fn=disk.preexec_fn)  # fmt: skip

    evaluate_run(run_dir, evaluation_shards, num=8, context=False)  # on a roomy disk: what to end with
    disk.fill()
    full = evaluate(on_disk)
    assert full.returncode == 1, full.stderr
    assert full.stderr.strip().splitlines()[-1] == (
        f"voxgan: error: {on_disk}: no space left on the device; free some and run the same command again"
    )
    after = {p.relative_to(on_disk): p.read_bytes() for p in on_disk.rglob("*") if p.is_file()}
    assert after == before  # nothing added, nothing damaged
    disk.empty()
    assert evaluate(on_disk).returncode == 0
    assert (on_disk / "eval-step-0000003.md").read_text() == (run_dir / "eval-step-0000003.md").read_text()
    records = [
        [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (on_disk, run_dir)
    ]
    for record in records[0] + records[1]:
        record.pop("seconds")  # the time it took, the one thing that differs
    assert records[0] == records[1] and len(records[0]) == 1
