"""Shared fixtures: the devices to run on, and a fixed seed for every test (so no test depends on order)."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def dev(request) -> torch.device:
    """Each test that takes ``dev`` runs once per available device."""
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
