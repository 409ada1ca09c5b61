"""optcli's optional extras, read from its own metadata (pyproject.toml is the one place that says
which extra installs which package)."""

from __future__ import annotations

import tomllib

from optcli import extras
from tests.conftest import REPO, config_error, guide_config, invoke, write_config


def test_every_extra_of_pyproject_is_known_by_its_import_names_and_installed_for_the_tests():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    known = extras.extras()
    assert set(known) == set(declared) - {"dev"}
    for extra, packages in known.items():
        assert len(packages) == len(declared[extra]), extra
        assert extras.missing(extra) == [], extra  # the dev extra brings every one (names resolve)
    assert extras.extra_of("transformers.models.gpt2") == "transformers"
    assert extras.extra_of("sklearn") == "sklearn" and extras.extra_of("torch") is None


def test_a_missing_package_of_an_extra_is_named_with_the_install_command(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "google_crc32c" else real(name, *rest),
    )
    config = guide_config(output={"tensorboard": True})
    message = config_error(invoke("check", write_config(tmp_path, config)))
    assert "output.tensorboard: needs the tensorboard extra: pip install 'optcli[tensorboard]'" in message


def test_a_model_from_a_package_an_extra_installs_names_the_extra_when_it_is_missing(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    config = {**guide_config(), "model": {"name": "transformers:GPT2LMHeadModel", "config": {}}}
    message = config_error(invoke("check", write_config(tmp_path, config)))
    assert (
        "cannot import module 'transformers'" in message and "pip install 'optcli[transformers]'" in message
    )
