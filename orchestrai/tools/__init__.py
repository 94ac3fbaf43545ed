"""Tools a model may call: Python functions, MCP servers (the engine runs them; see engine/agent.py)."""
