"""One module per CLI command, each with ``add_arguments(parser)`` and ``execute(args) -> int``."""
