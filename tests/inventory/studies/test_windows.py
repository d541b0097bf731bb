"""Date windows of the study walk: the C-FIND keys they send, how they split, how a job stores them."""

from __future__ import annotations

from datetime import date

import pytest

from inventory.studies.query import DAY_SECONDS, Window


def test_the_first_walk_window_asks_for_every_date_and_its_halves_are_open_ended():
    root = Window(date(2000, 1, 1), date(2000, 1, 31), open_start=True, open_end=True)
    assert root.study_date_key == "" and root.study_time_key == ""
    first, second = root.split()
    assert (first.study_date_key, second.study_date_key) == ("-20000116", "20000116-")


def test_halves_share_their_boundary_day_so_no_text_value_falls_between_them():
    first, second = Window(date(2025, 2, 1), date(2025, 3, 31)).split()
    assert first.end == second.start
    assert (first.study_date_key, second.study_date_key) == ("20250201-20250302", "20250302-20250331")
    assert first.size + second.size == Window(date(2025, 2, 1), date(2025, 3, 31)).size + 1


def test_two_days_are_split_by_study_time_down_to_one_second():
    window = Window(date(2025, 2, 28), date(2025, 3, 1))
    morning, evening = window.split()
    assert morning.timed and (morning.start, morning.end) == (window.start, window.end)
    assert (morning.study_time_key, evening.study_time_key) == ("-115959", "115959-")
    assert morning.study_date_key == "20250228-20250301"
    second = Window(window.start, window.end, timed=True, time_from=43_199, time_to=43_200)
    assert second.study_time_key == "115959-120000"
    assert second.split() is None


def test_a_window_contains_what_was_split_from_it():
    root = Window(date(2000, 1, 1), date(2000, 12, 31), open_start=True, open_end=True)
    first, second = root.split()
    morning, _evening = Window(first.start, first.start.replace(day=2), open_start=True).split()
    assert root.contains(first) and root.contains(second) and root.contains(morning)
    assert not first.contains(second) and not second.contains(first)


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
