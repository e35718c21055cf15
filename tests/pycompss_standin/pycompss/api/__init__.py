"""The stand-in's ``pycompss.api``: task, constraint, on_failure, parameter, api."""
