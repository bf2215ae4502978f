"""YAML configs mapped onto typed, frozen dataclasses.

A config class is a frozen dataclass whose fields have defaults (nested dataclasses
allowed). :func:`load_config` reads a YAML file, applies ``key=value`` overrides
(dotted keys for nested fields, values parsed as YAML scalars), checks every key,
type and range, and returns an instance. Unknown keys, wrong types and values out
of range are :class:`~jaxsafe.errors.UserError`\\ s naming the key, the value, the
allowed range and where the value came from (the file, or ``override k=v``), so a
typo never silently falls back to a default and ``steps=-5`` never runs.

Ranges are declared once, on the field, with :func:`field` (a thin wrapper of
:func:`dataclasses.field` that stores a :class:`Range` in the field's metadata under
``"range"``): bounds ``ge``/``gt``/``le``/``lt``, a set of ``choices``, and ``also``
for sentinel values outside the bounds (``-1`` = "all"). ``None`` always passes (an
optional field left unset); for tuple/list fields every item is checked. Checks that
relate two fields (warmup below steps) belong in ``__post_init__`` raising
``ValueError``: :func:`load_config` reports it as one line with the file.
:func:`check_ranges` runs the same checks on a config built in Python.

Example::

    @dataclasses.dataclass(frozen=True)
    class Train:
        lr: float = field(1e-3, gt=0)
        steps: int = field(100, ge=1)
        dropout: float = field(0.0, ge=0, le=1)
        mode: str = field("fast", choices=("fast", "slow"))

    cfg = load_config(Train, "configs/x.yaml", ["steps=20"])
    load_config(Train, None, ["steps=0"])
    # UserError: override steps=0: key 'steps' is 0, must be >= 1
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

from jaxsafe.errors import UserError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a config field accepts (see the module docstring)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    also: tuple = ()

    def __contains__(self, value: Any) -> bool:
        if value is None or value in self.also:
            return True
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True  # the type check reports these
        if isinstance(value, float) and math.isnan(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def describe(self) -> str:
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            lo = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
            hi = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
            if lo and hi:
                text = f"in {lo}, {hi}"
            elif lo:
                text = (">= " if lo[0] == "[" else "> ") + lo[1:]
            elif hi:
                text = ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
            else:
                text = "any number"
        return text + "".join(f" or {a!r}" for a in self.also)


def _num(x: float) -> str:
    if float(x).is_integer():
        x = int(x)
        return f"2**{x.bit_length() - 1}" if x >= 2**16 and x & (x - 1) == 0 else str(x)
    return f"{x:g}"


def field(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, choices: Iterable | None = None,
          also: Iterable = (), **kwargs: Any) -> Any:
    """:func:`dataclasses.field` with a declared :class:`Range` (``metadata["range"]``)."""
    rng = Range(ge, gt, le, lt, tuple(choices) if choices is not None else None, tuple(also))
    if isinstance(default, (list, dict, set)) or (dataclasses.is_dataclass(default) and not isinstance(default, type)):
        kwargs.setdefault("default_factory", lambda d=default: d)
    elif default is not dataclasses.MISSING:
        kwargs["default"] = default
    return dataclasses.field(metadata={"range": rng, **kwargs.pop("metadata", {})}, **kwargs)


def range_of(cls: type, name: str) -> Range | None:
    """The declared range of field ``name`` of the config class ``cls`` (``None``: unconstrained)."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata.get("range")


def check_ranges(cfg: Any, source: str = "config") -> Any:
    """Check every declared range of ``cfg`` (recursively); returns ``cfg`` or raises :class:`UserError`."""
    _check_instance(cfg, _Origins(source, {}), "")
    return cfg


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Build ``cls`` from the YAML file at ``path`` (optional) and ``key=value`` overrides."""
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise UserError(f"config file {path} is a directory, not a YAML file")
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML ({_first_line(e)})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"config file {path} cannot be read ({_first_line(e)})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: top level must be a mapping of keys to values")
        data = loaded
    origins = _Origins(source, {})
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"override {item!r} is not of the form key=value")
        _set_dotted(data, key, _parse_scalar(raw))
        origins.overrides[key] = item
    return _build(cls, data, origins, prefix="")


def config_from_dict(cls: type[T], data: dict[str, Any], source: str = "<dict>") -> T:
    """Build ``cls`` from a plain mapping (nested mappings for sections), with every check of
    :func:`load_config`; ``source`` names the origin in error messages."""
    import copy

    return _build(cls, copy.deepcopy(dict(data)), _Origins(source, {}), prefix="")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict (tuples as lists) suitable for YAML/JSON."""
    return _plain(dataclasses.asdict(cfg))


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


@dataclasses.dataclass
class _Origins:
    """Where values came from: the file (``source``) or an override (dotted key -> ``k=v`` text)."""

    source: str
    overrides: dict[str, str]

    def of(self, key: str) -> str:
        for k, item in self.overrides.items():
            if key == k or key.startswith(k + ".") or key.startswith(k + "["):
                return f"override {item}"
        return self.source


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _set_dotted(data: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = data
    for p in parents:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise UserError(f"override {key!r}: {p!r} is not a section")
        node = child
    node[leaf] = value


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _build(cls: type, data: dict, origins: _Origins, prefix: str, base: Any = None) -> Any:
    """``cls`` from ``data``; keys missing from ``data`` keep their value in ``base`` (the
    field's default instance for a nested section), else the class default."""
    if not isinstance(data, dict):
        where = origins.of(prefix.rstrip("."))
        raise UserError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        known = ", ".join(sorted(fields))
        where = origins.of(f"{prefix}{unknown[0]}")
        raise UserError(f"{where}: unknown key '{prefix}{unknown[0]}' (known keys: {known})")
    kwargs = {}
    for name, value in data.items():
        default = getattr(base, name) if base is not None else _field_default(fields[name])
        kwargs[name] = _coerce(hints[name], value, origins, f"{prefix}{name}", default)
        _check_value(fields[name], kwargs[name], origins, f"{prefix}{name}")
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except (TypeError, ValueError) as e:
        where = origins.source if not origins.overrides else f"{origins.source} (with overrides {' '.join(origins.overrides.values())})"
        raise UserError(f"{where}: {_first_line(e)}") from None


def _check_value(f: dataclasses.Field, value: Any, origins: _Origins, key: str) -> None:
    rng = f.metadata.get("range")
    if rng is None:
        return
    items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
    for i, v in items:
        if v not in rng:
            k = key if i is None else f"{key}[{i}]"
            raise UserError(f"{origins.of(k)}: key '{k}' is {v!r}, must be {rng.describe()}")


def _check_instance(cfg: Any, origins: _Origins, prefix: str) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        _check_value(f, value, origins, f"{prefix}{f.name}")
        if dataclasses.is_dataclass(value):
            _check_instance(value, origins, f"{prefix}{f.name}.")
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                if dataclasses.is_dataclass(v):
                    _check_instance(v, origins, f"{prefix}{f.name}[{i}].")


def _coerce(tp: Any, value: Any, origins: _Origins, key: str, default: Any = None) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples and ints to floats.
    A nested section (``tp`` a dataclass) is built over ``default`` when that is an instance of it."""
    source = origins.of(key)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        base = default if isinstance(default, tp) else None
        return _build(tp, value, origins, prefix=f"{key}.", base=base)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, origins, key, default)
            except UserError:
                continue
        raise UserError(f"{source}: key '{key}' has value {value!r}, expected {_type_name(tp)}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise UserError(f"{source}: key '{key}' must be one of {list(typing.get_args(tp))}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{source}: key '{key}' must be a list, got {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, origins, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{source}: key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "5e-5" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{source}: key '{key}' must be a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{source}: key '{key}' must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{source}: key '{key}' must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{source}: key '{key}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{source}: key '{key}' must be a string, got {value!r}")
        return value
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
