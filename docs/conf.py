"""Sphinx configuration: the API reference is built from the package's docstrings."""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))

import shuntfs  # noqa: E402

project = "shuntfs"
release = version = shuntfs.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
html_theme = "alabaster"
exclude_patterns = ["_build"]
nitpicky = False
