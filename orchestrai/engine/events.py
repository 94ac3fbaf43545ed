"""The event bus: delivers the run's events (orchestrai.api.events) to the hooks that want them."""

from __future__ import annotations

import logging

from ..api import EVENT_TYPES, Event, Hook, SelectiveHook

log = logging.getLogger("orchestrai")


class EventBus:
    """Delivers each event to the hooks that want it; a broken hook is reported once and never stops the run."""

    def __init__(self, hooks: list[Hook] | None = None) -> None:
        self.hooks: list[Hook] = list(hooks or [])
        self.failures: dict[int, str] = {}
        self._by_type: dict[type, list[Hook]] = {
            kind: [hook for hook in self.hooks if kind in _wanted(hook)] for kind in EVENT_TYPES}

    def wants(self, kind: type) -> bool:
        """Whether any hook receives events of this type (so the caller can skip building one)."""
        return bool(self._by_type[kind])

    def emit(self, event: Event) -> None:
        for hook in self._by_type[type(event)]:
            try:
                hook.on_event(event)
            except Exception as exc:  # noqa: BLE001 - one subscriber must not take the run down
                if id(hook) not in self.failures:
                    self.failures[id(hook)] = f"{type(hook).__name__}: {exc}"
                    log.warning("event subscriber %s failed: %s", type(hook).__name__, exc)


def _wanted(hook: Hook) -> tuple[type, ...]:
    return tuple(hook.events) if isinstance(hook, SelectiveHook) else EVENT_TYPES
