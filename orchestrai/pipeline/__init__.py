"""Pipeline files: schema, loading with line numbers, and the dependency graph."""
