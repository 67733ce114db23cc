"""The training loop end to end: the files of a run, checkpoints, resume after SIGKILL, DDP, NaN handling."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model.training import TINY, TINY_ARGS, single_thread_env, voxgan_train
from voxgan.model.config import TrainConfig, build_networks
from voxgan.model.runs import find_latest_run, load_checkpoint, load_generator
from voxgan.model.train import train

STAT_KEYS = ("loss_critic", "loss_generator", "gradient_penalty", "wasserstein", "grad_norm_critic",
             "grad_norm_generator")  # fmt: skip


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def read_stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_a_run_writes_its_files(short_run):
    assert short_run.parent.name.startswith("runs") and short_run.name == "00000-shapes-16-cond"
    config = json.loads((short_run / "config.json").read_text())
    assert config["steps"] == 2 and config["class_names"] and config["voxgan_version"]
    stats = read_stats(short_run)
    assert [s["step"] for s in stats] == [1, 2]
    for record in stats:
        assert all(np.isfinite(record[key]) for key in (*STAT_KEYS, "samples_per_s", "data_wait"))
    checkpoints = sorted(p.name for p in (short_run / "checkpoints").iterdir())
    assert checkpoints == ["latest.pt", "step-0000001.pt", "step-0000002.pt"]
    for picture in ("samples/step-0000001.png", "samples/step-0000002.png", "loss.png"):
        assert (short_run / picture).read_bytes()[:8] == PNG_MAGIC, picture
    assert not [p for p in short_run.rglob("*") if p.name.endswith(".tmp")]


def test_training_changes_the_weights_and_the_ema(short_run):
    state = load_checkpoint(short_run)
    assert state["step"] == 2
    torch.manual_seed(0)
    initial_generator, initial_critic = build_networks(TrainConfig.from_dict(state["config"]))
    for name, initial in (("generator", initial_generator), ("critic", initial_critic)):
        before = initial.state_dict()
        changed = [k for k, v in state[name].items() if not torch.equal(v, before[k])]
        assert len(changed) > len(before) // 2, name
        assert all(torch.isfinite(v).all() for v in state[name].values())
    ema_changed = [
        k for k, v in state["ema"].items() if not torch.equal(v, initial_generator.state_dict()[k])
    ]
    assert ema_changed and not all(torch.equal(state["ema"][k], state["generator"][k]) for k in ema_changed)


def test_conditional_run_gives_a_class_conditional_generator(tmp_path):
    run = train(TrainConfig(out=str(tmp_path), steps=1, epoch_size=40, conditional=True, **TINY))
    loaded = load_generator(run)
    generator = loaded.generator
    assert run.name == "00000-shapes-16-cond" and generator.num_classes == len(loaded.config.class_names) == 4
    with torch.no_grad():
        volumes = generator(torch.randn(4, 100), torch.arange(4))
    assert volumes.shape == (4, 1, 16, 16, 16)


def test_augmented_runs_train_through_the_augmentation_and_record_it(tmp_path):
    plain = train(TrainConfig(out=str(tmp_path / "plain"), steps=2, epoch_size=40, **TINY))
    policy = ("translation", "cutout")
    run = train(TrainConfig(out=str(tmp_path / "aug"), steps=2, epoch_size=40, augment=policy, **TINY))
    assert load_generator(run).config.augment == policy
    weights, plain_weights = load_checkpoint(run)["generator"], load_checkpoint(plain)["generator"]
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert any(not torch.equal(v, plain_weights[k]) for k, v in weights.items())  # it saw other volumes
    again = train(TrainConfig(out=str(tmp_path / "again"), steps=2, epoch_size=40, augment=policy, **TINY))
    assert all(torch.equal(v, load_checkpoint(again)["generator"][k]) for k, v in weights.items())


def test_bad_option_values_exit_2(tmp_path):
    done = voxgan_train("--resolution", "24", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("voxgan: error: ")
    assert "--resolution: resolution must be 16, 32 or 64, got 24" in lines[0]
    done = voxgan_train("--augment", "translation,rotation", cwd=tmp_path)
    assert done.returncode == 2 and "--augment: augment must be among translation, cutout" in done.stderr


def logged_with(tmp_path, option: str, values: tuple[str, ...], field: str) -> dict[str, list[float]]:
    """Two-step runs of ``voxgan train OPTION VALUE`` for each value: the value as the run's config records
    it is checked, and each run's logged ``field`` returned by value."""
    logged = {}
    for value in values:
        done = voxgan_train("--steps", "2", option, value, "--out", f"runs-{value}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        run = find_latest_run(tmp_path / f"runs-{value}")
        assert load_checkpoint(run)["config"][option[2:].replace("-", "_")] == float(value)
        logged[value] = [record[field] for record in read_stats(run)]
    return logged


def test_the_speck_penalty_adds_the_loose_voxels_to_the_generators_loss(tmp_path):
    losses = logged_with(tmp_path, "--speck-penalty", ("0", "0.5"), "loss_generator")
    # the same seed, so the same first critic update and generator batch: only the penalty differs
    assert np.isfinite(losses["0.5"]).all() and losses["0.5"][0] > losses["0"][0]
    done = voxgan_train("--speck-penalty", "-1", cwd=tmp_path)
    assert (
        done.returncode == 2
        and "--speck-penalty: speck_penalty must be 0 (off) or more, got -1" in done.stderr
    )


def test_the_penalty_on_part_of_the_batch_is_another_estimate_of_it(tmp_path):
    penalties = logged_with(tmp_path, "--penalty-fraction", ("1", "0.5"), "gradient_penalty")
    # the same seed, so the same first critic update: only the samples the penalty is taken on differ
    assert np.isfinite(penalties["0.5"]).all() and penalties["0.5"][0] != penalties["1"][0]
    done = voxgan_train("--penalty-fraction", "0", cwd=tmp_path)
    assert done.returncode == 2 and "--penalty-fraction: penalty_fraction must be in (0, 1]" in done.stderr


def test_diverging_run_skips_non_finite_updates_then_stops_with_exit_1(tmp_path):
    done = voxgan_train("--lr", "1e30", "--steps", "20", "--epoch-size", "400", "--out", "runs", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("voxgan: error: training diverged:") and "lower --lr" in last_line
    run = find_latest_run(tmp_path / "runs")
    stats = read_stats(run)
    assert len(stats) < 20 and sum(s["skipped_critic"] + s["skipped_generator"] for s in stats) >= 10
    assert stats[-1]["loss_critic"] is None  # nothing finite left to average
    for path in (run / "checkpoints").glob("*.pt") if (run / "checkpoints").exists() else []:
        state = load_checkpoint(path)
        assert all(torch.isfinite(v).all() for v in state["generator"].values())


def test_a_run_killed_with_sigkill_resumes_to_the_same_losses(tmp_path):
    args = ["--steps", "14", "--checkpoint-every", "3", "--epoch-size", "100"]
    whole = voxgan_train(*args, "--out", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    command = [sys.executable, "-m", "voxgan", "train", *TINY_ARGS, *args, "--out", "killed"]
    process = subprocess.Popen(command, cwd=tmp_path, env=single_thread_env(), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("killed/*/checkpoints/step-0000006.pt")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run = find_latest_run(tmp_path / "killed")
    assert load_checkpoint(run)["step"] < 14, "the run finished before it could be killed"
    resumed = voxgan_train(*args, "--resume", "--out", "killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step" in resumed.stderr
    expected, got = read_stats(find_latest_run(tmp_path / "whole")), read_stats(run)
    assert [s["step"] for s in got] == list(range(1, 15))
    for a, b in zip(expected, got, strict=True):
        assert {k: a[k] for k in (*STAT_KEYS, "epoch")} == {k: b[k] for k in (*STAT_KEYS, "epoch")}, a["step"]
    final_whole, final_resumed = load_checkpoint(find_latest_run(tmp_path / "whole")), load_checkpoint(run)
    for name in ("generator", "critic", "ema"):
        assert all(torch.equal(v, final_resumed[name][k]) for k, v in final_whole[name].items()), name


def test_two_processes_under_torchrun_train_in_step(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    options = [
        "--steps",
        "3",
        "--checkpoint-every",
        "1",
        "--samples-every",
        "2",
        "--epoch-size",
        "80",
        "--device",
        "cpu",
        "--out",
        "runs",
    ]
    command = [str(torchrun), "--nproc_per_node=2", "-m", "voxgan", "train", *TINY_ARGS, *options]
    done = subprocess.run(
        command, cwd=tmp_path, env=single_thread_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Every checkpoint compared the ranks' weights (a mismatch fails the run); only rank 0 wrote files.
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["00000-shapes-16-cond"]
    run = tmp_path / "runs" / "00000-shapes-16-cond"
    assert "2 process(es)" in done.stderr and done.stdout.count("run: ") == 1
    assert "Warning" not in done.stderr  # e.g. DDP's "Grad strides do not match bucket view strides"
    stats = read_stats(run)
    assert [s["step"] for s in stats] == [1, 2, 3]
    # 80 volumes per epoch split over 2 ranks: 10 batches of 4 per rank, so step 2 ends epoch 0.
    assert [s["epoch"] for s in stats] == [0, 0, 1]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000002.png", "step-0000003.png"]
    assert load_checkpoint(run)["step"] == 3


def test_eval_every_appends_the_metrics_of_the_checkpoint_it_evaluates_and_keeps_the_best(tmp_path):
    done = voxgan_train("--steps", "2", "--eval-every", "2", "--out", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run,) = (tmp_path / "runs").iterdir()
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 2 and record["split"] == "test"
    assert 0 <= record["cov_iou"] <= 1 and 0 <= record["nna_iou"] <= 1
    assert (run / "checkpoints" / "step-0000002.pt").is_file()
    # The first evaluation is the best so far: best.pt is that checkpoint with the metric inside it.
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["best"] == {"metric": "nna_iou", "value": record["nna_iou"], "step": 2}
    latest = load_checkpoint(run)
    assert all(torch.equal(v, latest["ema"][k]) for k, v in best["ema"].items())
    (noted,) = [r for r in read_stats(run) if r.get("kind") == "best"]
    assert noted == {"kind": "best", "step": 2, "metric": "nna_iou", "value": record["nna_iou"]}


def start_training(*args, cwd: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "voxgan", "train", *TINY_ARGS, *args]
    return subprocess.Popen(command, cwd=cwd, env=single_thread_env(), stderr=subprocess.PIPE, text=True)


def wait_for_stats(out: Path, lines: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        stats = list(out.glob("*/stats.jsonl"))
        if stats and len(stats[0].read_text().splitlines()) >= lines:
            return
        time.sleep(0.02)


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_resume_continues_to_the_runs_own_target(tmp_path):
    args = ["--steps", "12", "--checkpoint-every", "100", "--epoch-size", "100"]
    whole = voxgan_train(*args, "--out", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    process = start_training(*args, "--out", "stopped", cwd=tmp_path)
    wait_for_stats(tmp_path / "stopped", 3, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    run = find_latest_run(tmp_path / "stopped")
    stopped_at = load_checkpoint(run)["step"]
    assert 3 <= stopped_at < 12, "the run finished before the signal came"
    last_line = stderr.strip().splitlines()[-1]
    assert f"stopped by SIGTERM after step {stopped_at}" in last_line
    assert f"voxgan train --resume {run.relative_to(tmp_path)}" in last_line
    assert [s["step"] for s in read_stats(run)] == list(range(1, stopped_at + 1))
    assert any((run / "samples").iterdir())
    # No --steps on resume: the run keeps its own target of 12 steps, and its losses are the whole run's.
    resumed = voxgan_train("--resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    expected, got = read_stats(find_latest_run(tmp_path / "whole")), read_stats(run)
    assert [s["step"] for s in got] == list(range(1, 13))
    for a, b in zip(expected, got, strict=True):
        assert {k: a[k] for k in (*STAT_KEYS, "epoch")} == {k: b[k] for k in (*STAT_KEYS, "epoch")}, a["step"]


def test_steps_on_resume_extend_the_run(short_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    done = voxgan_train("--resume", str(run), "--steps", "3", "--checkpoint-every", "100", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(run)["step"] == 3 and [s["step"] for s in read_stats(run)] == [1, 2, 3]


def test_sigint_stops_with_a_checkpoint_and_exit_130(tmp_path):
    process = start_training("--steps", "500", "--checkpoint-every", "1000", "--out", "runs", cwd=tmp_path)
    wait_for_stats(tmp_path / "runs", 2, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    run = find_latest_run(tmp_path / "runs")
    assert 2 <= load_checkpoint(run)["step"] < 500 and "stopped by SIGINT" in stderr


def test_time_limit_stops_the_run_with_a_checkpoint_and_samples(tmp_path):
    done = voxgan_train("--time-limit", "0.02", "--checkpoint-every", "1000", "--out", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = find_latest_run(tmp_path / "runs")
    state = load_checkpoint(run)
    assert state["step"] >= 1 and state["train_seconds"] >= 1.2
    assert "time limit of 0.02 min reached" in done.stderr and any((run / "samples").iterdir())


def train_plainly(*args, cwd: Path) -> subprocess.CompletedProcess:
    """voxgan train with only ``args`` (no tiny-network options), as a user types it."""
    command = [sys.executable, "-m", "voxgan", "train", *args]
    return subprocess.run(
        command, cwd=cwd, env=single_thread_env(), capture_output=True, text=True, timeout=300
    )


def test_a_plain_resume_keeps_every_option_of_the_run_and_a_given_one_wins(tmp_path):
    args = ["--steps", "10", "--checkpoint-every", "4", "--epoch-size", "100", "--keep", "5"]
    whole = voxgan_train(*args, "--out", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    process = start_training(*args, "--out", "killed", cwd=tmp_path)
    wait_for_stats(tmp_path / "killed", 6, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run = find_latest_run(tmp_path / "killed")
    config_before = json.loads((run / "config.json").read_text())
    assert load_checkpoint(run)["step"] in (4, 8), "the run was not killed between checkpoints"
    # Resumed as a user types it: no option but --resume; log_every 1, the tiny networks, batch 4 are kept.
    resumed = train_plainly("--resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "changed on resume" not in resumed.stderr
    assert json.loads((run / "config.json").read_text()) == config_before
    expected, got = read_stats(find_latest_run(tmp_path / "whole")), read_stats(run)
    assert [s["step"] for s in got] == list(range(1, 11)), resumed.stderr
    for a, b in zip(expected, got, strict=True):
        assert {k: a[k] for k in (*STAT_KEYS, "epoch")} == {k: b[k] for k in (*STAT_KEYS, "epoch")}, a["step"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "latest.pt", "step-0000004.pt", "step-0000008.pt", "step-0000010.pt"
    ]  # fmt: skip
    # An option given again wins, and the log says so.
    again = train_plainly("--resume", str(run), "--steps", "14", "--log-every", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "changed on resume: --log-every 2 (was 1), --steps 14 (was 10)" in again.stderr
    assert [s["step"] for s in read_stats(run)][-3:] == [10, 12, 14]


def test_resuming_with_other_networks_is_refused_with_exit_2(short_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    done = train_plainly("--resume", str(run), "--generator-width", "8", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert (
        line.startswith("voxgan: error: ") and "--generator-width" in line and "built with 4, not 8" in line
    )


def test_a_run_keeps_its_last_snapshots_and_draws_at_its_intervals(tmp_path):
    args = ["--steps", "12", "--checkpoint-every", "2", "--keep", "2", "--samples-every", "5"]
    done = voxgan_train(*args, "--epoch-size", "100", "--out", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = find_latest_run(tmp_path / "runs")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "latest.pt", "step-0000010.pt", "step-0000012.pt"
    ]  # fmt: skip
    assert (run / "checkpoints" / "latest.pt").samefile(run / "checkpoints" / "step-0000012.pt")
    pictures = sorted(p.name for p in (run / "samples").iterdir())
    assert pictures == ["step-0000005.png", "step-0000010.png", "step-0000012.png"]
    assert (run / "loss.png").read_bytes()[:8] == PNG_MAGIC


def test_a_full_disk_mid_run_stops_in_one_line_keeps_latest_and_resumes_exactly(tmp_path, full_disk_dir):
    args = ["--steps", "6", "--checkpoint-every", "1", "--keep", "0", "--samples-every", "100"]
    args += ["--epoch-size", "100"]
    whole = voxgan_train(*args, "--out", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    size = (find_latest_run(tmp_path / "whole") / "checkpoints" / "step-0000001.pt").stat().st_size
    disk = full_disk_dir(int(3.5 * size))  # room for three checkpoints of the run, not four
    if disk.kind != "tmpfs":
        pytest.skip("needs a small tmpfs (root): a file-size cap would not fill up with whole checkpoints")
    full = voxgan_train(*args, "--out", str(disk.path / "runs"), cwd=tmp_path)
    assert full.returncode == 1
    run = find_latest_run(disk.path / "runs")
    last_line = full.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"voxgan: error: {run}: cannot write ")
    assert "No space left on device" in last_line and "free at least " in last_line
    assert f"voxgan train --resume {run}" in last_line
    kept = load_checkpoint(run)  # whole and loadable
    assert 1 <= kept["step"] < 6
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert (run / "stats.jsonl").read_text().endswith("\n")
    disk.grow(64 * 2**20)  # space is freed
    resumed = voxgan_train(*args, "--resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    expected, got = read_stats(find_latest_run(tmp_path / "whole")), read_stats(run)
    assert [s["step"] for s in got] == list(range(1, 7))
    for a, b in zip(expected, got, strict=True):
        assert {k: a[k] for k in (*STAT_KEYS, "epoch")} == {k: b[k] for k in (*STAT_KEYS, "epoch")}, a["step"]


def test_training_on_shards_takes_their_resolution_widths_and_classes_and_a_different_one_is_named(tmp_path):
    from tests.results.sources import make_shards

    make_shards(tmp_path / "shards32", {"train": 8, "test": 4}, resolution=32)
    done = train_plainly(
        "--data", "shards32", "--steps", "1", "--batch-size", "4", "--out", "runs", cwd=tmp_path
    )  # fmt: skip (the default widths)
    assert done.returncode == 0, done.stderr
    run = find_latest_run(tmp_path / "runs")
    config = json.loads((run / "config.json").read_text())
    assert run.name == "00000-shards32-32-cond" and config["resolution"] == 32
    assert config["generator_width"] == config["critic_width"] == 8  # width 16's channels per grid size
    assert config["conditional"] and "conditional on 4 classes" in done.stderr
    assert load_generator(run).generator.num_classes == 4
    wrong = voxgan_train("--data", "shards32", "--resolution", "16", "--steps", "1", cwd=tmp_path)
    assert wrong.returncode == 2
    (line,) = wrong.stderr.strip().splitlines()
    assert "--resolution" in line and "holds 32³ volumes, not 16³" in line


def test_a_run_is_conditional_only_on_two_classes_or_more_unless_told(tmp_path):
    from tests.results.sources import make_shards

    make_shards(tmp_path / "two", {"train": 8, "test": 4}, classes=("sphere", "box"))
    make_shards(tmp_path / "one", {"train": 8, "test": 4}, classes=("sphere",))
    tiny = ("--steps", "1", "--batch-size", "4", "--generator-width", "4", "--critic-width", "4")
    for data, option, classes in [("two", (), 2), ("two", ("--unconditional",), 0), ("one", (), 0),
                                  ("one", ("--conditional",), 1)]:  # fmt: skip
        done = voxgan_train(
            "--data", data, *tiny, *option, "--out", f"runs-{data}{''.join(option)}", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        run = find_latest_run(tmp_path / f"runs-{data}{''.join(option)}")
        assert load_generator(run).generator.num_classes == classes, (data, option)
        assert run.name.endswith("-cond") == (classes > 0)
