"""An encoder's prompts and per-request truncation (embed, embed-sparse).

A prompt is text put before an input, by name, as sentence-transformers does (`"query: "` +
text). A model's own prompts come from its `config_sentence_transformers.json` ("prompts",
"default_prompt_name"); its catalog entry's options add to them and override them
(app/spec.py PromptOptions). A request names one with `prompt_name`, or with OpenAI's
`input_type`, which options.input_types maps to a prompt name (else it names the prompt of
the same name). Without either the default prompt applies, if the model has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import InvalidInput, ModelLoadError
from app.spec import ModelSpec, PromptOptions
from app.tasks.base import TruncationSide

ST_CONFIG = "config_sentence_transformers.json"


@dataclass(frozen=True)
class EncoderParams:
    """What every encoder request may say about its inputs besides the texts."""

    prompt_name: str | None = None  # a prompt of the model's, by name
    input_type: str | None = None  # OpenAI-style: mapped to a prompt name
    truncate: bool = True  # False: an input over max_length is refused (413), not cut
    truncation_direction: TruncationSide | None = None  # None: the tokenizer's own side


def _own_prompts(spec: ModelSpec, model_dir: Path) -> tuple[dict[str, str], str | None]:
    """The prompts and default prompt name of the model's sentence-transformers config."""
    path = model_dir / ST_CONFIG
    if not path.is_file():
        return {}, None
    try:
        config: Any = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"model {spec.name!r}: {path} is not readable JSON ({type(exc).__name__}); fix or "
            "remove it"
        ) from None
    prompts = config.get("prompts") if isinstance(config, dict) else None
    if prompts is None:
        prompts = {}
    if not isinstance(prompts, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()
    ):
        raise ModelLoadError(
            f'model {spec.name!r}: {path} has "prompts" that are not a mapping of names to '
            "texts; fix the file, or set options.prompts in the catalog entry"
        )
    default = config.get("default_prompt_name") if isinstance(config, dict) else None
    return prompts, default if isinstance(default, str) else None


@dataclass(frozen=True)
class PromptTable:
    """One model's prompts, and which one a request's fields pick."""

    model: str
    prompts: dict[str, str] = field(default_factory=dict)
    default_name: str | None = None
    input_types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, spec: ModelSpec, model_dir: Path) -> PromptTable:
        options = spec.options if isinstance(spec.options, PromptOptions) else PromptOptions()
        own, own_default = _own_prompts(spec, model_dir)
        prompts = {**own, **options.prompts}
        default = options.default_prompt_name or own_default
        where = f"model {spec.name!r}"
        if default is not None and default not in prompts:
            raise ModelLoadError(
                f"{where}: default prompt {default!r} is not one of its prompts "
                f"{sorted(prompts)}; add it to options.prompts or name another"
            )
        unknown = {kind: name for kind, name in options.input_types.items() if name not in prompts}
        if unknown:
            raise ModelLoadError(
                f"{where}: options.input_types maps to prompts it does not have ({unknown}); "
                f"its prompts: {sorted(prompts)}"
            )
        return cls(spec.name, prompts, default, dict(options.input_types))

    def _listing(self) -> str:
        if not self.prompts:
            return (
                "it has none (give it some in its catalog entry's options.prompts, or use a "
                f"model whose {ST_CONFIG} has them)"
            )
        mapped = f"; input_type maps {self.input_types}" if self.input_types else ""
        return f"its prompts: {sorted(self.prompts)}{mapped}"

    def name_for(self, params: EncoderParams) -> str | None:
        """The prompt a request's fields pick (None: no prompt); unknown names raise 422."""
        if params.prompt_name is not None and params.input_type is not None:
            raise InvalidInput("send prompt_name or input_type, not both")
        if params.prompt_name is not None:
            if params.prompt_name not in self.prompts:
                raise InvalidInput(
                    f"prompt_name: model {self.model!r} has no prompt {params.prompt_name!r}; "
                    f"{self._listing()}"
                )
            return params.prompt_name
        if params.input_type is not None:
            name = self.input_types.get(params.input_type, params.input_type)
            if name not in self.prompts:
                raise InvalidInput(
                    f"input_type: model {self.model!r} has no prompt for "
                    f"{params.input_type!r}; {self._listing()}"
                )
            return name
        return self.default_name

    def refusal(self, params: EncoderParams) -> InvalidInput | None:
        try:
            self.name_for(params)
        except InvalidInput as exc:
            return exc
        return None

    def apply(self, text: str, params: EncoderParams) -> str:
        """The text the model reads: the chosen prompt, then the input."""
        name = self.name_for(params)
        return text if name is None else self.prompts[name] + text

    def describe(self) -> dict[str, Any]:
        return {"prompts": dict(self.prompts), "default_prompt_name": self.default_name}
