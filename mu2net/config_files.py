"""Configs as files: `--config PATH.json|yaml` next to the named variants.

The starting point is a named config written out (`mu2net config cpu_demo > my.json`); edit it
and pass the file wherever `--config NAME` is accepted. A file is read strictly, so a typo
never silently falls back to a default:

* every key must be a field of the config (nested sections included); an unknown key is
  refused with the valid keys of its section;
* every value must have the field's type (`search.batch_size: "64"` is refused; an integer
  where a float is expected is read as that float, so `1` and `1.0` hash alike);
* a missing field takes the dataclass default where it has one (a file written before a field
  was added stays valid); sections and fields without a default are required;
* `method_version` is derived from the content. A file may carry it (the printed starting point
  does): when the content no longer hashes to it, the file is refused, naming the new value, so
  an edit of the method is always deliberate;
* `name` names the pipeline (`onboard-<name>-<target>`) and the runs in the store: lower-case
  letters, digits, `-` and `_`. A named variant's name is reserved for its own content.

YAML is read with PyYAML's safe loader. YAML 1.1 reads `2e5` as a string: write `2.0e5`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
from typing import Any

from mu2net.errors import ConfigError

FILE_SUFFIXES = (".json", ".yaml", ".yml")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def is_config_file(name: str) -> bool:
    """Whether `--config` names a file rather than a variant."""
    return name.lower().endswith(FILE_SUFFIXES) or os.sep in name or os.path.isfile(name)


def load_config_file(path: str) -> Any:
    """The `Config` a JSON or YAML file describes, validated (see the module docstring)."""
    from mu2net.config import CONFIG_NAMES, Config, get_config

    where = f"config file {path!r}"
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist; valid configs: {list(CONFIG_NAMES)} or a "
                          f"{'/'.join(FILE_SUFFIXES)} file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a folder, not a .json or .yaml file") from None
    data = _parse(text, path, where)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of config fields at the top level, "
                          f"got {type(data).__name__}")
    recorded = data.pop("method_version", None)
    try:
        config = build(Config, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not _NAME.match(config.name):
        raise ConfigError(f"{where}: name={config.name!r} is invalid: expected 1-40 lower-case "
                          "letters, digits, '-' or '_' (it names the pipeline)")
    if config.name in CONFIG_NAMES and config != get_config(config.name):
        raise ConfigError(f"{where}: name={config.name!r} is a named config's, but the content "
                          "differs from it: give the file its own name")
    if recorded is not None and recorded != config.method_version:
        raise ConfigError(f"{where}: method_version={recorded!r} does not match the content, "
                          f"which hashes to {config.method_version!r}: the method changed; "
                          "delete the method_version line (or set it to the new value)")
    return config


def _parse(text: str, path: str, where: str) -> Any:
    if path.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where} is not valid JSON: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{where} is not valid YAML: {detail}") from None


# === strict building of (nested) frozen dataclasses =========================================


def build(cls: type, data: Any, prefix: str) -> Any:
    """An instance of dataclass `cls` from plain JSON values, every key and type checked."""
    label = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{label}={data!r} is invalid: expected a mapping of "
                          f"{sorted(f.name for f in dataclasses.fields(cls))}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {prefix + unknown[0]!r}; valid keys"
                          f"{' of ' + label if prefix else ''}: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in data:
            if (f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING):  # type: ignore[misc]
                raise ConfigError(f"{prefix}{name} is missing (a required field)")
            continue
        values[name] = _value(hints[name], data[name], f"{prefix}{name}")
    return cls(**values)


def _value(hint: Any, value: Any, key: str) -> Any:
    """`value` checked against the type `hint` and converted (lists to tuples, ints to
    floats where a float is expected)."""
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return _frozen(value)
    if hint is tuple or origin is tuple:
        if not isinstance(value, list | tuple):
            raise _bad(key, value, "a list")
        if not args or args[-1] is Ellipsis:
            item = args[0] if args else Any
            return tuple(_value(item, v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _bad(key, value, f"a list of {len(args)} items")
        return tuple(_value(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value,
                                                                                strict=True)))
    if hint is bool:
        if not isinstance(value, bool):
            raise _bad(key, value, "true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(key, value, "an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            hint_yaml = " (in YAML write exponents with a dot: 2.0e5)" \
                if isinstance(value, str) else ""
            raise _bad(key, value, "a number" + hint_yaml)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _bad(key, value, "a string")
        return value
    raise ConfigError(f"{key}: field type {hint!r} cannot be read from a file")  # a bug


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _bad(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is invalid: expected {expected}")
