"""The ranking and the verdict's words, on made-up results."""

from __future__ import annotations

import pytest

from optcli.compare.judging.ranking import RunResult, paired_lead, rank_arms
from optcli.compare.judging.targets import Target
from optcli.compare.judging.verdict import give_verdict
from optcli.compare.reporting.report import write_summary_csv
from tests.conftest import read_csv


def run(
    arm: str, seed: int, final_loss: float | None, status: str = "ok", steps: int | None = None
) -> RunResult:
    return RunResult(arm, seed, status, final_loss, final_loss, steps, None, 1.0, 100, "i", "d")


def runs(arm: str, *losses: float) -> list[RunResult]:
    return [run(arm, seed, loss) for seed, loss in enumerate(losses)]


def test_a_lead_on_every_seed_is_clear_when_the_paired_interval_excludes_zero():
    # The ranges overlap (0.11-0.13 against 0.125-0.15), but for each seed both arms started from the
    # same weights and saw the same batches, and adam was better on every one by about the same margin.
    ranked = rank_arms(
        runs("adam", 0.11, 0.12, 0.13) + runs("rmsprop", 0.125, 0.14, 0.15) + runs("sgd", 0.3, 0.28, 0.26),
        "final_loss",
        ["sgd", "adam", "rmsprop"],
    )
    assert [arm.arm for arm in ranked] == ["adam", "rmsprop", "sgd"]
    assert [arm.rank for arm in ranked] == [1, 2, 3]
    verdict = give_verdict(ranked, "final_loss")
    assert verdict.winner == "adam" and verdict.runner_up == "rmsprop" and verdict.within_noise is False
    assert verdict.text == (
        "adam reached the lowest final loss, 0.120 ± 0.010 over 3 seeds, 1.2× lower than rmsprop "
        "(the runner-up, 0.138 ± 0.013); adam was better on all 3 seeds, a lead larger than seed noise; "
        "sgd came last (0.280 ± 0.020)"
    )


def test_the_ratio_is_against_the_runner_up_not_the_worst_arm():
    # Today's overstatement: "7.4× lower than sgd" while the lead over the runner-up is within noise.
    ranked = rank_arms(
        runs("adam", 0.10, 0.14) + runs("rmsprop", 0.12, 0.13) + runs("sgd", 0.9, 0.95),
        "final_loss",
        ["adam", "rmsprop", "sgd"],
    )
    verdict = give_verdict(ranked, "final_loss")
    assert "than rmsprop (the runner-up" in verdict.text and "than sgd" not in verdict.text
    assert (
        "adam and rmsprop are within seed noise of each other (adam better on 1 of 2 seeds)" in verdict.text
    )
    assert verdict.within_noise is True


def test_winning_every_seed_is_not_enough_when_the_margins_vary_widely():
    ranked = rank_arms(runs("a", 0.10, 0.20) + runs("b", 0.1001, 0.40), "final_loss", ["a", "b"])
    lead = paired_lead(ranked[0], ranked[1], lower_is_better=True)
    assert lead is not None and lead.wins == 2 and lead.low < 0 < lead.high and not lead.clear
    assert give_verdict(ranked, "final_loss").within_noise is True


def test_arms_with_identical_results_are_reported_as_identical():
    # e.g. a ReduceLROnPlateau arm whose rate never changed: the same losses as the plain arm, seed by seed.
    ranked = rank_arms(
        runs("plain", 0.2, 0.3, 0.25) + runs("plateau", 0.2, 0.3, 0.25), "final_loss", ["plain", "plateau"]
    )
    assert [arm.rank for arm in ranked] == [1, 1]  # not ranked 1 and 2
    verdict = give_verdict(ranked, "final_loss")
    assert verdict.identical and verdict.within_noise is True
    assert "plain and plateau gave identical results on every seed" in verdict.text
    assert "lower than" not in verdict.text


def test_an_accuracy_lead_is_higher_is_better():
    def accuracy_runs(arm: str, *values: float) -> list[RunResult]:
        return [
            RunResult(
                arm, seed, "ok", 0.5, 0.5, None, None, 1.0, 100, "i", "d", validation={"val_accuracy": value}
            )
            for seed, value in enumerate(values)
        ]

    ranked = rank_arms(
        accuracy_runs("a", 0.90, 0.91, 0.92) + accuracy_runs("b", 0.80, 0.82, 0.81),
        "val_accuracy",
        ["b", "a"],
    )
    verdict = give_verdict(ranked, "val_accuracy")
    assert verdict.winner == "a" and verdict.within_noise is False
    assert "10.0 points higher than b" in verdict.text


def test_two_seeds_rarely_support_a_clear_lead():
    # Better on both seeds by 0.16 and 0.19: with one degree of freedom the paired interval is wide.
    ranked = rank_arms(runs("adam", 0.11, 0.12) + runs("sgd", 0.3, 0.28), "final_loss", ["adam", "sgd"])
    verdict = give_verdict(ranked, "final_loss")
    assert verdict.within_noise is True
    assert "2.5× lower than sgd (the runner-up, 0.290 ± 0.014)" in verdict.text
    assert "within seed noise of each other (adam better on 2 of 2 seeds)" in verdict.text
    three = rank_arms(
        runs("adam", 0.11, 0.12, 0.115) + runs("sgd", 0.3, 0.28, 0.29), "final_loss", ["adam", "sgd"]
    )
    assert give_verdict(three, "final_loss").within_noise is False  # a third seed settles it


def test_one_seed_cannot_tell_noise():
    ranked = rank_arms(runs("a", 0.1) + runs("b", 0.2), "final_loss", ["a", "b"])
    verdict = give_verdict(ranked, "final_loss")
    assert verdict.within_noise is None and "seed noise is unknown" in verdict.text


def test_a_diverged_arm_is_ranked_last_even_if_its_other_seeds_did_well():
    sgd = [run("sgd", 0, 0.01), run("sgd", 1, None, "diverged")]
    results = [*runs("adam", 0.2, 0.21), *sgd, *runs("rms", 0.5, 0.6)]
    ranked = rank_arms(results, "final_loss", ["adam", "sgd", "rms"])
    assert [arm.arm for arm in ranked] == ["adam", "rms", "sgd"]
    assert ranked[-1].runs_diverged == 1
    verdict = give_verdict(ranked, "final_loss")
    assert verdict.winner == "adam"
    assert "sgd diverged in 1 of 2 runs" in verdict.text


def test_everything_diverged():
    ranked = rank_arms(
        [run("a", 0, None, "diverged"), run("b", 0, None, "diverged")], "final_loss", ["a", "b"]
    )
    verdict = give_verdict(ranked, "final_loss")
    assert verdict.winner is None and "every run diverged" in verdict.text


def test_steps_to_target_ranks_arms_that_reach_it_first():
    results = [
        run("fast", 0, 0.1, steps=100),
        run("fast", 1, 0.1, steps=120),
        run("slow", 0, 0.1, steps=300),
        run("slow", 1, 0.1, steps=280),
        run("never", 0, 0.9, steps=None),
        run("never", 1, 0.9, steps=None),
        run("once", 0, 0.4, steps=50),
        run("once", 1, 0.9, steps=None),
    ]
    ranked = rank_arms(results, "steps_to_target", ["never", "once", "slow", "fast"])
    assert [arm.arm for arm in ranked] == ["fast", "slow", "once", "never"]
    verdict = give_verdict(ranked, "steps_to_target", Target("loss", 0.5))
    assert verdict.text.startswith(
        "fast reached the target loss 0.5 in the fewest steps, 110 ± 14 over 2 seeds"
    )
    assert "2.6× fewer steps than slow" in verdict.text
    assert "once missed the target in 1 of 2 runs" in verdict.text
    assert "never missed the target in 2 of 2 runs" in verdict.text


@pytest.mark.parametrize("order", [["a", "b"], ["b", "a"]])
def test_ties_keep_the_given_order(order):
    ranked = rank_arms(runs("a", 0.5) + runs("b", 0.5), "final_loss", order)
    assert [arm.arm for arm in ranked] == order


def test_arms_that_never_reach_the_target_are_ranked_by_how_close_they_came():
    results = [
        run("fast", 0, 0.1, steps=100),
        run("fast", 1, 0.1, steps=120),
        RunResult("far", 0, "ok", 0.9, 0.9, None, None, 1.0, 100, "i", "d"),
        RunResult("far", 1, "ok", 0.9, 0.8, None, None, 1.0, 100, "i", "d"),
        RunResult("near", 0, "ok", 0.6, 0.55, None, None, 1.0, 100, "i", "d"),
        RunResult("near", 1, "ok", 0.6, 0.52, None, None, 1.0, 100, "i", "d"),
    ]
    ranked = rank_arms(results, "steps_to_target", ["far", "near", "fast"])
    assert [arm.arm for arm in ranked] == ["fast", "near", "far"]  # not the order they were given in
    assert ranked[1].closeness == pytest.approx(0.535)
    from optcli.compare.display import ranking_table

    table = ranking_table(
        ranked, "steps_to_target", give_verdict(ranked, "steps_to_target", Target("loss", 0.5))
    )
    assert list(table.columns[2].cells)[1:] == ["not reached", "not reached"]


def test_interrupted_runs_and_arms_that_never_ran_are_said_so(tmp_path):
    results = [*runs("adam", 0.2, 0.21), run("sgd", 0, None, "interrupted")]
    ranked = rank_arms(results, "final_loss", ["adam", "sgd", "rmsprop"])
    assert [arm.arm for arm in ranked] == ["adam", "sgd", "rmsprop"]
    text = give_verdict(ranked, "final_loss").text
    assert "sgd was interrupted in 1 of 1 runs" in text and "failed" not in text
    assert "rmsprop was not run" in text
    sgd = ranked[1]
    assert (sgd.runs_failed, sgd.runs_interrupted) == (0, 1)  # interrupted is not failed
    write_summary_csv(tmp_path / "summary.csv", ranked, "final_loss")
    rows = {row["arm"]: row for row in read_csv(tmp_path / "summary.csv")}
    assert (rows["sgd"]["failed"], rows["sgd"]["interrupted"]) == ("0", "1")


def test_arms_that_started_from_other_weights_are_not_a_controlled_comparison():
    other = [
        RunResult("wide", seed, "ok", loss, loss, None, None, 1.0, 100, "other", "d")
        for seed, loss in enumerate((0.1, 0.11))
    ]
    ranked = rank_arms(
        runs("adam", 0.2, 0.21) + runs("sgd", 0.3, 0.31) + other, "final_loss", ["adam", "sgd", "wide"]
    )
    assert [arm.controlled for arm in ranked] == [False, True, True]  # wide ranks first
    assert "wide did not start from the same weights and data" in give_verdict(ranked, "final_loss").text


def test_a_scheduler_that_never_acted_gets_a_note():
    still = [
        RunResult("plateau", s, "ok", 0.2, 0.2, None, None, 1.0, 100, "i", "d", lr_changed=False)
        for s in (0, 1)
    ]
    ranked = rank_arms(runs("adam", 0.1, 0.11) + still, "final_loss", ["adam", "plateau"])
    assert "plateau's learning rate never changed" in give_verdict(ranked, "final_loss").text


def test_two_arms_with_two_models_are_both_uncontrolled_whatever_the_order():
    """No start is the most common: neither arm is the reference (and the verdict does not depend on
    the order of the runs, as it would if a tie were broken by a set's order)."""
    mlp = [RunResult("mlp", 0, "ok", 0.2, 0.2, None, None, 1.0, 100, "m", "d")]
    conv = [RunResult("conv", 0, "ok", 0.3, 0.3, None, None, 1.0, 100, "c", "d")]
    for results in (mlp + conv, conv + mlp):
        ranked = rank_arms(results, "final_loss", ["mlp", "conv"])
        assert [arm.controlled for arm in ranked] == [False, False]
        assert "mlp, conv did not start from the same weights" in give_verdict(ranked, "final_loss").text
