"""The names a pipeline gives its steps, outputs and modules, and what each may contain.

A module name becomes part of a file path (`system_prompts/<name>.md`, `modules/<name>.py`), so it
may never hold a path separator, start with a dot or contain `..`.
"""

from __future__ import annotations

import re

# Step ids and output names (pydantic `pattern=` uses them; Rust's regex engine, so no look-arounds).
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
# Dot-separated parts of letters, digits, '_' and '-': no leading or trailing dot, no '..', no '/'.
MODULE_NAME_PATTERN = r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$"
# An MCP server's name (mcp_servers: in config): a NAME without dots, as it prefixes its tools' names
# (`weather.forecast`: the first dot ends the server's name).
SERVER_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"

NAME_RULE = "a name may contain letters, digits, '_', '-' and '.', and starts with a letter or '_'"
MODULE_NAME_RULE = ("a module name may contain only letters, digits, '_', '-' and '.' "
                    "(no '/', no leading dot, no '..')")
SERVER_NAME_RULE = ("a server name may contain letters, digits, '_' and '-' (no '.': it prefixes its tools' "
                    "names, as in weather.forecast), and starts with a letter or '_'")

MODULE_NAME_HINT = "use a name `orchestrai modules` lists, or a prompt file's name in system_prompts/ without .md"

# What a `string_pattern_mismatch` means, by pattern, for messages a person can act on: (rule, hint).
PATTERN_RULES: dict[str, tuple[str, str]] = {
    NAME_PATTERN: (NAME_RULE, "rename it (and every reference to it)"),
    MODULE_NAME_PATTERN: (MODULE_NAME_RULE, MODULE_NAME_HINT),
}

_MODULE_NAME = re.compile(MODULE_NAME_PATTERN[1:-1])
_SERVER_NAME = re.compile(SERVER_NAME_PATTERN[1:-1])


def is_module_name(name: object) -> bool:
    """Whether `name` is safe to look up as a module (and so as a file name)."""
    return isinstance(name, str) and _MODULE_NAME.fullmatch(name) is not None


# A run id names the log file and the engineering workspace: the same rule keeps it inside its folder.
is_safe_file_name = is_module_name


def is_server_name(name: object) -> bool:
    """Whether `name` may name an MCP server (and so prefix tool names)."""
    return isinstance(name, str) and _SERVER_NAME.fullmatch(name) is not None
