"""The settings are named once (harmonic.settings.SETTINGS); every schema enum that lists them must say the same."""

from pathlib import Path

import pytest
import yaml

from harmonic.settings import SETTINGS, check_settings

ROOT = Path(__file__).resolve().parents[2]


def setting_enums(node):
    if isinstance(node, dict):
        if "faithful" in node.get("enum", []) or "corrected" in node.get("enum", []):
            yield node["enum"]
        for value in node.values():
            yield from setting_enums(value)
    elif isinstance(node, list):
        for value in node:
            yield from setting_enums(value)


def test_every_schema_lists_the_settings_of_the_library():
    found = 0
    for path in sorted((ROOT / "schemas").glob("*.yaml")):
        for enum in setting_enums(yaml.safe_load(path.read_text())):
            assert enum == list(SETTINGS), path
            found += 1
    assert found >= 6  # toy, vision and llm each name them in `settings` and in `overrides.where`


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="faithfull"):
        check_settings(["faithfull"], "toy.settings")
