"""`optcli check` with meaning: warnings for configs that are valid but surely wrong, and --strict."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, assert_clean_exit, config_error, guide_config, invoke, write_config


@pytest.mark.parametrize(
    ("sections", "warning"),
    [
        ({"optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.01}}, "name: adamw"),
        ({"optimizer": {"name": "lbfgs"}}, "LBFGS's line search"),
        ({"scheduler": {"name": "one_cycle", "max_lr": 0.01, "total_steps": 50}}, "OneCycleLR plans 50"),
        (
            {"scheduler": {"name": "one_cycle", "max_lr": 0.01, "interval": "epoch"}},
            "stepped after every batch",
        ),
        ({"scheduler": {"name": "cyclic", "base_lr": 1e-4, "max_lr": 1e-2, "interval": "epoch"}}, "CyclicLR"),
        (
            {
                "scheduler": {
                    "name": "sequential",
                    "milestones": [5],
                    "schedulers": [{"name": "constant"}, {"name": "cosine"}],
                }
            },
            "past the run's end",
        ),
        ({"scheduler": {"name": "step", "step_size": 5}}, "the rate never changes"),
        (
            {"scheduler": {"name": "exponential", "gamma": 0.1, "interval": "step"}},
            "of the run, which would barely learn",
        ),
    ],
)
def test_warnings_exit_0_and_strict_makes_them_errors(tmp_path, sections, warning):
    path = write_config(tmp_path, guide_config(**sections))  # 2 epochs of 4 steps
    result = invoke("check", path)
    assert_clean_exit(result, 0)
    assert warning in result.stderr and result.stderr.startswith("warning: ")
    assert warning in config_error(invoke("check", path, "--strict"))


def test_train_shows_the_warnings_before_it_starts(tmp_path):
    path = write_config(tmp_path, guide_config(optimizer={"name": "adam", "weight_decay": 0.1}))
    result = invoke("train", path, "--out", tmp_path / "runs", "--quiet")
    assert_clean_exit(result, 0)
    assert "warning: optimizer.weight_decay" in result.stderr


def test_good_configs_have_no_warnings(tmp_path):
    scheduler = {"name": "one_cycle", "max_lr": 0.01}  # total_steps filled in: matches the run
    result = invoke("check", write_config(tmp_path, guide_config(scheduler=scheduler)), "--strict")
    assert_clean_exit(result, 0)
    assert result.stderr == ""


def test_skip_with_lbfgs_is_an_error(tmp_path):
    config = guide_config(optimizer={"name": "lbfgs"}, train={"on_nonfinite": "skip"})
    assert "skip cannot work with LBFGS" in config_error(invoke("check", write_config(tmp_path, config)))


def test_deterministic_is_recorded(tmp_path):
    from tests.conftest import read_summary, train_ok

    run_dir = train_ok(write_config(tmp_path, guide_config(deterministic=True)), tmp_path / "runs")
    determinism = read_summary(run_dir)["determinism"]
    assert determinism["deterministic_algorithms"] is True
    assert determinism["seeds"]["run"] == 0 and "data_order" in determinism["seeds"]
    import torch

    torch.use_deterministic_algorithms(False)


def test_check_on_a_compare_file_validates_every_arm(tmp_path):
    write_config(tmp_path, guide_config(), "base.yaml")
    runs = {"sgd": {"optimizer": {"name": "sgd", "lr": 0.1}}, "adam": {}}
    path = write_config(tmp_path, {"base": "base.yaml", "seeds": 2, "runs": runs}, "compare.yaml")
    result = invoke("check", path)
    assert_clean_exit(result, 0)
    assert "a comparison of 2 arms (sgd, adam) over 2 seeds, ranked by final_loss" in result.stdout
    assert not (tmp_path / "runs").exists()
    broken = {**runs, "bad": {"optimizer": {"name": "adam", "lrr": 0.1}}}
    path = write_config(tmp_path, {"base": "base.yaml", "runs": broken}, "broken.yaml")
    message = config_error(invoke("check", path))
    assert (
        "arm 'bad': optimizer.lrr" in message and "model: required" not in message and "base" not in message
    )


def test_check_takes_the_run_options_train_takes(tmp_path):
    path = write_config(tmp_path, guide_config())
    result = invoke("check", path, "--max-steps", "3", "--device", "cpu", "--out", tmp_path / "elsewhere")
    assert_clean_exit(result, 0)
    assert "3 steps on cpu" in result.stdout
    resolved = invoke("check", path, "--out", tmp_path / "elsewhere", "--resolved")
    assert f"dir: {tmp_path / 'elsewhere'}" in resolved.stdout
    assert config_error(invoke("check", path, "--device", "tpu")).count("device") >= 1


def test_an_argument_a_kwargs_optimizer_never_reads_is_a_warning(tmp_path):
    # Many third-party optimizers take **kwargs (pytorch_optimizer's Lion among them): a misspelled
    # argument is accepted, and silently ignored.
    (tmp_path / "lion.py").write_text(
        "import torch\n"
        "class Lion(torch.optim.Optimizer):\n"
        "    def __init__(self, params, lr: float = 1e-4, weight_decay: float = 0.0, **kwargs):\n"
        "        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))\n"
        "    def step(self, closure=None):\n"
        "        return None\n"
    )
    config = write_config(tmp_path, guide_config(optimizer={"name": "lion.py:Lion", "lrr": 0.1}))
    result = invoke("check", config)
    assert_clean_exit(result, 0)
    assert "warning: optimizer.lrr: " in result.stderr and "never reads 'lrr'" in result.stderr
    assert "--strict" not in result.stderr
    assert "optimizer.lrr" in config_error(invoke("check", config, "--strict"))
    spelled = write_config(tmp_path, guide_config(optimizer={"name": "lion.py:Lion", "lr": 0.1}), "ok.yaml")
    assert "warning" not in invoke("check", spelled).stderr


@pytest.mark.parametrize(
    ("scheduler", "train"),
    [
        ({"name": "cosine", "eta_min": 0.0}, {"epochs": 40}),  # cosine decay to zero, per epoch
        ({"name": "cosine", "eta_min": 0.0, "interval": "step"}, {"epochs": 250}),  # ... of 1,000 steps
        (
            {
                "name": "sequential",
                "milestones": [40],
                "interval": "step",
                "schedulers": [{"name": "linear", "start_factor": 0.01}, {"name": "cosine", "eta_min": 0.0}],
            },
            {"epochs": 100},
        ),  # warmup + cosine
        ({"name": "one_cycle", "max_lr": 0.01}, {"epochs": 100}),
        ({"name": "step", "step_size": 10, "gamma": 0.1}, {"epochs": 40}),
    ],
)
def test_textbook_schedules_raise_no_warning(tmp_path, scheduler, train):
    path = write_config(tmp_path, guide_config(scheduler=scheduler, train=train))  # 4 steps an epoch
    result = invoke("check", path, "--strict")
    assert_clean_exit(result, 0)
    assert "warning" not in result.stderr


def test_a_schedule_that_spends_most_of_the_run_at_a_negligible_rate_is_a_warning(tmp_path):
    # ExponentialLR(0.9) stepped per step over 1,000 steps: below 1e-4 of the start after 88 steps.
    scheduler = {"name": "exponential", "gamma": 0.9, "interval": "step"}
    result = invoke("check", write_config(tmp_path, guide_config(scheduler=scheduler, train={"epochs": 250})))
    assert_clean_exit(result, 0)
    assert "stays below 0.0001 of its peak for 91% of the run" in result.stderr


def test_a_test_set_that_is_the_training_data_is_a_warning(tmp_path, tensor_file):
    data = {"name": "tensors", "path": str(tensor_file), "batch_size": 64}
    result = invoke("check", write_config(tmp_path, guide_config(data={**data, "test": {}})))
    assert_clean_exit(result, 0)
    assert "data.test: it is the training data itself" in result.stderr
    other = tmp_path / "other.pt"
    other.write_bytes(tensor_file.read_bytes())
    separate = guide_config(data={**data, "test": {"path": str(other)}})
    assert "data.test" not in invoke("check", write_config(tmp_path, separate, "b.yaml")).stderr
    synthetic = guide_config(
        data={**guide_config()["data"], "test": {}}
    )  # other samples from the same teacher
    assert "data.test" not in invoke("check", write_config(tmp_path, synthetic, "c.yaml")).stderr


def test_a_structural_mistake_is_answered_without_importing_torch(tmp_path):
    """Wrong keys and types of optcli's own keys need no torch: a `torch` that cannot be imported
    stands in the path, and check still answers them (and fails, as it must, on a valid file)."""
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch was imported')\n")
    environment = {**os.environ, "PYTHONPATH": f"{blocker.parent}{os.pathsep}{REPO}"}

    def check(config: dict) -> subprocess.CompletedProcess[str]:
        path = write_config(tmp_path, config)
        command = [sys.executable, "-m", "optcli", "check", str(path)]
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)

    broken = check(guide_config(train={"epochz": 3}, data={"name": "random", "batch_size": "32"}))
    assert broken.returncode == 2, broken.stderr
    assert "train.epochz: unknown key (did you mean 'epochs'?)" in broken.stderr
    assert "data.batch_size: must be a valid integer, got '32'" in broken.stderr
    valid = check(guide_config())
    assert valid.returncode != 0 and "torch was imported" in valid.stderr  # the blocker is real


def test_check_says_which_of_the_users_files_it_ran(tmp_path):
    (tmp_path / "nets.py").write_text("import torch\nclass Net(torch.nn.Linear):\n    pass\n")
    config = guide_config(model={"name": "nets.py:Net", "in_features": 784, "out_features": 10})
    result = invoke("check", write_config(tmp_path, config))
    assert_clean_exit(result, 0)
    assert f"note: checking ran code from {tmp_path / 'nets.py'}" in result.stdout
    plain = invoke("check", write_config(tmp_path, guide_config(), "plain.yaml"))
    assert "ran code" not in plain.stdout
