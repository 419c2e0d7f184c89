"""Prefect artifact keys for a sweep (the artifacts themselves are checked in a browser: tests/ui)."""

from flows.artifacts import artifact_key


def test_artifact_keys_are_lowercase_letters_digits_and_dashes():
    assert artifact_key("digits-grid", "leaderboard") == "digits-grid-leaderboard"
    assert artifact_key("XOR census_v2.1", "census") == "xor-census-v2-1-census"
    assert artifact_key("__", "census") == "sweep-census"
