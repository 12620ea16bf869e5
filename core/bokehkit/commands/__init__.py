"""The `bokehkit` command line: one module per command."""
