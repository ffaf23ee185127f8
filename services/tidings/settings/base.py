"""What every settings group shares: its prefix and validation rules."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict


def config(prefix: str) -> SettingsConfigDict:
    """``TIDINGS_<GROUP>_*``; other variables ignored here (tidings.variables reports them)."""
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", validate_default=True)
