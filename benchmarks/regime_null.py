"""Where the energy profile's correlation can say anything, and how much the labels carry beyond class means, on
the embedded datasets' k x k patches: the formula's early and late similarity over tau (firstlayer.regime), the
null of two untrained banks of random patch combinations, and the first- and second-order label information with
its null of labels permuted across images (firstlayer.label_information), with its runtime. Measurement only: no
threshold is set from it. Run by hand: python benchmarks/regime_null.py [--datasets textures photos] [--k 3]"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from firstlayer.datasets import channel_stats, embedded_preset
from firstlayer.label_information import STATISTICS, label_information_frames
from firstlayer.patches import patch_moments, patch_pca
from firstlayer.regime import formula_regime_curve, informative_window, matched_bank_null, random_bank_null


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["textures", "photos"])
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--draws", type=int, default=20, help="label permutations of the null")
    parser.add_argument("--bank-draws", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    for name in args.datasets:
        images, labels = embedded_preset(name).split("train")
        mean, std = channel_stats(images)
        lam, _ = patch_pca(patch_moments(images, mean, std, args.k).covariance())
        print(f"\n== {name}, k = {args.k}: lambda_max {lam[0]:.2f}, lambda_min {lam[-1]:.2e}")
        taus = [0.01, 0.05, 0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 1e4]
        print(formula_regime_curve(lam, taus).round(3).to_string(index=False))
        lo, hi = informative_window(lam)
        print(f"informative window of the formula (default thresholds): tau in [{lo:.3g}, {hi:.3g}]")
        for filters in (16, 64):
            r = random_bank_null(lam, filters, np.random.default_rng([args.seed, filters]), args.bank_draws)
            print(f"random banks, {filters} filters: r mean {r.mean():.3f}, median {np.median(r):.3f}, "
                  f"5% {np.quantile(r, 0.05):.3f}, 95% {np.quantile(r, 0.95):.3f}")  # fmt: skip
        for tau in (0.3, 3.0, 30.0):
            r = matched_bank_null(lam, tau, 64, np.random.default_rng([args.seed, 1]), args.bank_draws)
            q05 = np.quantile(r, 0.05)
            print(f"matched banks at tau {tau:g}, 64 filters: r median {np.median(r):.3f}, 5% {q05:.3f}")
        start = time.perf_counter()
        comp, summary = label_information_frames(images, labels, args.k, mean, std,
                                                 rng=np.random.default_rng(args.seed), draws=args.draws)  # fmt: skip
        seconds = time.perf_counter() - start
        print(f"label information ({len(images)} images, {args.draws} permutations): {seconds:.2f} s")
        row = summary.iloc[0]
        table = pd.DataFrame([{"statistic": s, "value": row[s], "null_mean": row[f"{s}_null_mean"],
                               "null_std": row[f"{s}_null_std"], "excess": row[f"{s}_excess"], "z": row[f"{s}_z"],
                               "p": row[f"{s}_p"]} for s in STATISTICS])  # fmt: skip
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        top = comp.nlargest(3, "second_order_excess")[["component", "eigenvalue", "first_order", "second_order"]]
        print("largest second-order excess:\n" + top.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
