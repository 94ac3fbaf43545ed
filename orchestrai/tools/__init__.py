"""Where a run's tools come from (plugin side: written against orchestrai.api, like providers/)."""
