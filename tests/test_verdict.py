"""The ranking and the verdict's words, on made-up results."""

from __future__ import annotations

import pytest

from optcli.compare.verdict import RunResult, give_verdict, rank_arms, within_seed_noise


def run(
    arm: str, seed: int, final_loss: float | None, status: str = "ok", steps: int | None = None
) -> RunResult:
    return RunResult(arm, seed, status, final_loss, final_loss, steps, None, 1.0, 100, "i", "d")


def runs(arm: str, *losses: float) -> list[RunResult]:
    return [run(arm, seed, loss) for seed, loss in enumerate(losses)]


def test_overlapping_spreads_are_within_seed_noise():
    ranked = rank_arms(
        runs("adam", 0.11, 0.12, 0.13) + runs("rmsprop", 0.125, 0.14, 0.15) + runs("sgd", 0.3, 0.28, 0.26),
        "final_loss",
        ["sgd", "adam", "rmsprop"],
    )
    assert [arm.arm for arm in ranked] == ["adam", "rmsprop", "sgd"]
    assert [arm.rank for arm in ranked] == [1, 2, 3]
    assert within_seed_noise(ranked[0], ranked[1])
    verdict = give_verdict(ranked, "final_loss")
    assert verdict.winner == "adam" and verdict.runner_up == "rmsprop" and verdict.within_noise is True
    assert verdict.text == (
        "adam reached the lowest final loss, 0.120 ± 0.010 over 3 seeds, 2.3× lower than sgd; "
        "adam and rmsprop are within seed noise of each other"
    )


def test_separate_spreads_are_a_real_lead():
    ranked = rank_arms(runs("adam", 0.11, 0.12) + runs("sgd", 0.3, 0.28), "final_loss", ["adam", "sgd"])
    verdict = give_verdict(ranked, "final_loss")
    assert verdict.within_noise is False
    assert "its lead over sgd (0.290 ± 0.014) is larger than seed noise" in verdict.text


def test_touching_spreads_count_as_overlapping():
    ranked = rank_arms(runs("a", 0.1, 0.2) + runs("b", 0.2, 0.3), "final_loss", ["a", "b"])
    assert within_seed_noise(ranked[0], ranked[1])


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
    verdict = give_verdict(ranked, "steps_to_target", target_loss=0.5)
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
