"""lcfix: fix latent concept misalignment (LC-Mis) in text-to-image generation.

    >>> import lcfix
    >>> plan = lcfix.plan("a tea cup of iced coke")
    >>> plan.at_risk, plan.pairs[0].fragile
    (True, 'tea cup')

Heavy dependencies (torch, diffusers, transformers, litellm) load only when a feature needs
them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lcfix._version import __version__
from lcfix.errors import (
    AdapterError,
    ConfigError,
    InputError,
    LcfixError,
    PlannerError,
    PlanValidationError,
)

if TYPE_CHECKING:
    from lcfix.client import AsyncClient, Client
    from lcfix.middleware import intercept, plan_of, wrap
    from lcfix.planner import Planner, PlannerKind, get_planner
    from lcfix.plans import Concept, ConceptPair, Plan, PlannerInfo, Rewrites, Stage

__all__ = [
    "AdapterError",
    "AsyncClient",
    "Client",
    "Concept",
    "ConceptPair",
    "ConfigError",
    "InputError",
    "LcfixError",
    "Plan",
    "PlanValidationError",
    "PlannerError",
    "PlannerInfo",
    "Rewrites",
    "Stage",
    "__version__",
    "get_planner",
    "intercept",
    "plan",
    "plan_of",
    "wrap",
]

# Public names that live in modules with heavier imports (pydantic, httpx), loaded on first
# use so that `import lcfix` stays cheap.
_LAZY = {
    "Concept": "lcfix.plans",
    "ConceptPair": "lcfix.plans",
    "Plan": "lcfix.plans",
    "PlannerInfo": "lcfix.plans",
    "Rewrites": "lcfix.plans",
    "Stage": "lcfix.plans",
    "Client": "lcfix.client",
    "AsyncClient": "lcfix.client",
    "wrap": "lcfix.middleware",
    "intercept": "lcfix.middleware",
    "plan_of": "lcfix.middleware",
    "get_planner": "lcfix.planner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lcfix' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def plan(prompt: str, *, planner: PlannerKind | Planner = "auto", **kwargs: Any) -> Plan:
    """Plan one prompt with the offline planner, or the LLM planner when one is configured."""
    from lcfix.planner import get_planner

    p = get_planner(planner, **kwargs) if isinstance(planner, str) else planner
    return p.plan(prompt)
