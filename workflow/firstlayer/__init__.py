"""firstlayer: what CNNs learn in their first layer, and why (Chowers & Weiss, ICML 2023), as a library.

Modules, layered (docs/layout.md): datasets -> patches -> models -> networks, discovery, checkpoints, modelspec ->
settings, augment, precision, inputspace, resume -> train -> runs; energy -> theory -> analysis, regime,
label_information -> pretrained, profile -> cli; replication, record, plots, report on top. `config`, `io`,
`codehash` and `resources` serve the workflow. Training imports none of the profiling modules.
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
