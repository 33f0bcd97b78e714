"""What decides an episode, as JSON: a controller's type and settings and its models' weights.

``describe(controller)`` walks the controller's public attributes (its optimiser, proposer,
objective, dynamics and their settings): numbers, strings and small arrays are written out,
larger arrays and every ``torch.nn.Module``'s weights by their sha256, environments by their
id. What planning changes as it goes (history, the previous plan, carried elites, evaluation
counters, random generators) is left out, so a controller describes the same before and after
an episode. Two controllers that describe alike plan alike; ``differing_keys`` names where two
descriptions part.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import types
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch

# Attributes that planning updates as it goes: not settings.
VOLATILE = frozenset({"history", "previous_plan", "last_result", "last_context", "elites", "n_evaluations",
                      "n_cost_calls", "generator", "rng"})
SMALL = 64  # arrays with up to this many entries are written out; larger ones by their sha256
MAX_DEPTH = 8
OUR_PACKAGES = ("planners", "uva_plan")


def type_name(obj: Any) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict: every entry's name, shape, dtype and bytes, by name."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _array(array: np.ndarray) -> Any:
    if array.size <= SMALL and array.dtype.kind in "biuf":
        return [_number(x) for x in array.ravel().tolist()] if array.ndim else _number(array.item())
    digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    return {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": digest}


def _number(x: Any) -> Any:
    """JSON-safe and comparable: a non-finite float as its repr (NaN never equals itself)."""
    return repr(x) if isinstance(x, float) and not math.isfinite(x) else x


def describe(obj: Any, _depth: int = 0, _seen: set[int] | None = None) -> Any:
    """A JSON description of ``obj`` that two equivalent controllers share (module docstring)."""
    seen = set() if _seen is None else _seen
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return _number(obj)
    if isinstance(obj, np.generic):
        return _number(obj.item())
    if isinstance(obj, torch.Tensor):
        return _array(obj.detach().cpu().numpy() if obj.dtype != torch.bfloat16 else obj.detach().float().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return _array(obj)
    if isinstance(obj, (torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, (type, functools.partial)) or callable(obj) and not hasattr(obj, "__dict__"):
        return type_name(obj) if isinstance(obj, type) else _callable(obj, _depth, seen)
    if id(obj) in seen or _depth >= MAX_DEPTH:
        return {"type": type_name(obj)}
    seen.add(id(obj))
    if isinstance(obj, Mapping):
        return {str(k): describe(v, _depth + 1, seen) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [describe(v, _depth + 1, seen) for v in obj]
    if isinstance(obj, gym.Env):
        spec = getattr(obj.unwrapped, "spec", None) or getattr(obj, "spec", None)
        return {"type": type_name(obj.unwrapped), "env_id": getattr(spec, "id", None)}
    if isinstance(obj, torch.nn.Module):
        out = {"type": type_name(obj), "weights_sha256": weights_sha256(obj)}
        if hasattr(obj, "config"):
            out["config"] = describe(obj.config, _depth + 1, seen)
        return out
    if dataclasses.is_dataclass(obj):
        return {"type": type_name(obj), **{f.name: describe(getattr(obj, f.name), _depth + 1, seen)
                                           for f in dataclasses.fields(obj) if f.name not in VOLATILE}}
    if isinstance(obj, types.ModuleType):
        return {"module": obj.__name__}
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return _callable(obj, _depth, seen)
    if _depth > 0 and not type(obj).__module__.startswith(OUR_PACKAGES):
        return {"type": type_name(obj)}  # e.g. a numba dispatcher: its state is a cache, not a setting
    attributes = {k: v for k, v in sorted(vars(obj).items()) if not k.startswith("_") and k not in VOLATILE}
    if not attributes and callable(obj):
        return _callable(obj, _depth, seen)
    return {"type": type_name(obj), **{k: describe(v, _depth + 1, seen) for k, v in attributes.items()}}


def _callable(obj: Any, depth: int, seen: set[int]) -> Any:
    if isinstance(obj, functools.partial):
        return {"type": "functools.partial", "func": _callable(obj.func, depth, seen),
                "args": describe(obj.args, depth + 1, seen), "keywords": describe(obj.keywords, depth + 1, seen)}
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two descriptions (or fingerprints) differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys: list[str] = []
        for key in sorted(set(a) | set(b)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                keys.append(path)
            else:
                keys.extend(differing_keys(a[key], b[key], path))
        return keys
    return [] if a == b else [prefix or "(all)"]
