"""``dima`` subcommands, one module each (see dima_core/cli.py)."""
