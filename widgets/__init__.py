"""Explorers for the book: Bokeh figures driven by CustomJS (static) and ipywidgets (live).

Explorers take data (arrays from a memlib trace), never models.
"""

from widgets.advisor import AdvisorExplorer
from widgets.attention import AttentionExplorer
from widgets.attribution import AttributionExplorer
from widgets.base import Explorer
from widgets.budget import BudgetModel, MemoryBudgetExplorer, book_models
from widgets.caption import CaptionExplorer
from widgets.display import bokeh_html, load_bokeh_inline, show_bokeh
from widgets.gates import GateExplorer
from widgets.hidden_state import HiddenStateExplorer
from widgets.memory import AddressingPipeline, MemoryExplorer

__all__ = [
    "AddressingPipeline",
    "AdvisorExplorer",
    "AttentionExplorer",
    "AttributionExplorer",
    "BudgetModel",
    "CaptionExplorer",
    "Explorer",
    "GateExplorer",
    "HiddenStateExplorer",
    "MemoryBudgetExplorer",
    "MemoryExplorer",
    "bokeh_html",
    "book_models",
    "load_bokeh_inline",
    "show_bokeh",
]
