"""Shared pieces of the fuzz tier: how many requests were fuzzed, and what the database holds.

The tier is bounded (FUZZ_EXAMPLES per property, override with EXPERIMENTS_FUZZ_EXAMPLES) and
derandomized, so `make test` runs the same requests every time in about a minute. The counts are
printed at the end of the run ("fuzzed requests", tests/fuzz/tally.py) for the closing note.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from server.adapters.database import make_engine
from server.adapters.orm import ExperimentGroupRecord, ExperimentRecord
from tests.fuzz.tally import FUZZED_PROPERTY, Tally
from tests.integration.databases import backend_params, temporary_database

FUZZ_EXAMPLES = int(os.environ.get("EXPERIMENTS_FUZZ_EXAMPLES", "400"))

# Derandomized: the same examples on every run (CI reproduces a failure as is); no example
# database, so nothing is written into the checkout.
FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    counts = Tally()
    yield counts
    # Plain lists of strings and numbers: what a worker can send to the pytest-xdist controller.
    request.node.user_properties.append(
        (
            FUZZED_PROPERTY,
            {
                "fuzzed": [[*key, n] for key, n in counts.fuzzed.items()],
                "failed": [[*key, n] for key, n in counts.failed.items()],
                "answers": [[*key, n] for key, n in counts.answers.items()],
            },
        )
    )


@pytest.fixture(params=backend_params())
def fuzz_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(backend name, URL) of an empty database, without tables, of each backend in turn."""
    with temporary_database(request.param, tmp_path) as url:
        yield request.param, url


def snapshot(engine: Engine) -> tuple[int, int, object]:
    """What a refused request must leave unchanged: row counts and the latest update."""
    with engine.connect() as connection:
        experiments = connection.execute(
            select(func.count(), func.max(ExperimentRecord.updated_at))
        ).one()
        groups = connection.execute(select(func.count()).select_from(ExperimentGroupRecord))
        return experiments[0], groups.scalar_one(), experiments[1]


def engine_for(url: str) -> Engine:
    return make_engine(url, pool_size=1)
