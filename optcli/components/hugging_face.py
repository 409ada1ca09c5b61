"""Hugging Face `transformers` models named by class: `model: {name: "transformers:GPT2LMHeadModel",
config: {n_layer: 2, ...}}` builds the class's own config class from the mapping (nothing downloaded)
and the model from it, with fresh weights. (The checking of the mapping is config/hugging_face.py's.)
"""

from __future__ import annotations

from typing import Any

import torch


def is_hugging_face_model(target: Any) -> bool:
    """A transformers model class: a Module whose `config_class` is the configuration it is built from."""
    return (
        isinstance(target, type)
        and issubclass(target, torch.nn.Module)
        and isinstance(getattr(target, "config_class", None), type)
    )


def is_causal_lm(model_class: type) -> bool:
    """A model that predicts each next token (GPT2LMHeadModel, LlamaForCausalLM): given `labels`, it
    shifts them itself, so logit t is judged against label t + 1."""
    return model_class.__name__.endswith(("ForCausalLM", "LMHeadModel"))


def quiet_transformers() -> None:
    """transformers' warnings held back to errors in optcli's process: made for its own Trainer and
    hub downloads (token ids of a vocabulary it does not know, a loss_type it guessed), they would
    interleave with the live table; optcli checks what matters and says it in its own words."""
    from transformers.utils import logging

    logging.set_verbosity_error()


class HuggingFaceModel:
    """The model class built from its config class and a mapping; what a model Component calls."""

    def __init__(self, model_class: type[torch.nn.Module]) -> None:
        self.model_class = model_class
        self.__name__ = model_class.__name__
        self.causal = is_causal_lm(model_class)
        self.config_class: Any = model_class.config_class  # type: ignore[attr-defined]
        quiet_transformers()

    def make_config(self, config: dict[str, Any]) -> Any:
        return self.config_class(**config)

    def __call__(self, config: dict[str, Any]) -> torch.nn.Module:
        return self.model_class(self.make_config(config))

    def __reduce__(self) -> tuple[Any, ...]:
        return (HuggingFaceModel, (self.model_class,))
