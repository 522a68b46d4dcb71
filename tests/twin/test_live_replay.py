"""``city.live``: readings in from DataFrames and recordings, out as time series."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

import twin
from twin.live.replay import ReplayError


@pytest.fixture
def city(live_db: str) -> twin.City:
    return twin.connect(live_db)


def _recording(path: Path, ds: int, name: str, start: datetime, n: int = 30) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "datastream": [str(ds) if k % 2 else name for k in range(n)],
            "phenomenonTime": [(start + timedelta(seconds=2 * k)).isoformat() for k in range(n)],
            "result": [float(k) for k in range(n)],
        }
    )
    frame.to_csv(path, index=False)
    return frame


def test_replay_stores_a_recording_in_time_order_at_n_times_real_time(
    city: twin.City, tmp_path: Path
) -> None:
    ds = city.live.register("rec/speed", thing="rec", observed_property="speed")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    frame = _recording(tmp_path / "rec.csv", ds, "rec/speed", start)
    shuffled = frame.sample(frac=1, random_state=1)
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)

    began = time.monotonic()
    report = city.live.replay(tmp_path / "shuffled.csv", speed=60.0)
    took = time.monotonic() - began
    assert (report.rows, report.stored, report.refused_count) == (30, 30, 0)
    # 58 s of readings at 60x real time take about a second, never less than their spacing
    assert took >= 58 / 60 * 0.9

    got = city.live.readings([ds], start=start, end=start + timedelta(minutes=5))
    assert list(got["result"]) == [float(k) for k in range(30)]
    assert list(got["time"]) == [pd.Timestamp(t) for t in frame["phenomenonTime"]]

    again = city.live.replay(tmp_path / "rec.csv", speed=None)
    assert (again.stored, again.duplicates) == (0, 30)


def test_rebase_stamps_the_last_reading_now_and_none_ahead_of_the_clock(
    city: twin.City, tmp_path: Path
) -> None:
    ds = city.live.register("old/level", thing="old", observed_property="level")
    week_ago = datetime.now(UTC) - timedelta(days=7)
    _recording(tmp_path / "old.csv", ds, "old/level", week_ago, n=10)
    before = datetime.now(UTC)
    report = city.live.replay(tmp_path / "old.csv", speed=None, rebase=True)
    after = datetime.now(UTC)
    assert report.stored == 10
    got = city.live.readings([ds], start=before - timedelta(minutes=1), end=after)
    assert len(got) == 10
    assert got["time"].max() <= pd.Timestamp(after)
    assert (got["time"].diff().dropna() == pd.Timedelta(seconds=2)).all()


def test_bad_rows_are_refused_with_their_row_numbers(city: twin.City, tmp_path: Path) -> None:
    ds = city.live.register("rows/speed", thing="rows", observed_property="speed")
    now = datetime.now(UTC) - timedelta(minutes=5)
    (tmp_path / "bad.csv").write_text(
        "datastream,phenomenonTime,result\n"
        f"{ds},{now.isoformat()},12.5\n"
        f"nobody,{now.isoformat()},3\n"
        f"{ds},not a time,3\n"
        f"{ds},{(now + timedelta(seconds=1)).isoformat()},fast\n"
        f"{ds},{(now + timedelta(seconds=2)).isoformat()},13\n"
    )
    report = city.live.replay(tmp_path / "bad.csv", speed=None)
    assert (report.rows, report.stored, report.refused_count) == (5, 2, 3)
    rows = dict(report.refused)
    assert set(rows) == {2, 3, 4}
    assert "nobody" in rows[2] and "not a time" in rows[3] and "takes a number" in rows[4]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("readings.txt", "a,b\n1,2\n", "not a .csv"),
        ("nocolumn.csv", "datastream,time\n1,2026-01-01T00:00:00Z\n", "no column result"),
        ("twice.csv", "datastream,result,result,time\n1,2,3,2026-01-01T00:00:00Z\n", "twice"),
        ("broken.parquet", "not parquet at all", "cannot be read"),
    ],
)
def test_a_file_that_cannot_be_replayed_says_why(
    city: twin.City, tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ReplayError, match=message) as caught:
        city.live.replay(path, speed=None)
    assert name in str(caught.value)


def test_replay_refuses_a_speed_that_is_not_positive(city: twin.City, tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="speed"):
        city.live.replay(tmp_path / "x.csv", speed=0)


def test_ingest_a_dataframe_and_read_the_latest(city: twin.City) -> None:
    ds = city.live.register("df/flow", thing="df", observed_property="flow")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    frame = pd.DataFrame(
        {
            "datastream": [ds] * 3,
            "phenomenonTime": [start, start + timedelta(minutes=1), start + timedelta(minutes=2)],
            "result": [100, 200, 300],
        }
    )
    report = city.live.ingest(frame)
    assert len(report.stored) == 3
    latest = city.live.latest([ds])
    assert latest.loc[0, "result"] == 300.0
    binned = city.live.readings([ds], start=start, interval="1min")
    assert list(binned["count"]) == [1, 1, 1]
    with pytest.raises(ValueError, match="no column result"):
        city.live.ingest(frame.drop(columns="result"))


def test_the_replay_command_lists_refused_rows_and_fails_cleanly(
    city: twin.City, tmp_path: Path, live_db: str
) -> None:
    import subprocess
    import sys

    ds = city.live.register("cli/speed", thing="cli", observed_property="speed")
    now = datetime.now(UTC) - timedelta(minutes=2)
    (tmp_path / "r.csv").write_text(
        "datastream,phenomenonTime,result\n"
        f"cli/speed,{now.isoformat()},40\n"
        f"{ds},{now.isoformat()},NaN\n"
    )
    twin_cli = Path(sys.executable).with_name("twin")
    env = {"TWIN_DATABASE_URL": live_db, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [twin_cli, "live", "replay", tmp_path / "r.csv", "--fast"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "2 rows, 1 stored, 0 already stored, 1 refused" in done.stdout
    assert "r.csv: row 2: result nan is not a finite number" in done.stdout
    assert "Traceback" not in done.stderr

    missing = subprocess.run(
        [twin_cli, "live", "replay", tmp_path / "none.csv"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "none.csv: no such file" in missing.stderr and "Traceback" not in missing.stderr


def test_a_datastream_is_placed_by_a_point_as_by_a_pair(city: twin.City, live_db: str) -> None:
    import shapely
    import sqlalchemy as sa

    from layers.database import get_engine

    city.live.register(
        "pt/speed", thing="pt", observed_property="speed", location=shapely.Point(7.42, 43.73)
    )
    city.live.register(
        "pair/speed", thing="pair", observed_property="speed", location=(7.43, 43.74)
    )
    with get_engine(live_db).connect() as conn:
        rows = dict(
            conn.execute(
                sa.text(
                    "SELECT t.name, ST_AsText(l.geom) FROM sta_things t "
                    "JOIN sta_thing_locations tl ON tl.thing_id = t.id "
                    "JOIN sta_locations l ON l.id = tl.location_id WHERE t.name IN ('pt', 'pair')"
                )
            ).all()
        )
    assert rows == {"pt": "POINT(7.42 43.73)", "pair": "POINT(7.43 43.74)"}
    with pytest.raises(twin.ParameterError, match="location"):
        city.live.register("bad/speed", thing="bad", observed_property="speed", location="here")
