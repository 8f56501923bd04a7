"""Area-adjusted accuracy: the stratified estimators of Olofsson et al. (2014), with the map classes as strata.

A pixel-count confusion matrix describes the reference pixels, not the map: a class that covers 2 % of the
map but half of the reference pixels weighs 25 times too much in the OA, and the mapped area of a class
carries its commission and omission errors. Olofsson, Foody, Herold, Stehman, Woodcock and Wulder, "Good
practices for estimating area and assessing accuracy of land change", Remote Sensing of Environment 148
(2014) 42–57, weight every map class (stratum i) by its share of the map, W_i = N_i / N:

    p̂_ij = W_i · n_ij / n_i·                     estimated share of the map that is mapped i, truly j (eq. 4)
    Û_i = n_ii / n_i·, P̂_j = p̂_jj / p̂_·j, Ô = Σ_j p̂_jj                                  (eqs. 1–3)
    Â_j = N · p̂_·j, S(p̂_·j)² = Σ_i W_i² (n_ij/n_i·)(1 − n_ij/n_i·) / (n_i· − 1)          (eqs. 9–10)
    V(Ô) = Σ_i W_i² Û_i (1 − Û_i) / (n_i· − 1), V(Û_i) = Û_i (1 − Û_i) / (n_i· − 1)       (eqs. 5–6)
    V(P̂_j) = [N_j·² (1 − P̂_j)² Û_j (1 − Û_j) / (n_j· − 1)
              + P̂_j² Σ_{i≠j} N_i·² (n_ij/n_i·)(1 − n_ij/n_i·) / (n_i· − 1)] / N̂_·j²,
              N̂_·j = Σ_i N_i· n_ij / n_i·                                                 (eq. 7)

with 95 % confidence intervals ± 1.96 standard errors. n_ij counts reference pixels mapped i and labelled j;
N_i· the map's pixels of class i. The estimators assume the reference pixels are a stratified random sample
of the map classes (e.g. random points per class); for hand-drawn ROIs they are an approximation, which the
report says. A stratum without reference pixels leaves its share of the map unestimated: the estimates
then describe the sampled strata, whose share of the map the result gives. A stratum with a single
reference pixel has no variance (the intervals are None). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["Z95", "AreaAccuracy", "area_adjusted_accuracy"]

Z95 = 1.96


@dataclass
class AreaAccuracy:
    """The estimates for classes ``class_ids`` (map strata and reference classes are the same list)."""

    class_ids: List[int]
    mapped_pixels: np.ndarray       # N_i·
    covered: float                  # share of the map in strata with reference pixels (what is estimated)
    sample: np.ndarray              # n_ij, rows = map, columns = reference
    proportions: np.ndarray         # p̂_ij
    users: np.ndarray               # Û_i (NaN: stratum not sampled)
    users_ci: np.ndarray            # 95 % half-widths (NaN: undefined)
    producers: np.ndarray           # P̂_j (NaN: class absent from the estimates)
    producers_ci: np.ndarray
    overall: float
    overall_ci: float
    area_pixels: np.ndarray         # Â_j in pixels
    area_pixels_ci: np.ndarray
    unsampled: List[int]            # map classes with mapped pixels but no reference pixel
    single: List[int]               # strata with one reference pixel: no variance

    def as_dict(self, pixel_area_m2: Optional[float] = None,
                class_names: Optional[Dict[int, str]] = None) -> Dict[str, Any]:
        """JSON-ready: per class the mapped and estimated area (pixels; ha when ``pixel_area_m2`` is known)."""
        def clean(value: float) -> Optional[float]:
            return None if not np.isfinite(value) else float(value)

        hectares = None if pixel_area_m2 is None else pixel_area_m2 / 10_000.0
        names = class_names or {}
        classes = []
        for k, cid in enumerate(self.class_ids):
            entry = {"id": cid, "name": names.get(cid, str(cid)), "mapped_pixels": int(self.mapped_pixels[k]),
                     "reference_pixels": int(self.sample[:, k].sum()), "sampled_in_stratum": int(self.sample[k].sum()),
                     "users_accuracy": clean(self.users[k]), "users_accuracy_ci95": clean(self.users_ci[k]),
                     "producers_accuracy": clean(self.producers[k]),
                     "producers_accuracy_ci95": clean(self.producers_ci[k]),
                     "area_pixels": clean(self.area_pixels[k]), "area_pixels_ci95": clean(self.area_pixels_ci[k])}
            if hectares is not None:
                entry.update(mapped_area_ha=float(self.mapped_pixels[k] * hectares),
                             area_ha=clean(self.area_pixels[k] * hectares),
                             area_ha_ci95=clean(self.area_pixels_ci[k] * hectares))
            classes.append(entry)
        notes = []
        if self.unsampled:
            notes.append(f"map classes {self.unsampled} have no reference pixel: their "
                         f"{int(sum(self.mapped_pixels[self.class_ids.index(c)] for c in self.unsampled)):,} mapped "
                         f"pixels are left out, so the estimates describe the other {100 * self.covered:.1f} % of "
                         "the map (label some of them)")
        absent = [c for k, c in enumerate(self.class_ids) if self.mapped_pixels[k] == 0]
        if absent:
            notes.append(f"classes {absent} are in the reference but not in the map: they are a stratum of zero "
                         "area, and their estimated area comes only from the other strata's errors")
        if self.single:
            notes.append(f"map classes {self.single} have one reference pixel: no variance, so no interval")
        return {"method": "Olofsson et al. 2014, stratified estimators, map classes as strata",
                "overall_accuracy": clean(self.overall), "overall_accuracy_ci95": clean(self.overall_ci),
                "pixel_area_m2": pixel_area_m2, "total_pixels": int(self.mapped_pixels.sum()),
                "share_of_map_estimated": self.covered,
                "proportions": self.proportions.tolist(), "classes": classes, "notes": notes}


def area_adjusted_accuracy(sample: np.ndarray, mapped_pixels: Sequence[float],
                           class_ids: Optional[Sequence[int]] = None) -> AreaAccuracy:
    """Olofsson's estimators from ``sample`` (n_ij: rows = map class, columns = reference class, one class
    list for both) and the map's pixel count of each class, ``mapped_pixels`` (N_i·)."""
    n = np.asarray(sample, dtype=float)
    mapped = np.asarray(mapped_pixels, dtype=float)
    k = len(mapped)
    if n.shape != (k, k):
        raise ValueError(f"the sample matrix must be {k} x {k} (one row and column per map class), got {n.shape}")
    if (n < 0).any() or (mapped < 0).any() or mapped.sum() <= 0:
        raise ValueError("the sample counts and mapped pixels must be non-negative, with some mapped pixels")
    ids = list(range(1, k + 1)) if class_ids is None else [int(c) for c in class_ids]
    rows = n.sum(1)
    sampled = rows > 0
    if not sampled.any():
        raise ValueError("no reference pixel lies on a classified pixel: there is nothing to estimate")
    # Strata without reference pixels cannot be estimated: the estimates cover the sampled strata, whose
    # share of the map is ``covered`` (1 when every map class has reference pixels).
    mapped_all = mapped
    mapped = np.where(sampled, mapped_all, 0.0)
    covered = float(mapped.sum() / mapped_all.sum())
    weights = mapped / mapped.sum()
    share = np.divide(n, rows[:, None], out=np.zeros_like(n), where=sampled[:, None])     # n_ij / n_i·
    proportions = weights[:, None] * share
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = np.where(rows > 1, rows - 1, np.nan)                                        # n_i· − 1
        users = np.where(sampled, np.diag(share), np.nan)
        users_var = users * (1 - users) / dof
        column = proportions.sum(0)                                                       # p̂_·j
        producers = np.where(column > 0, np.diag(proportions) / column, np.nan)
        overall = float(np.trace(proportions))
        terms = weights[:, None] ** 2 * share * (1 - share) / dof[:, None]                # per stratum i, class j
        used = sampled & (weights > 0)                                                    # W_i = 0: no term
        overall_var = float(np.sum((weights ** 2 * users * (1 - users) / dof)[used]))
        area_var = np.where(used[:, None], terms, 0.0).sum(0)
        estimated = (mapped[:, None] * share).sum(0)                                      # N̂_·j
        producers_var = np.full(k, np.nan)
        for j in range(k):
            if not column[j] > 0:
                continue
            own = mapped[j] ** 2 * (1 - producers[j]) ** 2 * users_var[j] if sampled[j] and mapped[j] > 0 else 0.0
            others = sum(mapped[i] ** 2 * share[i, j] * (1 - share[i, j]) / dof[i]
                         for i in range(k) if i != j and used[i])
            producers_var[j] = (own + producers[j] ** 2 * others) / estimated[j] ** 2
    single = [ids[i] for i in range(k) if rows[i] == 1 and weights[i] > 0]
    undefined = bool(single)     # a stratum without variance makes every interval it enters undefined
    return AreaAccuracy(
        class_ids=ids, mapped_pixels=mapped_all.astype(np.int64), covered=covered, sample=n.astype(np.int64), proportions=proportions,
        users=users, users_ci=Z95 * np.sqrt(users_var), producers=producers,
        producers_ci=Z95 * np.sqrt(producers_var), overall=overall,
        overall_ci=float("nan") if undefined else Z95 * float(np.sqrt(overall_var)),
        area_pixels=column * mapped.sum(), area_pixels_ci=Z95 * np.sqrt(area_var) * mapped.sum(),
        unsampled=[ids[i] for i in range(k) if not sampled[i] and mapped_all[i] > 0], single=single)
