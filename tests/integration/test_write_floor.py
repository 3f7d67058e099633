"""The bench's write floor (bench/write_floor.py) times the service's own creates and updates:
every timed call is a real write of the phase's request, stored as the service stores it."""

from __future__ import annotations

from sqlalchemy import func, select

from bench import seed, write_floor
from server.adapters.database import make_engine
from server.adapters.repositories import tables


def test_the_floor_times_real_creates_and_updates(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        world = seed.seed(engine, 10)
        floors = write_floor.measure(migrated_url, world, calls=5)
        with engine.connect() as connection:
            created = connection.execute(
                select(func.count())
                .select_from(tables.experiments)
                .where(tables.experiments.c.name == "Benchmark create")
            ).scalar_one()
            updated = connection.execute(
                select(tables.experiments.c.name).where(
                    tables.experiments.c.id == world.update_experiment_id
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert [floor.key for floor in floors] == ["grpc-create", "grpc-update"]
    assert created == write_floor.WARMUP_CALLS + 5
    assert updated == "Benchmark update"
    for floor in floors:
        assert floor.calls == 5
        assert floor.cpu_seconds > 0
        assert floor.most_rps(2) == 2 * 5 / floor.cpu_seconds
