"""Training survives what goes wrong on disk: a damaged dataset shard stops it at once, a damaged newest
checkpoint falls back to the one before, and a run killed with SIGKILL mid-step resumes to the same weights."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.test_training import _teacher_cfg, dataset_root  # noqa: F401 (fixture)
from training.checkpoint_files import CheckpointError
from training.data.dataset import ClipDataset, DatasetError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _final_state(out, step: int):
    """The weights and the optimizer's moments of a run's checkpoint at ``step``."""
    ckpt = out / "checkpoints" / f"step-{step:07d}"
    weights = load_file(str(ckpt / "weights.safetensors"))
    opt = torch.load(ckpt / "optimizers.pt", weights_only=True)["opt"]["state"]
    return weights, opt


def _assert_same(a, b):
    wa, oa = a
    wb, ob = b
    assert set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert set(oa) == set(ob)
    for i in oa:
        assert all(torch.equal(oa[i][k], ob[i][k]) for k in ("exp_avg", "exp_avg_sq"))


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ----------------------------------------------------------------------------- dataset shards


def test_a_truncated_shard_stops_training_before_the_first_step(dataset_root, tmp_path, capsys):  # noqa: F811
    from training import finetune_teacher

    copy = tmp_path / "ds"
    shutil.copytree(dataset_root, copy)
    shard = sorted((copy / "shards").glob("*.safetensors"))[-1]
    _truncate(shard)
    with pytest.raises(DatasetError, match=rf"shard shards/{shard.name} \(clips .*\) is damaged or truncated"):
        ClipDataset(copy)
    cfg = tmp_path / "teacher.yaml"
    cfg.write_text(f"model: {{spec: tiny}}\ndata: {{root: {copy}}}\nlora: {{rank: 4}}\n")
    out = tmp_path / "run"
    assert finetune_teacher.main(["--config", str(cfg), "--set", f"run.output_dir={out}", "--set", "run.steps=1",
                                  "--set", "run.tensorboard=false"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset") and "truncated" in err and "training.prepare again" in err
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()


def test_a_shard_without_a_clips_tensors_is_found_at_open(dataset_root, tmp_path):  # noqa: F811
    copy = tmp_path / "ds"
    shutil.copytree(dataset_root, copy)
    shard = sorted((copy / "shards").glob("*.safetensors"))[0]
    tensors = load_file(str(shard))
    dropped = sorted(k for k in tensors if k.endswith(".labels"))[0]
    del tensors[dropped]
    save_file(tensors, str(shard))
    with pytest.raises(DatasetError, match=rf"lacks tensors \['{dropped}'\]"):
        ClipDataset(copy)


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def straight_run(dataset_root, tmp_path_factory):  # noqa: F811
    """Three steps without interruption: what every resumed run must end with, bit for bit."""
    from training.finetune_teacher import train_teacher

    out = tmp_path_factory.mktemp("straight")
    train_teacher(_teacher_cfg(dataset_root, out, steps=3, save_every=1, keep_checkpoints=5))
    return out


@pytest.mark.parametrize("damage", ["weights", "optimizers", "state", "empty-weights"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(dataset_root, straight_run, tmp_path,  # noqa: F811
                                                                   capsys, damage):
    from training.finetune_teacher import train_teacher

    out = tmp_path / "run"  # the straight run as it was after two steps
    shutil.copytree(straight_run / "checkpoints", out / "checkpoints")
    shutil.rmtree(out / "checkpoints" / "step-0000003")
    newest = out / "checkpoints" / "step-0000002"
    if damage == "weights":
        _truncate(newest / "weights.safetensors")
    elif damage == "optimizers":
        _truncate(newest / "optimizers.pt", 0.9)
    elif damage == "state":
        (newest / "state.json").write_text('{"step": 2, "config": ')
    else:
        (newest / "weights.safetensors").write_bytes(b"")
    capsys.readouterr()
    resumed = train_teacher(_teacher_cfg(dataset_root, out, steps=3, save_every=1, keep_checkpoints=5))
    err = capsys.readouterr().err
    assert resumed["start"] == 1
    assert f"warning: checkpoint {newest} is damaged" in err and "resuming from the one before" in err
    assert (out / "checkpoints" / "damaged-step-0000002").is_dir()  # kept for a look, out of the step-* order
    _assert_same(_final_state(out, 3), _final_state(straight_run, 3))


def test_latest_checkpoint_skips_damaged_ones_and_refuses_when_all_are(straight_run, tmp_path):
    from training.runtime import latest_checkpoint

    out = tmp_path / "run"
    shutil.copytree(straight_run / "checkpoints", out / "checkpoints")
    warnings: list[str] = []
    assert latest_checkpoint(out, warnings.append).name == "step-0000003" and not warnings
    _truncate(out / "checkpoints" / "step-0000003" / "weights.safetensors")
    _truncate(out / "checkpoints" / "step-0000002" / "optimizers.pt", 0.9)
    assert latest_checkpoint(out, warnings.append).name == "step-0000001"
    assert len(warnings) == 2 and all("is damaged" in w for w in warnings)
    _truncate(out / "checkpoints" / "step-0000001" / "weights.safetensors", 0.0)
    with pytest.raises(CheckpointError, match="every checkpoint .* is damaged"):
        latest_checkpoint(out, warnings.append)


def test_a_run_whose_checkpoints_are_all_damaged_says_so(dataset_root, straight_run, tmp_path):  # noqa: F811
    from training.finetune_teacher import train_teacher

    out = tmp_path / "run"
    shutil.copytree(straight_run / "checkpoints", out / "checkpoints")
    for ckpt in (out / "checkpoints").glob("step-*"):
        (ckpt / "weights.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="starts the run over from step 0"):
        train_teacher(_teacher_cfg(dataset_root, out, steps=3, save_every=1))


# ----------------------------------------------------------------------------- SIGKILL mid-step


def _trainer(config, out, steps: int) -> list[str]:
    return [sys.executable, "-m", "training.finetune_teacher", "--config", str(config), "--set",
            f"run.output_dir={out}", "--set", f"run.steps={steps}", "--set", "run.save_every=1",
            "--set", "run.keep_checkpoints=5", "--set", "run.tensorboard=false", "--set", "run.log_every=1",
            "--set", "optim.lr=0.001", "--set", "sparse.settings.block_size=16"]


def test_a_run_killed_mid_step_resumes_to_bit_identical_weights(dataset_root, tmp_path):  # noqa: F811
    config = tmp_path / "teacher.yaml"
    config.write_text(f"model: {{spec: tiny}}\ndata: {{root: {dataset_root}}}\nlora: {{rank: 4}}\n")
    out = tmp_path / "run"
    # The reference is an uninterrupted run in a process like the killed one: with two threads, a run inside
    # pytest and one in a fresh process differed in the last bits (threading state), interrupted or not.
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONPATH=ROOT)
    straight = subprocess.run(_trainer(config, tmp_path / "straight", 3), cwd=ROOT, env=env, capture_output=True,
                              timeout=300)
    assert straight.returncode == 0, straight.stderr.decode()
    proc = subprocess.Popen(_trainer(config, out, 3), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    first = out / "checkpoints" / "step-0000001" / "state.json"
    deadline = time.monotonic() + 240
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    # step 2 is running now (step 1 is saved, step 2 is not): kill it the hard way, mid-step
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert first.is_file() and not (out / "checkpoints" / "step-0000003").exists()

    done = subprocess.run(_trainer(config, out, 3), cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert "resuming from" in done.stderr.decode()
    _assert_same(_final_state(out, 3), _final_state(tmp_path / "straight", 3))


# ----------------------------------------------------------------------------- messages that name the cause


def test_distill_without_a_teacher_says_how_to_make_one(dataset_root, tmp_path, capsys):  # noqa: F811
    from training import distill

    cfg = tmp_path / "distill.yaml"
    cfg.write_text(f"teacher: {{spec: runs/none/teacher.safetensors}}\ndata: {{root: {dataset_root}}}\n")
    assert distill.main(["--config", str(cfg), "--set", f"run.output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: teacher.spec: the teacher model runs/none/teacher.safetensors does not exist")
    assert "python -m training.finetune_teacher" in err and "nowhere" not in err
    assert not (tmp_path / "run").exists()


def test_a_missing_model_file_names_the_path_it_tried(tmp_path, monkeypatch):
    from iasa_core.model.resolve import resolve_model_file

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        resolve_model_file("runs/x/model.safetensors", what="stage-2 model")
    assert f"Searched: runs/x/model.safetensors (from the current folder {tmp_path})" in str(info.value)
    assert "nowhere" not in str(info.value)


def test_prepare_names_a_missing_videos_folder_before_looking_for_dwpose(tmp_path, capsys):
    from training import prepare

    assert prepare.main(["--videos", str(tmp_path / "nope"), "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --videos {tmp_path / 'nope'}: no such folder; give the folder holding the talking " \
                  "videos (.mp4, .mov, .mkv, .webm, .avi)\n"
    (tmp_path / "empty").mkdir()
    assert prepare.main(["--videos", str(tmp_path / "empty"), "--out", str(tmp_path / "ds")]) == 2
    assert "no video files" in capsys.readouterr().err and not (tmp_path / "ds").exists()
