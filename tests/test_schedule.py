"""`optcli schedule`: the rates a config's run will use, step for step, without training."""

from __future__ import annotations

import itertools

import pytest

from tests.conftest import (
    assert_clean_exit,
    config_error,
    guide_config,
    invoke,
    read_csv,
    read_summary,
    train_ok,
    write_config,
)

SMALL_DATA = {
    "name": "random",
    "samples": 256,
    "features": 16,
    "classes": 4,
    "batch_size": 32,
}  # 8 steps an epoch


@pytest.mark.parametrize(
    ("scheduler", "epochs"),
    [
        ({"name": "step", "step_size": 3, "gamma": 0.1}, 10),  # per epoch
        (
            {
                "name": "sequential",
                "milestones": [16],
                "interval": "step",
                "schedulers": [
                    {"name": "linear", "start_factor": 0.1, "total_iters": 16},
                    {"name": "cosine"},
                ],
            },
            8,
        ),  # warmup + cosine, per step
        ({"name": "one_cycle", "max_lr": 0.01}, 6),
        ({"name": "CosineAnnealingWarmRestarts", "T_0": 3, "T_mult": 2}, 12),
    ],
)
def test_the_schedule_equals_the_lr_column_train_writes(tmp_path, scheduler, epochs):
    config = guide_config(data=SMALL_DATA, scheduler=scheduler, train={"epochs": epochs})
    path = write_config(tmp_path, config)
    result = invoke("schedule", path, "--csv", tmp_path / "schedule.csv", "--png", tmp_path / "schedule.png")
    assert_clean_exit(result, 0)
    assert "start " in result.stdout and "peak " in result.stdout and "final " in result.stdout
    planned = read_csv(tmp_path / "schedule.csv")
    run_dir = train_ok(path, tmp_path / "runs")
    logged = read_csv(run_dir / "metrics.csv")
    assert [(row["step"], row["epoch"], row["lr"]) for row in planned] == [
        (row["step"], row["epoch"], row["lr"]) for row in logged
    ]
    assert len({row["lr"] for row in planned}) > 2  # a schedule that moves, not a constant
    assert (tmp_path / "schedule.png").read_bytes().startswith(b"\x89PNG")


def test_where_the_rate_changes_is_said(tmp_path):
    config = guide_config(
        data=SMALL_DATA, scheduler={"name": "step", "step_size": 2, "gamma": 0.5}, train={"epochs": 5}
    )
    result = invoke("schedule", write_config(tmp_path, config))
    assert_clean_exit(result, 0)
    assert "the rate changes at step 17 (epoch 3): 5.000e-04, step 33 (epoch 5): 2.500e-04" in result.stdout
    assert "│" in result.stdout  # the plot in text


def test_plateau_is_shown_without_reductions_and_says_so(tmp_path):
    config = guide_config(data=SMALL_DATA, scheduler={"name": "plateau"}, train={"epochs": 3})
    result = invoke("schedule", write_config(tmp_path, config), "--csv", tmp_path / "s.csv")
    assert_clean_exit(result, 0)
    assert "shown here without any reduction" in result.stdout
    assert {row["lr"] for row in read_csv(tmp_path / "s.csv")} == {"0.001"}


def test_schedule_builds_no_model_and_reports_config_errors(tmp_path):
    config = guide_config(data=SMALL_DATA, scheduler={"name": "step"})  # StepLR requires step_size
    message = config_error(invoke("schedule", write_config(tmp_path, config)))
    assert "scheduler.step_size" in message
    assert not (tmp_path / "runs").exists()


def test_every_parameter_groups_rate_is_planned(tmp_path):
    optimizer = {
        "name": "sgd",
        "lr": 0.1,
        "param_groups": [{"params": "*.bias", "lr": 0.03}, {"params": "3.weight", "lr": 0.5}],
    }
    scheduler = {"name": "one_cycle", "max_lr": [0.1, 0.03, 0.5]}  # a peak of each group's own
    path = write_config(
        tmp_path,
        guide_config(
            data=SMALL_DATA,
            model={"name": "mlp", "hidden": [8]},
            optimizer=optimizer,
            scheduler=scheduler,
            train={"epochs": 3},
        ),
    )
    result = invoke("schedule", path, "--csv", tmp_path / "schedule.csv")
    assert_clean_exit(result, 0)
    assert "group 1 (*.bias): start " in result.stdout and "group 2 (3.weight): start " in result.stdout
    planned = read_csv(tmp_path / "schedule.csv")
    assert list(planned[0]) == ["step", "epoch", "lr", "lr_group1", "lr_group2"]
    # OneCycleLR takes each group from max_lr / 25 up to its own max_lr and back.
    for column, peak in (("lr", 0.1), ("lr_group1", 0.03), ("lr_group2", 0.5)):
        rates = [float(row[column]) for row in planned]
        assert rates[0] == pytest.approx(peak / 25) and max(rates) == pytest.approx(peak, rel=0.01)
    final_lrs = read_summary(train_ok(path, tmp_path / "runs"))["final_lrs"]
    assert len(final_lrs) == 3 and final_lrs[2] > final_lrs[0] > final_lrs[1]


LONG_SCHEDULES = [
    {"name": "step_lr", "step_size": 7000, "gamma": 0.5},
    {"name": "multi_step_lr", "milestones": [5000, 20000], "gamma": 0.1},
    {"name": "exponential_lr", "gamma": 0.9999},
    {"name": "cosine_annealing_lr"},
    {"name": "cosine_annealing_warm_restarts", "T_0": 4000},
    {"name": "one_cycle_lr", "max_lr": 0.1},
    {"name": "cyclic_lr", "base_lr": 0.001, "max_lr": 0.1, "step_size_up": 3000},
    {"name": "polynomial_lr", "power": 2.0},
    {"name": "linear_lr", "start_factor": 0.1, "total_iters": 9000},
    {
        "name": "sequential_lr",
        "milestones": [2000],
        "schedulers": [
            {"name": "linear_lr", "start_factor": 0.01, "total_iters": 2000},
            {"name": "cosine_annealing_lr"},
        ],
    },
]


@pytest.mark.parametrize("scheduler", LONG_SCHEDULES, ids=lambda scheduler: scheduler["name"])
def test_a_long_runs_sampled_preview_equals_the_walked_schedule_where_it_looks(tmp_path, scheduler):
    """check and train preview a run of 30,000 steps at 10,000 periods reached by jumps, not walks:
    each equals the rate a step-by-step walk gives there (to float rounding)."""
    from optcli.config.loading import RawConfig
    from optcli.config.resolve import resolve_config
    from optcli.config.schedule import walk_rates

    values = {
        "device": "cpu",
        "model": {"name": "linear"},
        "data": {"name": "random", "samples": 8, "features": 2, "classes": 2, "batch_size": 8},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "scheduler": {**scheduler, "interval": "step"},
        "train": {"epochs": 30000},
    }
    spec = resolve_config(RawConfig(values, tmp_path, "long"))
    sampled = spec.findings.schedule
    walked = [planned.lr for planned in walk_rates(spec)]  # what `optcli schedule` shows
    assert sampled is not None
    assert len(walked) == 30000
    assert len(sampled.periods) == 10000 and sampled.periods[0] == 0 and sampled.periods[-1] == 29999
    expected = [walked[period] for period in sampled.periods]
    assert sampled.rates == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_a_scheduler_that_fails_mid_run_is_named_and_no_csv_is_left(tmp_path):
    """OneCycleLR told of fewer steps than the run takes fails when it runs out: the schedule says at
    which step, exits 2, and writes no half of a CSV."""
    scheduler = {"name": "one_cycle", "max_lr": 0.01, "total_steps": 20, "interval": "step"}
    config = guide_config(data=SMALL_DATA, scheduler=scheduler, train={"epochs": 4})  # 32 steps
    result = invoke("schedule", write_config(tmp_path, config), "--csv", tmp_path / "s.csv")
    message = config_error(result)
    assert "scheduler: OneCycleLR fails before step 22 of the run's 32" in message
    assert not (tmp_path / "s.csv").exists() and not list(tmp_path.glob(".s.csv*"))


def test_a_long_schedule_is_streamed_whole_and_summarized_from_the_stream(tmp_path):
    """120,000 steps of a cyclic schedule: every step in the CSV, and what is kept of the walk for the
    text and the PNG is bounded (a column per plot point, two points per PNG bucket) yet holds the
    extremes of the rate."""
    from optcli.config.loading import load_config
    from optcli.config.resolve import resolve_config
    from optcli.config.schedule import PLOT_COLUMNS, PNG_BUCKETS, summarize

    scheduler = {"name": "cyclic", "base_lr": 0.001, "max_lr": 0.1, "step_size_up": 997, "interval": "step"}
    data = {**SMALL_DATA, "samples": 32}  # one step an epoch
    path = write_config(tmp_path, guide_config(data=data, scheduler=scheduler, train={"epochs": 120_000}))
    result = invoke("schedule", path, "--csv", tmp_path / "s.csv", "--png", tmp_path / "s.png")
    assert_clean_exit(result, 0)
    rows = read_csv(tmp_path / "s.csv")
    assert [int(row["step"]) for row in rows] == list(range(1, 120_001))
    rates = [float(row["lr"]) for row in rows]
    summary = summarize(resolve_config(load_config(path, [])))
    assert len(summary.plot_values) == PLOT_COLUMNS
    assert len(summary.envelope) <= 2 * PNG_BUCKETS
    drawn = [lr for _, lr in summary.envelope]
    assert max(drawn) == max(rates) and min(drawn) == min(rates)
    assert summary.change_count == sum(1 for before, now in itertools.pairwise(rates) if now != before)
    assert f"the rate changes {summary.change_count} times" in result.stdout
