"""firstlayer: what CNNs learn in their first layer, and why (Chowers & Weiss, ICML 2023), as a library.

Modules, each importing only from those before it: datasets -> patches -> models -> train -> energy -> theory ->
analysis -> plots; `config` (validation, grid) and `io` (files) serve the workflow's scripts. One network of your own:
`modelspec` (model specs, weights), `checkpoints`, `discovery` (its first layer) -> `profile` (``analyze``) -> `cli`.
"""

__version__ = "0.1.0"

#: The analysis of one network (``firstlayer.analyze(model, data)``), imported on first use: ``import firstlayer``
#: stays free of torch, which the workflow's parsing relies on.
_LAZY = {"analyze": "firstlayer.profile", "load_model": "firstlayer.modelspec"}


def __getattr__(name: str) -> object:
    """``firstlayer.analyze`` and ``firstlayer.load_model``, imported when first used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'firstlayer' has no attribute {name!r}")
