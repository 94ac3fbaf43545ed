"""Provider types by name, from the `orchestrai.providers` entry points.

The built-ins (openai, anthropic, echo, local) register there exactly as a third-party package does
(see pyproject.toml), so a config's `type:` always resolves the same way. A third-party entry point
with a built-in's name is ignored: `type: openai` always means orchestrai's own.
"""

from __future__ import annotations

from functools import lru_cache

from ..api import PROVIDER_ENTRY_POINT_GROUP, ProviderType
from ..errors import ConfigError
from ..plugins import Plugin, entry_points

OWN_DISTRIBUTION = "orchestrai"


@lru_cache(maxsize=1)
def registered() -> dict[str, Plugin]:
    """Every provider type name, without importing any of them."""
    found: dict[str, Plugin] = {}
    for plugin in entry_points(PROVIDER_ENTRY_POINT_GROUP):
        current = found.get(plugin.name)
        if current is None or (plugin.distribution == OWN_DISTRIBUTION != current.distribution):
            found[plugin.name] = plugin
    return found


_LOADED: dict[str, ProviderType] = {}


def provider_type(name: str) -> ProviderType:
    """The ProviderType registered as `name`, imported on first use."""
    if name not in _LOADED:
        plugin = registered().get(name)
        if plugin is None:
            raise ConfigError(f"no provider type {name!r} is installed",
                              hint=f"installed: {', '.join(sorted(registered())) or 'none'}; "
                                   f"a plugin registers one under the {PROVIDER_ENTRY_POINT_GROUP!r} entry points")
        try:
            loaded = plugin.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is the user's to fix, not a crash
            raise ConfigError(f"provider type {name!r} ({plugin.value}, from {plugin.distribution}) failed to "
                              f"load: {type(exc).__name__}: {exc}", hint="reinstall or fix that package") from None
        if not isinstance(loaded, ProviderType):
            raise ConfigError(f"provider type {name!r} ({plugin.value}, from {plugin.distribution}) is not an "
                              "orchestrai.api.ProviderType", hint="its entry point must name a ProviderType object")
        _LOADED[name] = loaded
    return _LOADED[name]
