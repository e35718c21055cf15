"""The master's data registry: every file the binding names (object files, futures, FILE_* paths).

Each path the binding passes is one datum with numbered versions.  Reading it uses its last
version; a task's OUT parameter (a return) makes a new one, and whoever reads that version depends
on the task (a RAW dependency, which is how futures passed to other tasks work).  Each version has a
renamed name ``d<data id>v<version>_<millis>.IT`` (the form the binding's own clean-up expects:
``runtime/binding.py`` ``_clean_temps``) and lives at the master's path and/or as a copy in the
worker's working directory.

Inferred, not read (DataInfo/DataVersion are not in java-reference): a version's files are removed
when the datum was deleted (``delete_file``, which ``compss_wait_on`` calls after each sync and the
object tracker calls for every object at stop) or superseded, once no pending or running task reads it.
"""
from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Version:
    datum: "Datum"
    number: int
    renamed: str
    producer: Any = None  # the Task writing this version (None: it existed before the run)
    state: str = "available"  # pending (its producer has not finished) | available | null (failed/cancelled)
    master_path: str | None = None  # where the master holds it
    worker_path: str | None = None  # its copy in the worker's working directory
    readers: int = 0  # tasks not yet finished that read it
    extra_paths: list[str] = field(default_factory=list)  # copies made for open_file


@dataclass(eq=False)
class Datum:
    id: int
    key: str
    versions: list[Version] = field(default_factory=list)
    deleted: bool = False

    @property
    def last(self) -> Version:
        return self.versions[-1]


class DataRegistry:
    """All data of the run; the caller holds the runtime's lock."""

    def __init__(self, master_dir: str, worker_dir: str):
        self.master_dir = master_dir
        self.worker_dir = worker_dir
        self._data: dict[str, Datum] = {}
        self._ids = itertools.count(1)

    def _renamed(self, datum: Datum, number: int) -> str:
        return f"d{datum.id}v{number}_{int(time.time() * 1000)}.IT"

    def get(self, key: str) -> Datum | None:
        datum = self._data.get(key)
        return None if datum is None or datum.deleted else datum

    def _datum(self, key: str) -> Datum:
        datum = self.get(key)
        if datum is None:
            datum = Datum(next(self._ids), key)
            self._data[key] = datum
        return datum

    def read(self, key: str) -> Version:
        """The version a new reader of ``key`` gets (the file at ``key`` is version 1 when it is new)."""
        datum = self._datum(key)
        if not datum.versions:
            datum.versions.append(Version(datum, 1, self._renamed(datum, 1), master_path=key))
        version = datum.last
        version.readers += 1
        return version

    def write(self, key: str, producer: Any) -> Version:
        """A new version of ``key`` that ``producer`` will write on the worker."""
        datum = self._datum(key)
        number = len(datum.versions) + 1
        version = Version(datum, number, self._renamed(datum, number), producer=producer, state="pending")
        version.worker_path = os.path.join(self.worker_dir, version.renamed)
        datum.versions.append(version)
        for old in datum.versions[:-1]:
            self.collect(old)
        return version

    def stage_to_worker(self, version: Version) -> str:
        """The version's copy in the worker's working directory (copied from the master once)."""
        if version.worker_path is None or not os.path.exists(version.worker_path):
            target = os.path.join(self.worker_dir, version.renamed)
            if version.master_path is None:
                raise FileNotFoundError(f"data {version.datum.key} v{version.number} exists nowhere")
            shutil.copyfile(version.master_path, target)
            version.worker_path = target
        return version.worker_path

    def fetch_to_master(self, version: Version) -> str:
        """The version at the master: for one written on the worker, a copy in the master's working dir."""
        if version.master_path is not None and os.path.exists(version.master_path):
            return version.master_path
        target = os.path.join(self.master_dir, version.renamed)
        shutil.copyfile(version.worker_path, target)
        version.master_path = target
        version.extra_paths.append(target)
        return target

    def release(self, version: Version) -> None:
        """A reader finished (or was cancelled)."""
        version.readers -= 1
        self.collect(version)

    def delete(self, key: str) -> bool:
        datum = self.get(key)
        if datum is None:
            return False
        datum.deleted = True
        for version in datum.versions:
            self.collect(version)
        return True

    def collect(self, version: Version) -> None:
        """Remove the runtime's copies of a version nobody can read any more (never the user's file)."""
        datum = version.datum
        if version.readers > 0 or version.state == "pending" or not (datum.deleted or version is not datum.last):
            return
        removed = [p for p in (version.worker_path, *version.extra_paths) if p]
        for path in removed:
            try:
                os.unlink(path)
            except OSError:
                pass
        if version.master_path in removed:
            version.master_path = None
        version.worker_path = None
        version.extra_paths.clear()
