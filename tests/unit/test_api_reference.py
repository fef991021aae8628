"""The API reference (book/api/*.md) documents every public module of memlib and widgets."""

import pkgutil
import re
from pathlib import Path

import memlib
import widgets

API = Path(__file__).resolve().parents[2] / "book" / "api"


def _public_modules(package):
    """Every public module (not package: a package's modules are documented one by one) under ``package``."""
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        if not info.ispkg and not any(part.startswith("_") for part in info.name.split(".")):
            yield info.name


def test_every_public_module_has_a_section_in_the_api_reference():
    text = "".join(p.read_text() for p in API.glob("*.md"))
    documented = set(re.findall(r"\.\. (?:automodule|py:module):: (\S+)", text))
    missing = sorted((set(_public_modules(memlib)) | set(_public_modules(widgets))) - documented)
    assert not missing, f"modules missing from book/api/*.md: {missing}"
