"""--rates: absolute rates and fractions of the closed loop's maximum measured in the same run."""

from __future__ import annotations

import re

import pytest

from bench.rates import Rate, parse


def test_absolute_rates_and_fractions_are_told_apart() -> None:
    assert parse("1000, 0.5x,0.75x,") == [Rate(1000, False), Rate(0.5, True), Rate(0.75, True)]
    assert parse("") == []


def test_a_fraction_is_resolved_against_the_closed_loop_and_rounded() -> None:
    assert Rate(0.5, True).resolve(3567.4) == 1784.0
    assert Rate(0.75, True).resolve(3567.4) == 2676.0
    # An absolute rate does not depend on what the closed loop did.
    assert Rate(1000, False).resolve(3567.4) == 1000.0


def test_phase_labels_say_which_kind_of_rate() -> None:
    assert Rate(1000, False).label == "1000"
    assert Rate(0.5, True).label == "0.5x"
    assert Rate(2.5, False).label == "2.5"


@pytest.mark.parametrize("text", ["fast", "0.5y", "x", "-100", "0", "0x", "nan", "infx"])
def test_what_is_no_rate_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse(f"1000,{text}")


def test_a_fraction_of_nothing_is_no_rate() -> None:
    with pytest.raises(ValueError, match=r"0\.5x of a closed loop that acknowledged 0\.4/s"):
        Rate(0.5, True).resolve(0.4)
