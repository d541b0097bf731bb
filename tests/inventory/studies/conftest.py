"""Orthanc archives for the study tests: one filled read-only archive per run, fresh ones per test."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tests.inventory.studies.archive_support import OrthancServer, StudySpec, da

# The day the read-only archive's studies are judged on ("in the future" means after it).
TODAY = date(2026, 6, 1)


@dataclass(frozen=True)
class FilledArchive:
    """The read-only archive and what was stored in it."""

    server: OrthancServer
    dated: dict[str, StudySpec]  # studies with a real date in the walked range
    malformed: dict[str, StudySpec]  # stored with a StudyDate that is not a usable date
    undated: StudySpec  # stored without any StudyDate
    busy_day: date  # eight studies on this day, more than the limit
    multi_series: StudySpec  # 2 series of 3 instances
    big_series: StudySpec  # one series of 6 instances, more than LimitFindInstances


def generated_studies(count: int, seed: int = 2026) -> list[StudySpec]:
    """``count`` studies on random days from 1995 to 2025, three per patient, assorted modalities."""
    rng = random.Random(seed)
    studies = []
    for n in range(count):
        day = date(1995, 1, 1) + timedelta(days=rng.randrange(11_000))
        studies.append(StudySpec(generate_uid(), da(day), f"PAT{n // 3:03d}",
                                 birth_date=da(day - timedelta(days=rng.randrange(365, 30_000))),
                                 modality=rng.choice(["CT", "MR", "MG", "US"]),
                                 study_time=f"{rng.randrange(24):02d}{rng.randrange(60):02d}00",
                                 accession=f"ACC{n:05d}"))
    return studies


@pytest.fixture(scope="session")
def filled_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilledArchive]:
    """Orthanc (LimitFindResults 5): 60 generated studies plus busy-day, malformed and multi-instance ones."""
    server = OrthancServer(tmp_path_factory.mktemp("filled-orthanc")).start()
    busy_day = date(2019, 6, 15)
    dated = generated_studies(60)
    dated += [StudySpec(generate_uid(), da(busy_day), f"BUSY{n}", study_time=f"{8 + n:02d}0000")
              for n in range(8)]
    dated.append(StudySpec(generate_uid(), "20200110", "FUTUREBIRTH", birth_date="20990101"))
    multi = StudySpec(generate_uid(), "20180301", "MULTI", series=2, instances=3)
    big = StudySpec(generate_uid(), "20180302", "BIG", instances=6)
    dated += [multi, big]
    malformed = [StudySpec(generate_uid(), value, f"BAD{n}") for n, value in
                 enumerate(["20250230", "19000000", "", "2025010", "20990101"])]
    malformed.append(StudySpec("1.2.3.abc", "20150505", "BADUID"))
    undated = StudySpec(generate_uid(), None, "NODATE")
    try:
        server.store(ds for spec in (*dated, *malformed, undated) for ds in spec.datasets())
        yield FilledArchive(server, {s.study_uid: s for s in dated}, {s.study_uid: s for s in malformed},
                            undated, busy_day, multi, big)
    finally:
        server.stop()


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Callable[..., OrthancServer]]:
    """Start fresh Orthancs for one test: ``server = orthanc(limit=5, lua=None)``."""
    servers: list[OrthancServer] = []

    def start(**options: object) -> OrthancServer:
        folder = tmp_path / f"orthanc-{len(servers)}"
        folder.mkdir()
        server = OrthancServer(folder, **options)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
