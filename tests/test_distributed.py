"""Data-parallel training in several processes on the CPU (gloo, on the loopback interface), launched
by `optcli train --nproc` or by torchrun itself: the same trajectory as one process, one writer, every
rank stopping together, and a group restarted after a worker dies resuming where it stood."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from optcli.train.checkpoints import load_checkpoint
from optcli.train.distributed import free_port
from tests.conftest import (
    REPO,
    assert_clean_exit,
    config_error,
    invoke,
    read_csv,
    read_summary,
    run_dirs,
    run_optcli,
    start_optcli,
    train_ok,
    wait_for_rows,
    write_config,
)

pytestmark = pytest.mark.slow  # every test here starts processes

CHOICES = random.Random(20261126)  # where the kill lands: random, but a failure repeats

CONFIG = {
    "seed": 3,
    "device": "cpu",
    "model": {"name": "mlp", "hidden": [32], "dropout": 0.0},
    "data": {
        "name": "teacher",
        "samples": 400,
        "features": 8,
        "classes": 3,
        "batch_size": 32,
        "val_fraction": 0.2,
    },
    "optimizer": {"name": "adam", "lr": 0.01},
    "scheduler": {"name": "step_lr", "step_size": 2, "gamma": 0.5},
    "clip": {"max_norm": 1.0},
    "metrics": ["accuracy", "f1", {"name": "top_k_accuracy", "k": 2}, "auroc"],
    # 10 steps an epoch; early stopping (no improvement by 10 for 4 epochs) ends it after epoch 5: 50 steps.
    "train": {"epochs": 8, "early_stopping": {"monitor": "val_loss", "patience": 4, "min_delta": 10.0}},
}


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "GLOO_SOCKET_IFNAME": "lo"}


def optcli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_optcli(*args, timeout=timeout, GLOO_SOCKET_IFNAME="lo")


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("single")
    config = write_config(directory, CONFIG)
    return config, train_ok(config, directory / "runs")


def test_two_processes_follow_one_process_trajectory_and_one_writes(single, tmp_path):
    config, alone = single
    done = optcli("train", config, "--nproc", "2", "--out", tmp_path / "runs", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("completed") == 1  # rank 0's line only
    (run,) = run_dirs(tmp_path / "runs")  # one run directory, one set of files
    assert not list((tmp_path / "runs").glob("*/.torchrun-*"))  # the launch's note removed at its end
    expected, found = weights(alone), weights(run)
    assert all(torch.allclose(found[key], expected[key], atol=1e-5) for key in expected)
    rows, alone_rows = read_csv(run / "metrics.csv"), read_csv(alone / "metrics.csv")
    assert (
        [row["step"] for row in rows] == [row["step"] for row in alone_rows] == [str(n) for n in range(1, 51)]
    )
    for row, alone_row in zip(rows, alone_rows, strict=True):  # the mean loss over both processes' halves
        assert float(row["loss"]) == pytest.approx(float(alone_row["loss"]), rel=1e-5)
        assert row["lr"] == alone_row["lr"]
    summary, alone_summary = read_summary(run), read_summary(alone)
    # Validation covers the whole split: the single process's values.
    assert summary["final_val_loss"] == pytest.approx(alone_summary["final_val_loss"], rel=1e-5)
    assert summary["final_val_accuracy"] == alone_summary["final_val_accuracy"]
    for metric in ("final_val_f1_macro", "final_val_top2_accuracy", "final_val_auroc"):  # metrics: too
        assert summary[metric] == pytest.approx(alone_summary[metric], rel=1e-6), metric
    # Early stopping decided the same, on every rank (rank 1 stopped too: the launcher came back).
    assert (
        summary["stopped_early"] == alone_summary["stopped_early"] and summary["stopped_early"]["epoch"] == 5
    )


def test_a_non_finite_loss_stops_every_rank_at_the_same_step(tmp_path):
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=generator), torch.randint(0, 2, (64,), generator=generator)
    x[16:32] = 1e30  # the second batch: both processes' halves
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    config = {
        "device": "cpu",
        "model": {"name": "linear"},
        "data": {"name": "tensors", "path": "d.pt", "batch_size": 16, "shuffle": False},
        "optimizer": {"name": "sgd", "lr": 0.01},
        "train": {"epochs": 2},
    }
    done = optcli(
        "train", write_config(tmp_path, config), "--nproc", "2", "--out", tmp_path / "runs", "--quiet"
    )
    assert done.returncode == 1
    stopped = re.findall(r"the loss became \S+ at step (\d+)", done.stderr)
    # Each rank that said so stopped at the same step (the launcher may end the other before it does).
    assert stopped and len(set(stopped)) == 1, done.stderr
    assert "error: training failed: rank 0 exited with code 1; rank 1 " in done.stderr
    (run,) = run_dirs(tmp_path / "runs")
    assert read_summary(run)["status"] == "failed"
    assert read_csv(run / "metrics.csv")[-1]["step"] == stopped[0]


def test_torchrun_itself_launches_the_same_run(single, tmp_path):
    config, alone = single
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--local-addr=127.0.0.1",
        "-m", "optcli", "train", str(config), "--out", str(tmp_path / "runs"), "--quiet",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=120)
    assert done.returncode == 0, done.stderr
    (run,) = run_dirs(tmp_path / "runs")
    expected, found = weights(alone), weights(run)
    assert all(torch.allclose(found[key], expected[key], atol=1e-5) for key in expected)


def test_a_batch_that_does_not_divide_is_a_config_error_before_any_process_starts(tmp_path):
    config = write_config(tmp_path, {**CONFIG, "data": {**CONFIG["data"], "batch_size": 33}})
    message = config_error(invoke("train", config, "--nproc", "2", "--out", tmp_path / "runs"))
    assert "data.batch_size: 33 does not divide among 2 processes" in message
    assert not (tmp_path / "runs").exists()


def workers_of(launcher: int) -> list[int]:
    """The launcher's worker processes (children of its process, from /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == launcher:
            found.append(int(status.parent.name))
    return sorted(found)


def long_config(directory: Path) -> Path:
    # Wide enough that the run lasts while a worker is killed; a checkpoint every epoch of 12 steps.
    values = {**CONFIG, "model": {"name": "mlp", "hidden": [256, 256]}, "train": {"epochs": 15}}
    values["data"] = {**CONFIG["data"], "samples": 480, "features": 32}
    return write_config(directory, values)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("two")
    config = long_config(directory)
    done = optcli("train", config, "--nproc", "2", "--out", directory / "runs", "--quiet", timeout=300)
    assert done.returncode == 0, done.stderr
    return config, run_dirs(directory / "runs")[0]


def test_a_killed_worker_is_restarted_and_the_run_resumes_to_the_same_end(two_processes, tmp_path):
    config, reference = two_processes
    launcher = start_optcli(
        "train", config, "--nproc", "2", "--max-restarts", "1", "--out", tmp_path / "runs", "--quiet"
    )
    try:
        run = wait_for_rows(tmp_path / "runs", CHOICES.randint(30, 100), launcher)
        victims = workers_of(launcher.pid)
        assert len(victims) == 2, victims
        os.kill(CHOICES.choice(victims), signal.SIGKILL)
        stdout, stderr = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 0, stderr
    assert "completed" in stdout
    assert "error:" not in stderr  # the run completed: the restart is not a failure to report
    assert not list((tmp_path / "runs").glob("*/.torchrun-*"))  # the launch's note removed at its end
    assert run_dirs(tmp_path / "runs") == [run]  # the restarted group went on in the same directory
    rows = read_csv(run / "metrics.csv")
    assert [row["step"] for row in rows] == [str(step) for step in range(1, 181)]  # each step once
    assert [row["loss"] for row in rows] == [row["loss"] for row in read_csv(reference / "metrics.csv")]
    expected, found = weights(reference), weights(run)
    assert all(torch.equal(found[key], expected[key]) for key in expected)
    assert len(read_summary(run)["resumes"]) == 1


def test_a_worker_that_dies_without_restarts_fails_the_run_naming_its_rank(tmp_path):
    launcher = start_optcli(
        "train", long_config(tmp_path), "--nproc", "2", "--out", tmp_path / "runs", "--quiet"
    )
    try:
        wait_for_rows(tmp_path / "runs", 20, launcher)
        victim = workers_of(launcher.pid)[1]
        os.kill(victim, signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=120)  # the other rank does not hang
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 1
    # One line, naming the rank that died (not the one that stopped because of it, nor gloo's words).
    assert stderr.count("error:") == 1, stderr
    assert re.search(r"error: training failed: rank \d was killed by SIGKILL\n", stderr), stderr
    assert stderr.count("rank") == 1, stderr
    assert "Traceback" not in stderr and "gloo" not in stderr.lower()
    assert not list((tmp_path / "runs").glob("*/.torchrun-*"))


def test_the_workers_stop_with_a_checkpoint_when_the_launcher_is_killed(tmp_path):
    launcher = start_optcli(
        "train", long_config(tmp_path), "--nproc", "2", "--out", tmp_path / "runs", "--quiet"
    )
    workers: list[int] = []
    try:
        run = wait_for_rows(tmp_path / "runs", 20, launcher)
        workers = workers_of(launcher.pid)
        assert len(workers) == 2, workers
        os.kill(launcher.pid, signal.SIGKILL)  # kill -9 of the launcher alone
        launcher.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            assert time.monotonic() < deadline, "a worker trains on without its launcher"
            time.sleep(0.1)
    finally:
        for pid in workers:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
    assert read_summary(run)["status"] == "interrupted"  # stopped together, with a checkpoint
    resumed = optcli("resume", run, "--nproc", "2", "--quiet", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert [int(row["step"]) for row in read_csv(run / "metrics.csv")] == list(range(1, 181))


def test_ctrl_c_stops_every_rank_together_and_resume_with_nproc_finishes_the_run(two_processes, tmp_path):
    config, reference = two_processes
    launcher = start_optcli("train", config, "--nproc", "2", "--out", tmp_path / "runs", "--quiet")
    try:
        run = wait_for_rows(tmp_path / "runs", CHOICES.randint(30, 100), launcher)
        os.killpg(launcher.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the launcher and its workers
        _, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 130, stderr
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    assert checkpoint["loop"]["step"] > 0
    resumed = optcli("resume", run, "--nproc", "2", "--quiet", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rows = read_csv(run / "metrics.csv")
    assert [row["loss"] for row in rows] == [row["loss"] for row in read_csv(reference / "metrics.csv")]
    expected, found = weights(reference), weights(run)
    assert all(torch.equal(found[key], expected[key]) for key in expected)
    assert_clean_exit(invoke("check", config), 0)


def _count_agreements(rank: int, port: int, directory: str, steps_per_sync: int) -> None:
    """One of two gloo ranks: train with the stop decision counted, and note how often it was taken."""
    import torch.distributed as dist

    from optcli.config.loading import RawConfig
    from optcli.config.resolve import resolve_config
    from optcli.train.distributed import World, agree
    from optcli.train.loop import run_training
    from optcli.train.records import StepRecord
    from optcli.train.session import build_session

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        world = World(rank, 2, rank, 0, "test")
        values = {**CONFIG, "train": {"epochs": 2}}
        spec = resolve_config(RawConfig(values, Path(directory), "count"))
        asked = []

        def stop() -> bool:
            asked.append(1)
            return agree(world, False)

        records = list(run_training(build_session(spec, world), None, stop, steps_per_sync=steps_per_sync))
        steps = sum(isinstance(record, StepRecord) for record in records)
        Path(directory, f"rank{rank}.txt").write_text(f"{len(asked)} {steps}")
        # Both ranks done before either tears its group down: a rank that destroyed its group while the
        # other still held the connection once ended the other in gloo's std::terminate (SIGABRT, CI).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_several_processes_agree_on_stopping_only_where_values_reach_the_host(tmp_path):
    """With NCCL an agreement waits for the device: none between two host copies (5 steps apart
    here), so an ordinary step never waits; the kill, Ctrl-C and non-finite tests above show that
    every rank still stops at the same step."""
    import torch.multiprocessing

    torch.multiprocessing.spawn(_count_agreements, args=(free_port(), str(tmp_path), 5), nprocs=2, join=True)
    for rank in (0, 1):
        asked, steps = map(int, (tmp_path / f"rank{rank}.txt").read_text().split())
        assert steps == 20 and asked == 20 // 5, (asked, steps)  # once per host copy, not per step
