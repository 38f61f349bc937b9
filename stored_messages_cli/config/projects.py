"""A project's saved destination (`[projects."ID"]` in config.toml) as a pydantic model.

Its own module so that commands which handle destinations but never read the settings
import pydantic only, not pydantic-settings (`settings.py`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..message import MEDIUMS
from .keys import SavedDestinationOptions
from .privacy_choices import privacy_choice
from .providers import check_providers


class ProjectDestination(BaseModel, SavedDestinationOptions, frozen=True):
    """One project's destination, as saved by `sm connect` (never any secret).

    How the destination is reached (endpoint, region, role, retention, …) is declared once,
    in `SavedDestinationOptions`: pydantic validates the fields it inherits from that
    dataclass like its own. Only the project's own keys are declared here.
    """

    # Built on first validation: building imports pydantic's plugin loader (~0.1 s).
    model_config = ConfigDict(defer_build=True)

    url: str
    mediums: list[str] = Field(default_factory=lambda: list(MEDIUMS))
    # An investigator's destination: list and read only (`sm connect --read-only`).
    read_only: bool = False
    # Safety checks that failed and that the operator accepted by name on `sm connect`.
    accepted_failed_checks: list[str] = Field(default_factory=list)
    # Privacy (SPEC 9.5, docs/privacy.md); None: the top-level setting of the same name.
    recipient_hash: str | None = None
    recipient_hash_key_file: str | None = None
    encryption: str | None = None
    master_key_file: str | None = None
    kms_key_id: str | None = None
    # Provider webhooks (`[projects."ID".providers.NAME]`, docs/providers.md).
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("recipient_hash", "encryption")
    @classmethod
    def _privacy_choice(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else privacy_choice(info.field_name or "", value)

    @field_validator("mediums")
    @classmethod
    def _known_mediums(cls, value: list[str]) -> list[str]:
        for medium in value:
            if medium not in MEDIUMS:
                raise ValueError(f"unknown medium {medium!r} (use email, sms or push)")
        return value

    @field_validator("retention_days")
    @classmethod
    def _positive_days(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be at least 1 day, not {value}")
        return value

    @field_validator("providers", mode="before")
    @classmethod
    def _providers(cls, value: Any) -> dict[str, dict[str, Any]]:
        return check_providers(value)
