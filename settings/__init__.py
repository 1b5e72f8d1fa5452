"""Typed, validated stack settings."""

from .loader import SettingsError, load_settings, settings_from_config, settings_from_values, stack_keys
from .model import Settings

__all__ = ["Settings", "SettingsError", "load_settings", "settings_from_config", "settings_from_values", "stack_keys"]
