"""The package version, in a module of its own so that submodules read it without importing the
package's ``__init__`` (pyproject.toml reads it too)."""

__version__ = "0.1.0.dev0"
