"""Shared fixtures: the devices to run on, and a fixed seed for every test (so no test depends on order)."""

from __future__ import annotations

import os

import pytest
import torch


def _devices() -> list[str]:
    """Every available device, or those MEMLIB_TEST_DEVICES names ("cuda", "cpu,cuda"), which must be present."""
    available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    wanted = [d.strip() for d in os.environ.get("MEMLIB_TEST_DEVICES", "").split(",") if d.strip()]
    missing = [d for d in wanted if d not in available]
    if missing:
        raise pytest.UsageError(f"MEMLIB_TEST_DEVICES asks for {missing}, but only {available} are available")
    return wanted or available


DEVICES = _devices()


def pytest_configure(config):
    config.addinivalue_line("markers", "takes_device: the test takes the `dev` fixture (added automatically)")
    config.addinivalue_line("markers", "slow: runs torch.compile (minutes on a loaded CPU); skip: -m 'not slow'")


def pytest_collection_modifyitems(config, items):
    """Marks the tests that take ``dev`` so that `-m takes_device` selects them (`make test-gpu`)."""
    for item in items:
        if "dev" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.takes_device)


@pytest.fixture(params=DEVICES)
def dev(request) -> torch.device:
    """Each test that takes ``dev`` runs once per available device (or per MEMLIB_TEST_DEVICES entry)."""
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
