"""Middleware: plan prompts inside calls your code already makes, without patching anything.

``lcfix.wrap(obj)`` returns a new object with ``obj``'s interface that plans each prompt
before it delegates to ``obj``. ``obj`` itself is never modified, and every call returns what
``obj`` would return (the same type), with the plan reachable through ``lcfix.plan_of``::

    client = lcfix.wrap(OpenAI())
    resp = client.images.generate(model="gpt-image-1", prompt="a tea cup of iced coke")
    type(resp)            # openai.types.ImagesResponse, as without lcfix
    lcfix.plan_of(resp)   # the Plan; the API got the LC-Mis-aware rewrite

Supported objects:

- an OpenAI-style client (anything with ``images.generate``), sync or async: the prompt is
  replaced by the plan's ``natural`` rewrite (a hosted API cannot switch prompts mid-sampling;
  for two-request staging emulation use ``lcfix.Client``);
- a diffusers pipeline: ``pipe(prompt=..., **kwargs)`` runs staged inside sampling through
  ``lcfix.adapters.staging.StagingCallback``; every other keyword passes through, and your own
  ``callback_on_step_end`` still runs;
- ``litellm.image_generation`` / ``aimage_generation`` (or the ``litellm`` module): the rewrite
  in the provider's dialect (``[from:to:when]`` for A1111-backed providers stages natively);
- any callable with a prompt argument, via ``lcfix.intercept(prompt_arg="prompt")``.

``mode``: ``"stage"`` (default) stages where the target can, else rewrites; ``"rewrite"`` only
rewrites; ``"off"`` passes calls through without planning. ``only_at_risk`` leaves prompts
that are not at risk exactly as written.
"""

from __future__ import annotations

import functools
import inspect
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal, TypeVar, cast

from lcfix.errors import ConfigError, InputError, UnsupportedError
from lcfix.planner import Planner, PlannerKind
from lcfix.plans import Plan, RewriteDialect

WrapMode = Literal["stage", "rewrite", "off"]
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_PLAN_ATTR = "_lcfix_plan"
_REGISTRY_SIZE = 64
_registry: OrderedDict[int, tuple[Any, Plan]] = OrderedDict()
_registry_lock = threading.Lock()


def plan_of(obj: object) -> Plan | None:
    """The plan lcfix made for the call that returned ``obj`` (None if lcfix did not plan it).

    >>> lcfix.plan_of(client.images.generate(prompt="a tea cup of iced coke")).fragile
    ['tea cup']
    """
    plan = getattr(obj, _PLAN_ATTR, None)
    if isinstance(plan, Plan):
        return plan
    with _registry_lock:
        entry = _registry.get(id(obj))
    if entry is None:
        return None
    ref, plan = entry
    target = ref() if isinstance(ref, weakref.ref) else ref
    return plan if target is obj else None


def _attach(obj: T, plan: Plan) -> T:
    try:
        object.__setattr__(obj, _PLAN_ATTR, plan)
        return obj
    except (AttributeError, TypeError):
        pass  # dicts, tuples, slotted or frozen objects: remember it on the side
    try:
        ref: Any = weakref.ref(obj)
    except TypeError:
        ref = obj  # kept alive, but only the last few results are remembered
    with _registry_lock:
        _registry[id(obj)] = (ref, plan)
        while len(_registry) > _REGISTRY_SIZE:
            _registry.popitem(last=False)
    return obj


class _Planning:
    """What every wrapper shares: the planner (built on first use) and the decisions. No I/O."""

    def __init__(self, planner: PlannerKind | Planner, mode: WrapMode, only_at_risk: bool) -> None:
        if mode not in ("stage", "rewrite", "off"):
            raise ConfigError(f"unknown wrap mode {mode!r}; choose stage, rewrite or off")
        self._spec = planner
        self._planner: Planner | None = None if isinstance(planner, str) else planner
        self._lock = threading.Lock()
        self.mode = mode
        self.only_at_risk = only_at_risk

    @property
    def planner(self) -> Planner:
        if self._planner is None:
            with self._lock:
                if self._planner is None:
                    from lcfix.planner import get_planner

                    self._planner = get_planner(cast(PlannerKind, self._spec))
        return self._planner

    def _edited(self, prompt: str) -> Plan | None:
        # A prompt in A1111 prompt editing keeps its author's schedule; loose brackets that
        # are not valid syntax are planned like any prompt (a wrapper must not break calls).
        from lcfix.a1111 import parse_if_edited

        try:
            return parse_if_edited(prompt)
        except InputError:
            return None

    def plan(self, prompt: str) -> Plan:
        return self._edited(prompt) or self.planner.plan(prompt)

    async def aplan(self, prompt: str) -> Plan:
        return self._edited(prompt) or await self.planner.aplan(prompt)

    def changes(self, plan: Plan) -> bool:
        return self.mode != "off" and (plan.at_risk or not self.only_at_risk)

    def text(self, plan: Plan, dialect: RewriteDialect) -> str:
        """The prompt to send in ``dialect``; ``a1111`` (native staging) only in stage mode."""
        if dialect == "a1111" and self.mode == "stage":
            return plan.rewrites.a1111
        if dialect == "weighted":
            return plan.rewrites.weighted
        return plan.rewrites.natural


def _locate(
    fn: Callable[..., Any], prompt_arg: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | str | None:
    """Where the prompt is in this call: a keyword name, a positional index, or None."""
    if prompt_arg in kwargs:
        return prompt_arg
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    for i, p in enumerate(params):
        if p.name == prompt_arg and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            return i if i < len(args) else None
    return None


def _intercepted(
    fn: F,
    core: _Planning,
    prompt_arg: str,
    dialect: RewriteDialect | Callable[[dict[str, Any]], RewriteDialect],
) -> F:
    """``fn`` with its prompt argument replaced by the plan's text; sync or async like ``fn``."""

    def prepare(
        args: tuple[Any, ...], kwargs: dict[str, Any], plan: Plan
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if not core.changes(plan):
            return args, kwargs
        d = dialect(kwargs) if callable(dialect) else dialect
        text = core.text(plan, d)
        where = _locate(fn, prompt_arg, args, kwargs)
        if isinstance(where, int):
            args = (*args[:where], text, *args[where + 1 :])
        elif where is not None:
            kwargs = {**kwargs, where: text}
        return args, kwargs

    def prompt_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        where = _locate(fn, prompt_arg, args, kwargs)
        value = args[where] if isinstance(where, int) else kwargs.get(where) if where else None
        return value if isinstance(value, str) and value.strip() else None

    if _is_async(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            prompt = prompt_in(args, kwargs)
            if core.mode == "off" or prompt is None:
                return await fn(*args, **kwargs)
            plan = await core.aplan(prompt)
            args, kwargs = prepare(args, kwargs, plan)
            return _attach(await fn(*args, **kwargs), plan)

        return cast(F, async_wrapper)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        prompt = prompt_in(args, kwargs)
        if core.mode == "off" or prompt is None:
            return fn(*args, **kwargs)
        plan = core.plan(prompt)
        args, kwargs = prepare(args, kwargs, plan)
        out = fn(*args, **kwargs)
        if inspect.isawaitable(out):  # an async function behind a plain decorator
            return _attach_later(out, plan)
        return _attach(out, plan)

    return cast(F, wrapper)


def _is_async(fn: Callable[..., Any]) -> bool:
    # SDKs decorate async methods with plain wrappers (openai's AsyncImages.generate).
    try:
        inner = inspect.unwrap(fn)
    except ValueError:
        inner = fn
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(inner)


async def _attach_later(awaitable: Any, plan: Plan) -> Any:
    return _attach(await awaitable, plan)


def intercept(
    fn: F | None = None,
    *,
    prompt_arg: str = "prompt",
    planner: PlannerKind | Planner = "auto",
    mode: WrapMode = "rewrite",
    only_at_risk: bool = True,
    dialect: RewriteDialect = "natural",
) -> Any:
    """Decorate any function that takes a prompt so it receives the plan's rewrite.

    >>> @lcfix.intercept(prompt_arg="text")
    ... def draw(text: str, steps: int = 30) -> bytes: ...

    ``dialect="a1111"`` with ``mode="stage"`` sends ``[from:to:when]`` prompt editing, for
    functions that call an A1111/Forge server (which then stages natively). Works on sync and
    async functions; the return value is untouched (see ``plan_of``).
    """
    core = _Planning(planner, mode, only_at_risk)

    def decorate(f: F) -> F:
        return _intercepted(f, core, prompt_arg, dialect)

    return decorate(fn) if fn is not None else decorate


class _Proxy:
    """Forwards attribute reads and writes to the wrapped object."""

    __slots__ = ("_lcfix_core", "_lcfix_target")

    def __init__(self, target: Any, core: _Planning) -> None:
        object.__setattr__(self, "_lcfix_target", target)
        object.__setattr__(self, "_lcfix_core", core)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_lcfix_target"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._lcfix_target, name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._lcfix_target)))

    def __repr__(self) -> str:
        return f"lcfix.wrap({self._lcfix_target!r}, mode={self._lcfix_core.mode!r})"

    @property
    def wrapped(self) -> Any:
        """The object this wrapper delegates to."""
        return self._lcfix_target


class _ImagesProxy(_Proxy):
    __slots__ = ()

    @property
    def generate(self) -> Any:
        return _intercepted(self._lcfix_target.generate, self._lcfix_core, "prompt", "natural")


class WrappedClient(_Proxy):
    """An OpenAI-style client whose ``images.generate`` plans first; all else passes through."""

    __slots__ = ()

    @property
    def images(self) -> Any:
        return _ImagesProxy(self._lcfix_target.images, self._lcfix_core)

    def with_options(self, *args: Any, **kwargs: Any) -> WrappedClient:
        return WrappedClient(self._lcfix_target.with_options(*args, **kwargs), self._lcfix_core)

    def __enter__(self) -> WrappedClient:
        self._lcfix_target.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._lcfix_target.__exit__(*exc)

    async def __aenter__(self) -> WrappedClient:
        await self._lcfix_target.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._lcfix_target.__aexit__(*exc)


def _litellm_dialect(kwargs: dict[str, Any]) -> RewriteDialect:
    from lcfix.adapters.litellm_images import dialect_for

    model = kwargs.get("model")
    return dialect_for(model) if isinstance(model, str) else "natural"


class WrappedLiteLLM(_Proxy):
    """The ``litellm`` module with ``image_generation``/``aimage_generation`` planned."""

    __slots__ = ()

    @property
    def image_generation(self) -> Any:
        return _litellm_fn(self._lcfix_target.image_generation, self._lcfix_core)

    @property
    def aimage_generation(self) -> Any:
        return _litellm_fn(self._lcfix_target.aimage_generation, self._lcfix_core)


def _litellm_fn(fn: F, core: _Planning) -> F:
    return _intercepted(fn, core, "prompt", _litellm_dialect)


class WrappedPipeline(_Proxy):
    """A diffusers pipeline whose ``__call__`` stages the plan inside sampling."""

    __slots__ = ()

    def to(self, *args: Any, **kwargs: Any) -> Any:
        out = self._lcfix_target.to(*args, **kwargs)
        return self if out is self._lcfix_target else out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        pipe, core = self._lcfix_target, self._lcfix_core
        if args:  # diffusers pipelines take the prompt first
            kwargs = {"prompt": args[0], **kwargs}
            args = args[1:]
        prompt = kwargs.get("prompt")
        if core.mode == "off" or not isinstance(prompt, str) or not prompt.strip():
            if isinstance(prompt, list) and core.mode != "off":
                warnings.warn(
                    "lcfix.wrap stages one prompt per call; this batch of prompts ran unplanned",
                    stacklevel=2,
                )
            return pipe(*args, **kwargs)
        plan = core.plan(prompt)
        if not core.changes(plan):
            return _attach(pipe(*args, **kwargs), plan)
        if core.mode == "rewrite" or len(plan.stages) == 1:
            return _attach(pipe(*args, **{**kwargs, "prompt": plan.rewrites.natural}), plan)
        blocked = [
            k for k in ("prompt_2", "prompt_3", "prompt_embeds") if kwargs.get(k) is not None
        ]
        if blocked:
            warnings.warn(
                f"lcfix.wrap cannot stage a call that passes {', '.join(blocked)}; "
                "the rewrite was sent instead",
                stacklevel=2,
            )
            return _attach(pipe(*args, **{**kwargs, "prompt": plan.rewrites.natural}), plan)
        return _attach(pipe(*args, **_staged_kwargs(pipe, plan, kwargs)), plan)


def _staged_kwargs(pipe: Any, plan: Plan, kwargs: dict[str, Any]) -> dict[str, Any]:
    from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

    from lcfix.adapters.staging import StagingCallback

    kwargs = dict(kwargs)
    kwargs.pop("prompt")
    num = kwargs.pop("num_images_per_prompt", None) or 1
    cb = StagingCallback.from_plan(pipe, plan)
    user_cb = kwargs.pop("callback_on_step_end", None)
    user_inputs = kwargs.pop("callback_on_step_end_tensor_inputs", None)
    callback: Any = cb
    if isinstance(user_cb, MultiPipelineCallbacks):
        callback = MultiPipelineCallbacks([cb, *user_cb.callbacks])
    elif isinstance(user_cb, PipelineCallback):
        callback = MultiPipelineCallbacks([cb, user_cb])
    elif user_cb is not None:
        names = list(dict.fromkeys([*cb.tensor_inputs, *(user_inputs or ["latents"])]))

        def both(p: Any, i: int, t: Any, kw: dict[str, Any]) -> dict[str, Any]:
            return cast(dict[str, Any], user_cb(p, i, t, cb(p, i, t, kw)))

        kwargs["callback_on_step_end_tensor_inputs"] = names
        callback = both
    return {**cb.pipeline_inputs(num), **kwargs, "callback_on_step_end": callback}


def _is_pipeline(obj: Any) -> bool:
    names = {c.__name__ for c in type(obj).__mro__}
    return "DiffusionPipeline" in names or (
        callable(obj)
        and hasattr(obj, "scheduler")
        and (hasattr(obj, "unet") or hasattr(obj, "transformer"))
    )


def wrap(
    obj: Any,
    planner: PlannerKind | Planner = "auto",
    mode: WrapMode = "stage",
    only_at_risk: bool = True,
) -> Any:
    """Return an object with ``obj``'s interface that plans prompts before delegating.

    See the module documentation for the supported objects. ``obj`` is never modified;
    results are the types ``obj`` returns, with ``lcfix.plan_of(result)`` giving the plan.
    """
    core = _Planning(planner, mode, only_at_risk)
    if isinstance(obj, ModuleType) and obj.__name__ == "litellm":
        return WrappedLiteLLM(obj, core)
    images = getattr(obj, "images", None)
    if images is not None and callable(getattr(images, "generate", None)):
        return WrappedClient(obj, core)
    if _is_pipeline(obj):
        return WrappedPipeline(obj, core)
    if callable(obj):
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("litellm") and getattr(obj, "__name__", "") in (
            "image_generation",
            "aimage_generation",
        ):
            return _litellm_fn(obj, core)
        return _intercepted(obj, core, "prompt", "natural")
    raise UnsupportedError(
        f"lcfix.wrap cannot wrap {type(obj).__name__}: pass an OpenAI-style client, a diffusers "
        "pipeline, litellm.image_generation, or decorate a function with lcfix.intercept"
    )
