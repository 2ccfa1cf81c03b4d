"""What a readable run.json holds, checked field by field, so that one damaged file (``[]``,
``null``, a config that is a string, ``"started": "x"``) is reported as damaged with its reason
instead of breaking every reader that trusts its fields.

The check is about types, not values: a config from an older or newer version with other
fields still reads, but a known field of the wrong type does not (the dashboard does
arithmetic with ``optim.steps`` and ``dino.out_dim``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from trainer.config import Config

STATUSES = ("running", "finished", "failed", "stopped")
DAMAGED = "damaged"  # what readers show for a run folder whose run.json cannot be used

_NUMBER = (int, float)
_LATEST_TIME = 32503680000.0  # 3000-01-01 in seconds since the epoch
# field -> (allowed types, required)
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "config": ((dict,), True), "status": ((str,), True), "method": ((str,), False), "group": ((str,), False),
    "reason": ((str,), False), "pid": ((int, type(None)), False), "pid_start": ((int, type(None)), False),
    "boot_id": ((str,), False), "host": ((str,), False), "started": ((*_NUMBER, type(None)), False),
    "ended": ((*_NUMBER, type(None)), False), "step": ((int,), False), "versions": ((dict,), False),
    "run_id": ((str,), False),
}
_DEFAULTS = {"method": "?", "group": "", "reason": "", "pid": None, "host": "", "started": None, "ended": None,
             "step": 0}


class InfoError(ValueError):
    """run.json parsed, but does not describe a run; the message says which field is wrong."""


def check_info(obj: Any, run_id: str) -> dict[str, Any]:
    """``obj`` (parsed run.json) with defaults filled in and ``run_id`` set to the folder name
    (the name every reader addresses the run by); :class:`InfoError` if it is unusable."""
    if not isinstance(obj, dict):
        raise InfoError(f"it holds {type(obj).__name__} {str(obj)[:40]!r}, not a run's fields")
    for key, (types, required) in _FIELDS.items():
        if key not in obj:
            if required:
                raise InfoError(f"it has no '{key}' field")
            continue
        v = obj[key]
        if isinstance(v, bool) or not isinstance(v, types):
            raise InfoError(f"its '{key}' is {v!r:.60}, not {' or '.join(_type_name(t) for t in types)}")
        if isinstance(v, float) and not math.isfinite(v):
            raise InfoError(f"its '{key}' is {v}")
    for key in ("started", "ended"):
        if isinstance(obj.get(key), _NUMBER) and not 0 <= obj[key] < _LATEST_TIME:
            raise InfoError(f"its '{key}' time {obj[key]} is not a date")
    if obj["status"] not in STATUSES:
        raise InfoError(f"its status '{obj['status']:.40}' is not one of {', '.join(STATUSES)}")
    if isinstance(obj.get("step"), int) and obj["step"] < 0:
        raise InfoError(f"its step {obj['step']} is negative")
    _check_config(obj["config"])
    return {**_DEFAULTS, **obj, "run_id": run_id}


def _check_config(config: dict[str, Any]) -> None:
    for section, values in config.items():
        if not isinstance(values, dict):
            raise InfoError(f"its config section '{section}' is {values!r:.40}, not a mapping")
        hints = _HINTS.get(section)
        if hints is None:
            continue
        for name, value in values.items():
            typ = hints.get(name)
            if typ is None:
                continue
            ok = (isinstance(value, bool) if typ is bool else
                  isinstance(value, typ if typ is not float else _NUMBER) and not isinstance(value, bool))
            if not ok:
                raise InfoError(f"its config value {section}.{name} is {value!r:.40}, not {_type_name(typ)}")


def _type_name(t: type) -> str:
    return {int: "a whole number", float: "a number", str: "text", dict: "a mapping", bool: "true/false",
            type(None): "null"}.get(t, t.__name__)


# section -> {field: declared type}, computed once (get_type_hints is slow and runs per run.json)
_HINTS = {f.name: typing.get_type_hints(typing.get_type_hints(Config)[f.name]) for f in dataclasses.fields(Config)}
