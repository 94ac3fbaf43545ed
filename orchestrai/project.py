"""A project: its config plus the module registry built from the config's folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Config, load_config
from .errors import Problem
from .modules.base import ModuleRegistry
from .pipeline.graph import PipelineGraph
from .pipeline.loader import check_pipeline, load_pipeline


@dataclass
class Project:
    config: Config
    registry: ModuleRegistry

    @classmethod
    def open(cls, config_path: str | Path | None = None) -> Project:
        """Load the config (--config, ./config.yml, user config dir) and find the project's modules."""
        config = load_config(config_path)
        return cls(config, ModuleRegistry(project_dirs(config)))

    def check(self, pipeline_path: str | Path) -> tuple[PipelineGraph | None, list[Problem]]:
        return check_pipeline(pipeline_path, self.config, self.registry)

    def load(self, pipeline_path: str | Path | None) -> PipelineGraph:
        """The pipeline's graph (default: config's `pipeline:`), or ValidationFailed with every problem."""
        return load_pipeline(pipeline_path, self.config, self.registry)


def project_dirs(config: Config) -> list[Path]:
    """Where a project's system_prompts/ and modules/ live: beside the config file, then the current directory."""
    return [config.path.parent, Path.cwd()] if config.path else [Path.cwd()]
