import pytest

from course_utils import fastmode


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_course_fast_values_switch_fast_mode_on(monkeypatch, value):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("COURSE_FAST", value)
    assert fastmode.is_fast()


@pytest.mark.parametrize("value", ["", "0", "false", "off"])
def test_false_values_and_unset_mean_default_mode(monkeypatch, value):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("COURSE_FAST", value)
    assert not fastmode.is_fast()
    monkeypatch.delenv("COURSE_FAST")
    assert not fastmode.is_fast()


@pytest.mark.parametrize("step", ["validate", "autograde"])
def test_nbgrader_execution_switches_fast_mode_on(monkeypatch, step):
    monkeypatch.delenv("COURSE_FAST", raising=False)
    monkeypatch.setenv("NBGRADER_EXECUTION", step)
    assert fastmode.is_fast()


def test_unknown_value_is_an_error_naming_the_choices(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "maybe")
    with pytest.raises(ValueError, match="COURSE_FAST='maybe'.*1/true/yes/on"):
        fastmode.is_fast()


def test_choose_epochs_and_size_follow_the_mode(fast_mode, monkeypatch):
    assert fastmode.choose("big", "small") == "small"
    assert fastmode.epochs(10) == 1
    assert fastmode.epochs(10, fast=2) == 2
    assert fastmode.size(10_000) == 1_000
    assert fastmode.size(300) == 64
    assert fastmode.size(30) == 30  # never larger than the default
    monkeypatch.setenv("COURSE_FAST", "0")
    assert fastmode.choose("big", "small") == "big"
    assert fastmode.epochs(10) == 10
    assert fastmode.size(10_000, fast=50) == 10_000


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_epochs_and_size_reject_non_positive_ints(bad):
    with pytest.raises(ValueError, match="positive int"):
        fastmode.epochs(bad)
    with pytest.raises(ValueError, match="positive int"):
        fastmode.size(bad)
