"""Modules: what a step runs. Chameleon prompts, built-ins, plugins and a project's own."""
