"""The engine: schedules steps over the graph and reports everything as events."""
