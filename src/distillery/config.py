"""Stage configs from TOML: one loader for every stage's dataclass (serve, harvest, train,
evaluate, audit), so a config file is read and checked the same way everywhere."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, section: str | None = None,
                **overrides: Any) -> T:
    """cls built from a TOML file (optionally one [section]), then non-None flag overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: {e}") from None
        values = data.get(section, data) if section else data
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"{path}: " if path is not None else ""
        raise ValueError(f"{where}unknown {cls.__name__} keys {unknown}: valid keys are "
                         f"{sorted(names)}")
    values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
    return cls(**values)
