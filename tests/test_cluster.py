"""Tests for facetracker.cluster's checks of the worker list (the training itself: test_multiworker.py)."""

import pytest

from facetracker.cluster import Worker, parse_workers
from facetracker.errors import FaceTrackerError


def test_a_worker_list_is_parsed_in_order():
    assert parse_workers("10.0.0.5:12345, localhost:2222,[::1]:80") == [
        Worker("10.0.0.5", 12345), Worker("localhost", 2222), Worker("::1", 80)]


def test_a_worker_listed_twice_is_refused():
    """Two entries for one HOST:PORT would make training wait forever for a worker that never joins."""
    with pytest.raises(FaceTrackerError, match=r"--workers a:1,b:2,a:1: a worker is listed twice; list each "
                                               r"HOST:PORT once\."):
        parse_workers("a:1,b:2,a:1")


@pytest.mark.parametrize("text", ["a", "a:", ":1", "a:0", "a:65536", "a:x"])
def test_an_entry_that_is_not_host_port_is_refused(text):
    with pytest.raises(FaceTrackerError, match="is not HOST:PORT"):
        parse_workers(text)
