"""The ``firstlayer`` command line: ``firstlayer profile MODEL --data DATA`` profiles one network's first layer
(``firstlayer.profile.analyze``) and writes its tables and figure."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from firstlayer.checkpoints import CheckpointError
from firstlayer.datasets import EMBEDDED_PRESETS, DatasetError
from firstlayer.discovery import FirstLayerError
from firstlayer.modelspec import SPEC_FORMS, ModelSpecError
from firstlayer.profile import ProfileError

#: Errors a user's arguments, files or network can cause: one line on stderr, exit status 2.
USER_ERRORS = (ModelSpecError, CheckpointError, FirstLayerError, DatasetError, ProfileError)
#: What ``profile`` writes under --out.
OUTPUTS = ("energy.parquet", "fits.parquet", "whitening.parquet", "profile.png", "summary.txt")


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``firstlayer``."""
    top = argparse.ArgumentParser(
        prog="firstlayer", description="What a network's first layer learned, and why: `firstlayer profile --help`."
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    presets = ", ".join(f"embedded:{n}" for n in EMBEDDED_PRESETS)
    p = commands.add_parser(
        "profile",
        help="energy profile, formula fits and whitening of one network's first layer",
        description="Energy profile of a network's first layer in the PCA basis of a dataset's patches, the two "
        "fits of the linear-systems formula and the response flatness (docs/method.md). Nothing is downloaded.",
    )
    p.add_argument("model", metavar="MODEL", help=f"the network: {SPEC_FORMS}")
    data = f"{presets}, an image folder (one sub-folder per class) or a prepared dataset folder (images.npy + "
    p.add_argument("--data", required=True, help=data + "manifest.parquet); patches of its training split")
    weights = "a checkpoint file (state_dict, Lightning, DataParallel, ...), or for torchvision: and timm: models "
    p.add_argument(
        "--weights",
        metavar="FILE",
        help=weights + "DEFAULT or a weights name, from the local cache (default: random init)",
    )
    p.add_argument(
        "--init", type=Path, metavar="FILE", help="a checkpoint of the initial weights W0: adds the W - W0 profile"
    )
    p.add_argument("--first-layer", metavar="NAME", help="the first layer's module name (default: found by running "
                   "the network on a dummy batch)")  # fmt: skip
    p.add_argument(
        "--out", type=Path, metavar="DIR", default=Path("firstlayer_profile"), help="output folder (%(default)s)"
    )
    p.add_argument("--mean", type=float, nargs=3, metavar="M", help="input mean per channel in [0, 1] units "
                   "(default: the weights' own, else the data's)")  # fmt: skip
    p.add_argument("--std", type=float, nargs=3, metavar="S", help="input std per channel, with --mean")
    p.add_argument(
        "--image-size", type=int, metavar="N", default=32, help="side images of a folder are resized to (%(default)s)"
    )
    return top


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def profile_command(args: argparse.Namespace) -> None:
    """Run ``profile``: analyse, write the tables, the figure and the summary under --out, print the summary."""
    from firstlayer.codehash import code_hash
    from firstlayer.io import stamp, write_table
    from firstlayer.profile import analyze, built, load_images

    start = time.perf_counter()
    _log(f"loading {args.data}")
    data = load_images(args.data, image_size=args.image_size)
    side = data.images.shape[-1]
    _log(f"building {args.model}" + (f" with weights {args.weights}" if args.weights else " at random init"))
    model = built(args.model, weights=args.weights, num_classes=data.num_classes or 10, image_size=side)
    result = analyze(model, data, init=args.init, first_layer=args.first_layer, mean=args.mean, std=args.std)
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("out", "command")}
    mark = stamp("firstlayer profile", code_hash(__file__), settings)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("energy", "fits", "whitening"):
        write_table(getattr(result, name), args.out / f"{name}.parquet", mark)
    result.plot().savefig(args.out / "profile.png", dpi=150, bbox_inches="tight")
    summary = result.summary()
    (args.out / "summary.txt").write_text(summary + "\n")
    print(summary)
    print(f"wrote {', '.join(OUTPUTS)} to {args.out}/ in {time.perf_counter() - start:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``firstlayer`` console script; returns the exit status."""
    top = parser()
    args = top.parse_args(argv)
    if (args.mean is None) != (args.std is None):
        top.error("give --mean and --std together")
    try:
        profile_command(args)
    except USER_ERRORS as error:
        print(f"firstlayer {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
