"""A strict stand-in for PyCOMPSs, for compss-infer's tests only (never installed).

The real ``pycompss`` package needs the COMPSs runtime, which cannot be installed on the build
machines.  This package provides the ``pycompss.api`` modules compss-infer uses, with the rules
of /work/shared/pycompss-notes.md enforced (see ``_standin_runtime``), and ``../runcompss`` runs an
application in master mode with it.  Passing tests against it is not the same as running on COMPSs.
"""
STANDIN = True
