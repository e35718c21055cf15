"""One module per subcommand; each has ``register(subparsers)``: the only code that knows argv and exit codes.

May import: every floor below (``run``, ``engines``, ``worker``, ``model``, ``images``, ``core``) and ``cli``.
"""
