"""Every mistake in a config gets one clear message naming the key, exit code 2, and no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import assert_clean_exit, config_error, guide_config, invoke, write_config


def check(tmp_path, config, *extra):
    return invoke("check", write_config(tmp_path, config), *extra)


def test_missing_file(tmp_path):
    assert "no such file" in config_error(invoke("check", tmp_path / "nope.yaml"))


def test_directory_instead_of_file(tmp_path):
    assert "is a directory" in config_error(invoke("check", tmp_path))


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    message = config_error(check(tmp_path, "model:\n  name: mlp\n  hidden: [128\ndata: random\n"))
    assert "config.yaml:4:" in message


def test_empty_file(tmp_path):
    assert "empty" in config_error(check(tmp_path, "# nothing here\n"))


def test_top_level_not_a_mapping(tmp_path):
    assert "top level must be a mapping" in config_error(check(tmp_path, "- adam\n- sgd\n"))


def test_duplicate_keys(tmp_path):
    text = "model: mlp\ndata: random\noptimizer: {name: adam, lr: 0.1}\noptimizer: sgd\n"
    message = config_error(check(tmp_path, text))
    assert "duplicate key 'optimizer'" in message and "line 3" in message


def test_scientific_notation_is_a_float(tmp_path):
    text = "device: cpu\nmodel: mlp\ndata: {name: random, samples: 64}\noptimizer: {name: adam, lr: 1e-3}\n"
    result = invoke("check", write_config(tmp_path, text), "--resolved")
    assert result.exit_code == 0, result.output
    assert "lr: 0.001" in result.stdout


def test_unknown_top_level_key_suggests_the_right_one(tmp_path):
    config = guide_config()
    config["optimiser"] = config.pop("optimizer")
    message = config_error(check(tmp_path, config))
    assert "optimiser" in message and "did you mean 'optimizer'" in message


def test_unknown_train_key_suggests_the_right_one(tmp_path):
    message = config_error(check(tmp_path, guide_config(train={"epoch": 3})))
    assert "train.epoch" in message and "did you mean 'epochs'" in message


def test_unknown_optimizer_suggests_the_right_one(tmp_path):
    message = config_error(check(tmp_path, guide_config(optimizer={"name": "adma", "lr": 0.1})))
    assert "optimizer.name" in message and "did you mean 'Adam'" in message


def test_foreign_argument_names_the_class_and_the_accepted_ones(tmp_path):
    message = config_error(check(tmp_path, guide_config(optimizer={"name": "adam", "momentum": 0.9})))
    assert "optimizer.momentum" in message and "Adam has no argument 'momentum'" in message
    assert "betas" in message  # the accepted arguments are listed


def test_misspelled_argument_gets_a_did_you_mean(tmp_path):
    message = config_error(check(tmp_path, guide_config(scheduler={"name": "step", "step_sise": 2})))
    assert "scheduler.step_sise" in message and "did you mean 'step_size'" in message


def test_wrongly_typed_argument(tmp_path):
    message = config_error(check(tmp_path, guide_config(optimizer={"name": "adam", "lr": "fast"})))
    assert "optimizer.lr" in message and "Adam expects" in message and "'fast'" in message


def test_required_argument_missing(tmp_path):
    message = config_error(check(tmp_path, guide_config(scheduler={"name": "step_lr"})))
    assert "scheduler.step_size" in message and "requires" in message


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"optimizer": {"name": "sgd", "lr": 0}}, "optimizer.lr"),
        ({"optimizer": {"name": "adam", "lr": -1e-3}}, "optimizer.lr"),
        ({"data": {"name": "random", "batch_size": 0}}, "data.batch_size"),
        ({"train": {"epochs": -1}}, "train.epochs"),
        ({"train": {"epochs": "5"}}, "train.epochs"),
        ({"train": {"max_steps": 0}}, "train.max_steps"),
        ({"clip": {"max_norm": -1.0}}, "clip.max_norm"),
        ({"clip": {"max_norm": 1.0, "value": 1.0}}, "clip"),
        ({"optimizer": {"name": "adam", "betas": [0.9, 1.5]}}, "optimizer"),
        ({"model": {"name": "mlp", "hidden": [0]}}, "model"),
        ({"data": {"name": "random", "samples": 0}}, "data"),
        ({"seed": -3}, "seed"),
        ({"name": "a/b"}, "name"),
    ],
)
def test_invalid_values_are_config_errors(tmp_path, sections, key):
    message = config_error(check(tmp_path, guide_config(**sections)))
    assert key in message


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"train": {"threads": "fast"}}, "train.threads: must be a valid integer or 'auto', got 'fast'"),
        (
            {"output": {"mlflow": {"log_every": 0}}},
            "output.mlflow.log_every: must be greater than or equal to 1 or 'auto', got 0",
        ),
    ],
)
def test_a_key_that_takes_a_number_or_a_word_is_one_problem(tmp_path, sections, expected):
    """Not one line per branch of its type, tagged with pydantic's names for them."""
    message = config_error(check(tmp_path, guide_config(**sections)))
    assert expected in message and "problems:" not in message  # one problem, said once
    assert "constrained-int" not in message and "literal[" not in message


def test_every_problem_is_reported_at_once(tmp_path):
    config = guide_config(
        optimizer={"name": "adam", "lr": -1, "momentum": 0.9}, train={"epochs": 0}, clip={"max_norm": 0}
    )
    config["modle"] = {}
    # The structure's mistakes first, at once and without torch; the classes' arguments once it is right.
    message = config_error(check(tmp_path, config))
    for key in ("train.epochs", "clip.max_norm", "modle"):
        assert key in message
    assert "3 problems:" in message and "checked once these are fixed" in message
    message = config_error(check(tmp_path, {**guide_config(), "optimizer": config["optimizer"]}))
    assert "optimizer.momentum: Adam has no argument" in message


def test_import_path_that_does_not_resolve(tmp_path):
    message = config_error(check(tmp_path, guide_config(optimizer={"name": "no_such_package:Lion"})))
    assert "cannot import module 'no_such_package'" in message
    message = config_error(check(tmp_path, guide_config(model={"name": "models.py:Net"})))
    assert "no such file" in message and "models.py" in message


def test_import_path_to_a_missing_class(tmp_path):
    (tmp_path / "models.py").write_text("import torch\nclass TinyNet(torch.nn.Linear):\n    pass\n")
    message = config_error(check(tmp_path, guide_config(model={"name": "models.py:TinyNett"})))
    assert "TinyNett" in message and "did you mean 'TinyNet'" in message


def test_cuda_without_cuda_is_a_config_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    message = config_error(check(tmp_path, guide_config(device="cuda")))
    assert "CUDA is not available" in message


def test_unknown_device(tmp_path):
    assert "not a device" in config_error(check(tmp_path, guide_config(device="tpu")))


def test_missing_sections(tmp_path):
    message = config_error(check(tmp_path, {"seed": 1}))
    for key in ("model", "data", "optimizer"):
        assert f"{key}: required" in message


def test_set_with_an_unknown_key(tmp_path):
    message = config_error(check(tmp_path, guide_config(), "--set", "train.epochz=3"))
    assert "train.epochz" in message and "did you mean 'epochs'" in message


def test_set_without_equals(tmp_path):
    assert "KEY=VALUE" in config_error(check(tmp_path, guide_config(), "--set", "optimizer.lr"))


def test_set_into_a_value_that_is_not_a_mapping(tmp_path):
    message = config_error(check(tmp_path, guide_config(), "--set", "seed.x=1"))
    assert "'seed' is 0, not a mapping" in message


def test_scheduler_monitor_that_does_not_exist(tmp_path):
    message = config_error(
        check(tmp_path, guide_config(scheduler={"name": "plateau", "monitor": "val_loss"}))
    )
    assert "scheduler.monitor" in message and "train_loss" in message


def test_inner_scheduler_errors_name_their_position(tmp_path):
    scheduler = {
        "name": "sequential",
        "milestones": [2],
        "schedulers": [{"name": "linear"}, {"name": "cosin"}],
    }
    message = config_error(check(tmp_path, guide_config(scheduler=scheduler)))
    assert "scheduler.schedulers.1.name" in message and "did you mean" in message


def test_train_reports_config_errors_before_writing_anything(tmp_path):
    config = write_config(tmp_path, guide_config(optimizer={"name": "adam", "momentum": 0.9}))
    config_error(invoke("train", config, "--out", tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_too_few_outputs_for_the_classes_is_a_config_error(tmp_path):
    # Today: an IndexError at step 1. The model gives 2 logits, the data has 10 classes.
    config = guide_config(model={"name": "mlp", "hidden": [16], "out_features": 2})
    message = config_error(invoke("train", write_config(tmp_path, config), "--out", tmp_path / "runs"))
    assert "model: it gives 2 outputs per sample, but the data has 10 classes" in message
    assert "out_features: 10" in message
    assert not (tmp_path / "runs").exists()


def test_batchnorm_with_a_last_batch_of_one_sample_is_a_config_error(tmp_path):
    (tmp_path / "bn.py").write_text(
        "import torch\n"
        "def net(in_features: int, out_features: int):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(in_features, 8), torch.nn.BatchNorm1d(8),\n"
        "                               torch.nn.Linear(8, out_features))\n"
    )
    data = {"name": "random", "samples": 65, "features": 4, "classes": 3, "batch_size": 16}
    config = guide_config(model={"name": "bn.py:net"}, data=data)
    message = config_error(invoke("train", write_config(tmp_path, config), "--out", tmp_path / "runs"))
    assert "last batch of each epoch would hold a single sample (65 training samples" in message
    assert "data.drop_last: true" in message
    assert not (tmp_path / "runs").exists()
    assert_clean_exit(
        invoke("check", write_config(tmp_path, {**config, "data": {**data, "drop_last": True}})), 0
    )


@pytest.mark.parametrize(
    ("section", "value", "expected"),
    [
        ("optimizer", {"name": "torch.nn:MSELoss"}, "is not a torch.optim.Optimizer subclass"),
        ("scheduler", {"name": "torch.optim:Adam"}, "is not a learning-rate scheduler"),
        ("loss", {"name": "torch.optim:SGD"}, "is not a torch.nn.Module class"),
        ("data", {"name": "collections:OrderedDict"}, "is not a dataset optcli can use"),
        ("model", {"name": "listmodel.py:build"}, "built a list, not a torch.nn.Module"),
    ],
)
def test_a_class_by_import_path_that_is_not_what_its_section_needs(tmp_path, section, value, expected):
    # Today: AttributeError mid-run ("no attribute 'step'") or "internal error: ... 'describe'".
    (tmp_path / "listmodel.py").write_text(
        "def build(in_features: int, out_features: int):\n    return [1]\n"
    )
    message = config_error(
        invoke("train", write_config(tmp_path, guide_config(**{section: value})), "--out", tmp_path / "runs")
    )
    assert f"{section}" in message and expected in message and "internal error" not in message
    assert not (tmp_path / "runs").exists()


def test_messages_count_the_samples_of_the_split_they_talk_about(tmp_path):
    # 600 samples, 120 held out for validation: a batch of 500 is larger than the 480 that train.
    data = {"name": "random", "samples": 600, "features": 4, "classes": 3, "batch_size": 500}
    data.update(val_fraction=0.2, drop_last=True)
    message = config_error(invoke("check", write_config(tmp_path, guide_config(data=data))))
    assert "500 is larger than the 480 training samples (of 600, after the validation split)" in message


def test_targets_of_a_shape_the_loss_cannot_take_are_a_config_error(tmp_path):
    # y of shape [N, 2, 2] for cross-entropy over 4 outputs: today a crash at step 1.
    import numpy

    generator = numpy.random.default_rng(0)
    numpy.savez(tmp_path / "d.npz", x=generator.normal(size=(32, 6)), y=generator.normal(size=(32, 2, 2)))
    config = guide_config(data={"name": "tensors", "path": "d.npz", "batch_size": 8}, loss="cross_entropy")
    message = config_error(invoke("train", write_config(tmp_path, config), "--out", tmp_path / "runs"))
    assert message.startswith("error: loss: cross_entropy cannot compare") and "[8, 2, 2]" in message
    assert not (tmp_path / "runs").exists()


def test_every_independent_problem_of_a_file_in_one_message(tmp_path):
    """Broken data used to hide the model's and the scheduler's own mistakes until it was fixed."""
    config = {
        "model": {"name": "mlp", "hidden": 128},
        "data": {"name": "random", "sampels": 32},
        "optimizer": {"name": "adam", "lr": "fast"},
        "scheduler": {"name": "step", "step_siz": 3},
    }
    message = config_error(check(tmp_path, config))
    for problem in (
        "data.sampels: RandomData has no argument 'sampels' (did you mean 'samples'?)",
        "model.hidden: mlp expects a list or null for 'hidden', got 128 (int)",
        "optimizer.lr: Adam expects a number",
        "scheduler.step_siz: StepLR has no argument 'step_siz' (did you mean 'step_size'?)",
    ):
        assert problem in message, message


def test_other_libraries_names_for_an_argument_get_a_suggestion(tmp_path):
    message = config_error(check(tmp_path, guide_config(optimizer={"name": "adam", "learning_rate": 0.1})))
    assert "optimizer.learning_rate: Adam has no argument 'learning_rate' (did you mean 'lr'?)" in message


def test_an_unknown_optimizer_name_points_at_a_package_that_provides_it(tmp_path):
    message = config_error(check(tmp_path, guide_config(optimizer={"name": "lion", "lr": 1e-4})))
    assert "unknown optimizer 'lion'" in message
    assert "lion_pytorch:Lion" in message  # installed (dev extra), or named with its pip package


def test_a_dotted_import_path_is_told_where_the_colon_goes(tmp_path):
    optimizer = {"name": "schedulefree.AdamWScheduleFree", "lr": 1e-3}
    result = check(tmp_path, guide_config(optimizer=optimizer))
    message = config_error(result)
    assert "unknown optimizer 'schedulefree.AdamWScheduleFree'" in message
    assert "an import path takes a colon before the class: 'schedulefree:AdamWScheduleFree'" in message
    assert result.stderr.count("optimizer.name") == 1  # one message for one mistake


def test_a_missing_class_lists_only_what_the_section_can_use(tmp_path):
    pytest.importorskip("torch_optimizer")
    message = config_error(check(tmp_path, guide_config(optimizer={"name": "torch_optimizer:Adan"})))
    assert "unknown name in 'torch_optimizer' 'Adan'" in message and "Yogi" in message
    for unusable in ("Dict", "List", "Type", "types", "get", "Optimizer,"):
        assert unusable not in message, unusable


def test_a_user_datasets_mistake_is_named_under_data_name(tmp_path):
    (tmp_path / "triples.py").write_text(
        "import torch\nfrom torch.utils.data import Dataset\n"
        "class Triples(Dataset):\n    def __len__(self):\n        return 10\n"
        "    def __getitem__(self, index):\n        return torch.zeros(3), 0, 1\n"
    )
    config = {"model": "mlp", "data": {"name": "triples.py:Triples", "batch_size": 4}, "optimizer": "adam"}
    message = config_error(check(tmp_path, config))
    assert (
        message.startswith("error: data.name: ")
        and "triples.py:Triples: a train sample is a tuple" in message
    )


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400"])
def test_a_non_finite_argument_is_refused_naming_the_key(tmp_path, value):
    config = write_config(tmp_path, guide_config())
    message = config_error(invoke("check", config, "--set", f"optimizer.lr={value}"))
    assert "optimizer.lr: Adam needs a finite number for 'lr'" in message
    message = config_error(invoke("check", config, "--set", f"clip.max_norm={value}"))
    assert "clip.max_norm:" in message


def test_a_rate_that_overflows_the_weights_is_refused_before_training(tmp_path):
    message = config_error(check(tmp_path, guide_config(optimizer={"name": "sgd", "lr": 1e308})))
    assert "SGD cannot be used: its arguments overflow the parameters' float type" in message
    message = config_error(check(tmp_path, guide_config(optimizer={"name": "adam", "lr": 1e30})))
    assert "Adam cannot be used: three of its steps" in message and "made them infinite or nan" in message


def test_seeds_zero_is_a_clear_error_not_zero_seeds(tmp_path):
    compare = {"base": guide_config(), "runs": {"adam": {}, "sgd": {"optimizer": {"name": "sgd"}}}}
    message = config_error(invoke("compare", write_config(tmp_path, compare), "--seeds", "0"))
    assert (
        "--seeds 0: a count of seeds must be at least 1; for the single seed 0, write --seeds 0," in message
    )


def test_data_of_a_single_class_is_refused(tmp_path):
    (tmp_path / "one.csv").write_text("a,b,kind\n" + "".join(f"{i},{i * 2},apple\n" for i in range(20)))
    config = guide_config(data={"name": "csv", "path": "one.csv", "target": "kind"})
    message = config_error(check(tmp_path, config))
    assert "has a single class (apple)" in message and "nothing would train" in message


def test_yaml_built_to_exhaust_the_machine_is_refused_at_once(tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    model = "model: {name: mlp, hidden: *i}\ndata: random\noptimizer: adam\n"
    assert "aliases expand without bound" in config_error(check(tmp_path, laughs + model))
    deep = "model: mlp\ndata: random\noptimizer: adam\nx: " + "[" * 5000 + "]" * 5000 + "\n"
    assert "nesting depth" in config_error(check(tmp_path, deep)) or "nested" in config_error(
        check(tmp_path, deep)
    )
    huge = "model: mlp\ndata: random\noptimizer: adam\n" + "# padding\n" * 200_000
    assert "a config is at most" in config_error(check(tmp_path, huge))
