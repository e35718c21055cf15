"""The ground floor: types and helpers any floor may use.

Lives here: the configuration's dataclasses (``specs``), what crosses process boundaries
(``contracts``), errors and their exit codes (``errors``), atomic file writes (``atomic``), bounded
reads of small files someone else named (``smallfile``) and the one YAML reader (``yamlfile``).
May import: nothing of compss_infer but itself (and ``_version``).
"""
