"""Tasks, suites and success checks, plus the bundled apps of the virtual phone."""
