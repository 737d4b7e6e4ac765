"""The lcfix error tree.

Every error lcfix raises on purpose is an ``LcfixError``; its ``str()`` is written for the
user. Lower-level errors (httpx, litellm, torch, pydantic) are translated once, at the
boundary that called them, and kept as ``__cause__``.

    LcfixError
    ├── ConfigError                 a missing key or a bad setting; says how to fix it
    │   └── ExtraNotInstalledError  an optional extra is missing; names the install command
    ├── InputError                  a bad prompt file; .path, .line, .field
    ├── PlanValidationError         a plan breaks the plan contract; .problems
    ├── PlannerError
    │   ├── PlannerBackendError     the LLM call failed (after transport retries)
    │   │   ├── PlannerAuthError    the LLM rejected the credentials; names the variable
    │   │   ├── PlannerTransientError  429, 5xx, timeout or lost connection; retried;
    │   │   │   │                      .status_code, .retry_after, .attempts
    │   │   │   ├── PlannerRateLimitError  429; .retry_after
    │   │   │   └── PlannerTimeoutError    the request ran out of time
    │   │   └── PlannerCircuitOpenError    recent calls kept failing; not tried now
    │   └── PlannerOutputError      the LLM's plans stayed invalid after re-asks; .attempts
    ├── AdapterError                .adapter
    │   ├── AdapterNotFoundError    unknown backend name, or its plugin failed to import
    │   ├── UnsupportedError        a model, pipeline or option the backend cannot run
    │   ├── BackendError            an HTTP or provider failure; .status_code, .request_id, .body
    │   │   ├── AuthenticationError 401/403
    │   │   ├── RateLimitError      429; .retry_after
    │   │   ├── ContentPolicyError  the provider refused the prompt or filtered the image
    │   │   ├── BadRequestError     other 4xx
    │   │   ├── BackendServerError  5xx
    │   │   └── BackendConnectionError  the provider could not be reached (DNS, refused, reset)
    │   ├── BackendTimeoutError     a request or a job poll ran out of time
    │   └── JobFailedError          a job API reported failure; .job_id, .state
    └── CacheError                  the plan or ratio cache could not be read or written
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class LcfixError(Exception):
    """Base of every error lcfix raises on purpose."""


class ConfigError(LcfixError):
    """A setting is missing or wrong; the message says how to fix it."""


class ExtraNotInstalledError(ConfigError):
    """A feature needs an optional extra that is not installed."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        self.feature = feature
        self.extra = extra
        self.missing = missing
        super().__init__(
            f"{feature} needs the optional dependency {missing!r}, which is not installed. "
            f"Install it with: pip install 'lcfix[{extra}]'"
        )


class InputError(LcfixError):
    """A prompt file or argument is malformed. Names the file, the line and the field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            where += f"field {field!r}: "
        super().__init__(where + message)


class PlanValidationError(LcfixError):
    """A plan breaks the plan contract (stage order, kept concepts, concepts from the prompt)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid plan: " + "; ".join(self.problems))


class PlannerError(LcfixError):
    """Planning failed."""


class PlannerBackendError(PlannerError):
    """The LLM call failed after transport retries."""


class PlannerAuthError(PlannerBackendError):
    """The LLM provider rejected the credentials."""


class PlannerTransientError(PlannerBackendError):
    """A failure worth retrying: 429, 5xx, a timeout or a lost connection.

    ``attempts`` is how many HTTP attempts were made before giving up.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        self.status_code = status_code
        self.retry_after = retry_after
        self.attempts = attempts
        super().__init__(message)


class PlannerRateLimitError(PlannerTransientError):
    """429: the LLM provider asked us to slow down. ``retry_after`` is in seconds when it said."""


class PlannerTimeoutError(PlannerTransientError):
    """The LLM request ran out of time."""


class PlannerCircuitOpenError(PlannerBackendError):
    """Recent LLM calls kept failing, so this one was not attempted (the circuit is open)."""


class PlannerOutputError(PlannerError):
    """The LLM kept returning invalid plans after every re-ask."""

    def __init__(self, message: str, *, attempts: int, last_output: str | None = None) -> None:
        self.attempts = attempts
        self.last_output = last_output
        super().__init__(message)


class AdapterError(LcfixError):
    """A backend failed. ``adapter`` names it."""

    def __init__(self, message: str, *, adapter: str | None = None) -> None:
        self.adapter = adapter
        super().__init__(f"[{adapter}] {message}" if adapter else message)


class AdapterNotFoundError(AdapterError):
    """No adapter is registered under the name, or its plugin failed to import."""


class UnsupportedError(AdapterError):
    """The backend cannot run this model, pipeline or option."""


class BackendError(AdapterError):
    """The provider answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        adapter: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        body: object = None,
    ) -> None:
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        super().__init__(message, adapter=adapter)


class AuthenticationError(BackendError):
    """401/403: the key is missing, wrong or lacks access."""


class RateLimitError(BackendError):
    """429: too many requests. ``retry_after`` is in seconds when the provider said."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        adapter: str | None = None,
        status_code: int | None = 429,
        request_id: str | None = None,
        body: object = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            message, adapter=adapter, status_code=status_code, request_id=request_id, body=body
        )


class ContentPolicyError(BackendError):
    """The provider refused the prompt or filtered the result."""


class BadRequestError(BackendError):
    """Another 4xx: the request itself is wrong."""


class BackendServerError(BackendError):
    """5xx: the provider failed."""


class BackendConnectionError(BackendError):
    """The provider could not be reached: DNS failure, connection refused or reset."""


class BackendTimeoutError(AdapterError):
    """A request, or the polling of a job, ran out of time."""


class JobFailedError(AdapterError):
    """A job API reported that the job failed."""

    def __init__(
        self,
        message: str,
        *,
        adapter: str | None = None,
        job_id: str | None = None,
        state: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.state = state
        super().__init__(message, adapter=adapter)


class CacheError(LcfixError):
    """The cache could not be read or written."""
