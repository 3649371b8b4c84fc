"""firstlayer: what CNNs learn in their first layer, and why (Chowers & Weiss, ICML 2023), as a library.

Modules, each importing only from those before it: datasets -> patches -> models -> train -> energy -> theory ->
analysis -> plots; `config` (validation, grid) and `io` (files) serve the workflow's scripts.
"""

__version__ = "0.1.0"
