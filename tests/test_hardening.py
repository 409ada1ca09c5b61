"""Hardening: whatever a user throws at optcli, it answers with exit 0 or 2 and a message, never a
traceback; a disk that fills or a folder that cannot be written is a clear error."""

from __future__ import annotations

import errno
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import (
    assert_clean_exit,
    guide_config,
    invoke,
    read_summary,
    run_dirs,
    train_ok,
    write_config,
)

KEYS = [
    "name",
    "seed",
    "device",
    "model",
    "data",
    "loss",
    "optimizer",
    "scheduler",
    "clip",
    "train",
    "output",
    "lr",
    "hidden",
    "epochs",
    "batch_size",
    "samples",
    "max_norm",
    "gamma",
    "step_size",
    "val_fraction",
    "momentum",
    "betas",
    "classes",
    "features",
    "log_every",
    "max_steps",
    "interval",
    "monitor",
    "mode",
]
NAMES = [
    "adam",
    "sgd",
    "mlp",
    "cnn",
    "random",
    "teacher",
    "step",
    "plateau",
    "cosine",
    "mse",
    "cross_entropy",
    "lbfgs",
    "one_cycle",
    "sequential",
    "linear",
    "digits",
    "csv",
    "nope",
    "",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NAMES),
    st.text(string.printable, max_size=8),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.sampled_from(KEYS), children, max_size=4)
    ),
    max_leaves=12,
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_answered(result) -> None:
    assert_clean_exit(result, result.exit_code)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ")


@FAST
@given(changes=st.dictionaries(st.sampled_from(KEYS), values, max_size=4))
def test_random_config_mappings(tmp_path, changes):
    config = {**guide_config(), **changes}
    config["data"] = (
        {**guide_config()["data"], "samples": 64}
        if not isinstance(config.get("data"), dict)
        else config["data"]
    )
    assert_answered(invoke("check", write_config(tmp_path, yaml.safe_dump(config))))


@FAST
@given(
    section=st.sampled_from(["model", "data", "optimizer", "scheduler", "loss", "train", "clip"]),
    contents=st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
    name=st.sampled_from(NAMES),
)
def test_random_sections(tmp_path, section, contents, name):
    config = guide_config()
    config[section] = {"name": name, **contents} if section not in ("train", "clip") else contents
    assert_answered(invoke("check", write_config(tmp_path, yaml.safe_dump(config))))


@FAST
@given(text=st.text(string.printable, max_size=120))
def test_random_yaml_text(tmp_path, text):
    assert_answered(invoke("check", write_config(tmp_path, text)))


@FAST
@given(settings_=st.lists(st.text(string.printable, max_size=30), max_size=3))
def test_random_set_strings(tmp_path, settings_):
    path = write_config(tmp_path, guide_config())
    arguments = [argument for setting in settings_ for argument in ("--set", setting)]
    assert_answered(invoke("check", path, *arguments))


def test_a_disk_that_fills_is_a_clear_failure_that_keeps_what_was_written(tmp_path, monkeypatch):
    from optcli.train.sinks import csv_files

    calls = {"count": 0}
    real_flush = csv_files.CsvWriter.flush

    def flush_until_full(self):
        calls["count"] += 1
        if calls["count"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_flush(self)

    monkeypatch.setattr(csv_files.CsvWriter, "flush", flush_until_full)
    config = write_config(tmp_path, guide_config(train={"epochs": 10}))
    result = invoke("train", config, "--out", tmp_path / "runs", "--quiet")
    assert_clean_exit(result, 1)
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    summary = read_summary(run_dirs(tmp_path / "runs")[0])
    assert summary["status"] == "failed" and "No space left" in summary["error"]


def test_a_checkpoint_that_cannot_be_written_fails_the_run_clearly(tmp_path, monkeypatch):
    from optcli.train import checkpoint_writer, checkpoints

    written = []
    real_write = checkpoint_writer.write_files

    def write_until_full(write, last, best):
        if len(written) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(last)
        real_write(write, last, best)

    monkeypatch.setattr(checkpoint_writer, "write_files", write_until_full)
    config = write_config(tmp_path, guide_config(train={"epochs": 10, "checkpoint_every": 1}))
    result = invoke("train", config, "--out", tmp_path / "runs", "--quiet")
    assert_clean_exit(result, 1)
    assert "No space left on device" in result.stderr
    run_dir = run_dirs(tmp_path / "runs")[0]
    summary = read_summary(run_dir)
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    assert summary["epochs"] < 10  # it stopped at the failed write (found at the next), not at the end
    resumable = checkpoints.load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert resumable["loop"]["epoch"] == 3  # the last complete write, after epoch 2


def test_a_dot_and_underscores_is_text_not_a_broken_number(tmp_path):
    # Found by test_random_yaml_text: `._` matched the float pattern and crashed float().
    result = invoke("check", write_config(tmp_path, guide_config()), "--set", "optimizer.lr=._")
    assert_clean_exit(result, 2)
    assert "optimizer.lr" in result.stderr and "'._'" in result.stderr


def test_a_full_disk_at_the_start_leaves_no_half_made_run_directory(tmp_path, monkeypatch):
    from optcli.train import rundir

    real = rundir.replace_atomically

    def full(path, write):
        if path.name == "config.yaml":  # the run's first file
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, write)

    monkeypatch.setattr(rundir, "replace_atomically", full)
    config = write_config(tmp_path, guide_config(train={"epochs": 1}))
    result = invoke("train", config, "--out", tmp_path / "runs", "--quiet")
    assert_clean_exit(result, 1)
    assert "cannot write the run's files" in result.stderr and "No space left on device" in result.stderr
    assert "config.yaml" in result.stderr and "internal error" not in result.stderr
    assert run_dirs(tmp_path / "runs") == [] and not list((tmp_path / "runs").glob("*/*"))


def test_a_full_disk_at_a_resumes_start_keeps_the_run_as_it_was(tmp_path, monkeypatch):
    from optcli.train.sinks import csv_files

    config = write_config(tmp_path, guide_config(train={"epochs": 2}))
    run = train_ok(config, tmp_path / "runs", "--max-steps", "5")
    (run / "summary.json").unlink()
    before = (run / "metrics.csv").read_bytes()

    def full(*arguments, **keywords):
        raise OSError(errno.ENOSPC, "No space left on device", str(run / "metrics.csv"))

    monkeypatch.setattr(csv_files, "_open_csv", full)
    result = invoke("resume", run, "--set", "train.max_steps=null", "--allow-changes", "--quiet")
    assert_clean_exit(result, 1)
    assert "No space left on device" in result.stderr and "as it was" in result.stderr
    assert (run / "metrics.csv").read_bytes() == before and (run / "checkpoints" / "last.pt").is_file()
