"""limits.json: the operator's limits for visitors, validated on every read and write, refused in one line."""

from __future__ import annotations

import json

import pytest

from cnn_core.core.errors import CnnError
from cnn_core.jobs.limits import Limits, limits_path, load_limits, save_limits


def test_no_file_means_the_classroom_defaults_and_a_saved_file_is_read_back(state_dir):
    assert load_limits() == Limits(1, 1, 30.0, 12, 2.0)
    save_limits({"job_minutes": 10, "sweep_runs": 4})
    assert limits_path().parent == state_dir and load_limits() == Limits(job_minutes=10, sweep_runs=4)


@pytest.mark.parametrize("text,needle", [
    ('{"job_minutes": -1}', "limit job_minutes must be a finite number >= 0, got -1"),
    ('{"queued_per_visitor": 1.5}', "limit queued_per_visitor must be a whole number, got 1.5"),
    ('{"min_free_gb": "lots"}', "limit min_free_gb must be a number, got 'lots'"),
    ('{"sweep_runs": true}', "limit sweep_runs must be a whole number, got True"),
    ('{"jobs_per_day": 3}', "unknown limit 'jobs_per_day'; choose from: queued_per_visitor,"),
    ('[1, 2]', "must hold a JSON object of limits"),
    ('{"job_minutes": 30,}', "is not readable JSON"),
])
def test_a_bad_limits_file_is_refused_in_one_line_naming_the_value(text, needle):
    limits_path().parent.mkdir(parents=True, exist_ok=True)
    limits_path().write_text(text)
    with pytest.raises(CnnError) as e:
        load_limits()
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_bad_value_is_not_saved():
    save_limits(Limits(job_minutes=5))
    with pytest.raises(CnnError, match="limit running_per_visitor must be a finite number >= 0"):
        save_limits({"running_per_visitor": -2})
    assert json.loads(limits_path().read_text())["job_minutes"] == 5
