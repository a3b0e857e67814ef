"""Runtime configuration: tunables changed without a restart, presets, versions in SQLite, rollback, previews."""
