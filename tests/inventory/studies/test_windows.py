"""Date windows of the study walk: the C-FIND keys they send, how they split, how a job stores them."""

from __future__ import annotations

from datetime import date

import pytest

from inventory.studies.query import DAY_SECONDS, Window


def test_the_first_window_asks_for_every_date_and_open_ends_drop_their_bound():
    assert Window(date(2000, 1, 1), date(2000, 1, 31), open_start=True, open_end=True).study_date_key == ""
    assert Window(date(2000, 1, 1), date(2000, 1, 31), open_start=True).study_date_key == "-20000131"
    assert Window(date(2000, 1, 1), date(2000, 1, 31), open_end=True).study_date_key == "20000101-"
    assert Window(date(2000, 1, 1), date(2000, 1, 31)).study_date_key == "20000101-20000131"
    assert Window(date(2000, 1, 1), date(2000, 1, 1)).study_date_key == "20000101"
    assert Window(date(2000, 1, 1), date(2000, 1, 31)).study_time_key == ""


def test_two_days_are_split_by_study_time_down_to_one_second():
    window = Window(date(2025, 2, 28), date(2025, 3, 1))
    morning, evening = window.split()
    assert morning.timed and (morning.start, morning.end) == (window.start, window.end)
    assert (morning.study_time_key, evening.study_time_key) == ("-115959", "115959-")
    assert morning.study_date_key == evening.study_date_key == "20250228-20250301"
    second = Window(window.start, window.end, timed=True, time_from=43_199, time_to=43_200)
    assert second.study_time_key == "115959-120000"
    assert second.split() is None


def test_a_window_contains_its_time_halves_and_not_its_neighbour():
    window = Window(date(2000, 1, 1), date(2000, 1, 2), open_start=True)
    morning, evening = window.split()
    quarter, _rest = morning.split()
    assert window.contains(morning) and window.contains(quarter) and morning.contains(quarter)
    assert not morning.contains(evening)
    assert not window.contains(Window(date(2000, 1, 2), date(2000, 1, 3)))


def test_a_window_stored_as_json_values_comes_back_equal():
    window = Window(date(2019, 6, 14), date(2019, 6, 15), False, True, True, 3_600, 7_199)
    assert Window.from_dict(window.to_dict()) == window


@pytest.mark.parametrize(("data", "message"), [
    ({"start": "2020-01-01"}, "start and end"),
    ({"start": "2020-13-01", "end": "2020-12-31"}, "start and end"),
    ({"start": "2020-01-02", "end": "2020-01-01"}, "start must not be after end"),
    ({"start": "2020-01-01", "end": "2020-01-02", "timed": "yes"}, "timed must be true or false"),
    ({"start": "2020-01-01", "end": "2020-01-02", "time_to": DAY_SECONDS}, "time_to must be a second"),
    ({"start": "2020-01-01", "end": "2020-01-02", "time_from": 10, "time_to": 5}, "start must not be after"),
])
def test_a_stored_window_that_is_damaged_is_refused_naming_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        Window.from_dict(data)
