"""Tools a model may call: Python functions and MCP servers (plugin side: written against orchestrai.api,
like providers/; the engine runs them, see engine/agent.py)."""
