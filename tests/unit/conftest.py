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


@pytest.fixture(autouse=True)
def _one_thread():
    """Unit tests use tiny tensors: extra threads only contend (on a shared 2-core machine, up to 50x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
