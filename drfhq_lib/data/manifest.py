"""Bookkeeping of batch jobs (align, download, pack, enhance, inversion): the manifest CSV each
job keeps current row by row, the report a job returns, its inputs and its output names.

Nothing here knows about faces or networks, so every job module may import it and it imports
none of them back.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from drfhq_lib.data.images import list_images
from drfhq_lib.errors import DrfhqError
from drfhq_lib.files import write_text_atomic

#: Suffix of the record written beside each aligned image (``x.png`` -> ``x.align.json``).
SIDECAR_SUFFIX = ".align.json"
#: Row statuses that count as done (the rest are items that failed).
DONE_STATUSES = frozenset({"ok", "exists"})


class Manifest:
    """A CSV with one row per item (``key`` column), kept current while a job runs.

    Rows are appended (and flushed) as items finish, so an interrupted job keeps every finished
    row; when the job ends the file is rewritten atomically with one row per key (the last
    one), sorted. Rows of earlier runs for items this run does not touch are kept.
    Thread-safe: download workers add rows concurrently.
    """

    def __init__(self, path: str | os.PathLike, fields: Sequence[str], key: str):
        self.path = Path(path)
        self.fields = list(fields)
        self.key = key
        self.rows: dict[str, dict] = read_manifest(self.path, key) if self.path.exists() else {}
        self._lock = threading.Lock()
        self._file = None

    def __enter__(self) -> "Manifest":
        # Start from a consolidated file whose header is this job's (an older run may have
        # left a partial last line or other columns).
        self._write_consolidated()
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._file, fieldnames=self.fields, lineterminator="\n",
                                      extrasaction="ignore")
        return self

    def get(self, key: str) -> dict | None:
        return self.rows.get(key)

    def add(self, row: dict) -> None:
        with self._lock:
            self.rows[str(row[self.key])] = row
            if self._file is not None:
                self._writer.writerow({f: row.get(f, "") for f in self.fields})
                self._file.flush()

    def _write_consolidated(self) -> None:
        write_manifest(self.path, self.rows, self.fields)

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._write_consolidated()


def write_manifest(path: str | os.PathLike, rows: dict[str, dict], fields: Sequence[str]
                   ) -> Path:
    """Rows by key -> a consolidated manifest CSV (one row per key, sorted), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows({f: r.get(f, "") for f in fields} for _, r in sorted(rows.items()))
    return write_text_atomic(path, buffer.getvalue())


# ----------------------------------------------------------------------------- parts
# A job shared over several processes (torchrun ranks) keeps one part per process beside the
# manifest, ``manifest.part-00001.csv`` for rank 1, and merges them into the manifest at the
# end; a rerun first merges what an interrupted run left.

def part_path(path: str | os.PathLike, rank: int) -> Path:
    """The manifest part process ``rank`` of a shared job writes (``manifest.part-00001.csv``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.part-{rank:05d}{path.suffix}")


def part_paths(path: str | os.PathLike) -> list[Path]:
    """The parts of ``path`` that exist, by rank."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.stem}.part-[0-9][0-9][0-9][0-9][0-9]{path.suffix}"))


def merge_parts(path: str | os.PathLike, fields: Sequence[str], key: str) -> dict[str, dict]:
    """Fold the parts of a shared job into the manifest and remove them; returns its rows.

    A part's row replaces the manifest's row of the same key (parts are newer: every merge
    removes them). The processes of one job own disjoint items, so parts never disagree. The
    manifest is rewritten atomically before any part is removed, so a merge cut short is
    simply done again. With no parts and no manifest nothing is written.
    """
    path = Path(path)
    parts = part_paths(path)
    rows = read_manifest(path, key) if path.exists() else {}
    if not parts:
        return rows
    for part in parts:
        rows.update(read_manifest(part, key))
    write_manifest(path, rows, fields)
    for part in parts:
        part.unlink(missing_ok=True)
    return rows


def read_manifest(path: str | os.PathLike, key: str = "file") -> dict[str, dict]:
    """Rows of a manifest CSV by ``key`` (the last row of a key wins; torn lines are skipped)."""
    rows: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames and key not in reader.fieldnames:
            raise DrfhqError(f"{path}: not a manifest of this kind (no {key!r} column); "
                             "choose another manifest file")
        for row in reader:
            if row.get(key) and None not in row.values() and None not in row:
                rows[row[key]] = row
    return rows


@dataclass
class BatchReport:
    """Rows of a batch job (one per input) and the manifest they were written to."""

    rows: list[dict]
    manifest: Path | None = None

    @property
    def counts(self) -> Counter:
        return Counter(r["status"] for r in self.rows)

    @property
    def failed(self) -> int:
        """Rows whose status is not ok or exists."""
        return sum(n for status, n in self.counts.items() if status not in DONE_STATUSES)

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return f"{len(self.rows)} files: {counts or 'nothing to do'}" + (
            f" (manifest {self.manifest})" if self.manifest else "")


def expand_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Files and folders -> image files (folders: their images by suffix; files: as given),
    each once, in the order given."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[Path] = []
    for item in map(Path, inputs):
        files.extend(list_images(item) if item.is_dir() else [item])
    return list(dict.fromkeys(files))


def unique_stems(files: Sequence[str | os.PathLike]) -> dict[Path, str]:
    """An output stem per input file, never the same for two inputs (compared case-blind, as
    on macOS and Windows file systems), chosen deterministically from the paths and order:

    1. the file's stem (``x``) when no other input has it;
    2. else stem and suffix (``x.png`` -> ``x_png``, ``x.jpg`` -> ``x_jpg``);
    3. else parent folder, stem and suffix (``a/x.png`` -> ``a_x_png``);
    4. else the first keeps its name and the next get ``-2``, ``-3``... in input order.
    """
    files = list(dict.fromkeys(map(Path, files)))
    names = {f: f.stem for f in files}
    renames = (lambda f: f"{f.stem}_{f.suffix.lstrip('.').lower()}",
               lambda f: f"{f.parent.name}_{f.stem}_{f.suffix.lstrip('.').lower()}")
    for rename in renames:
        counts = Counter(n.casefold() for n in names.values())
        for f in files:
            if counts[names[f].casefold()] > 1:
                names[f] = rename(f)
    taken: set[str] = set()
    for f in files:
        name, k = names[f], 2
        while name.casefold() in taken:
            name, k = f"{names[f]}-{k}", k + 1
        taken.add(name.casefold())
        names[f] = name
    return names
