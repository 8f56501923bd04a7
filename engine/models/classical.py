"""Random forest and SVM behind the same classifier contract as the deep models, stored as plain tensors.

Analysts compare a new classifier with what they know; EnMAP-Box, SCP and dzetsaka train these two in
seconds. Here they are ``HSIClassifier``s, so one path serves every model: the same bands, stretch, ROIs,
split, report, model file and tiled classification (class, confidence = the largest probability,
probabilities). scikit-learn fits them (``fit_pixels``, tuned on the validation pixels as
bench/accuracy.py does); what prediction needs is then copied into buffers, so the model file holds
tensors only and loads with ``torch.load(weights_only=True)``, never a pickle:

- forest: per tree and node the feature, threshold, left and right child (−1 at leaves) and the class
  distribution of the leaf; a pixel walks every tree at once (``depth`` steps) and the forest's
  probability is the mean of its leaves' distributions, as scikit-learn's ``predict_proba``.
- SVM (RBF, one-against-one as libsvm): the support vectors, their dual coefficients and the
  intercepts give the pairwise decision values; libsvm's Platt sigmoids (probA, probB) turn them into
  pairwise probabilities, and its pairwise coupling (Wu, Lin and Weng 2004, libsvm's
  ``multiclass_probability``) into class probabilities, as ``SVC(probability=True).predict_proba``.

Spectra are standardised with the training pixels' mean and deviation (buffers too). The logits the
contract asks for are the log-probabilities, so softmax gives the probabilities back. The sizes of the
fitted arrays (nodes, depth, support vectors) are in ``config``, so the model file rebuilds the buffers
before loading them.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .base import HSIClassifier, ModelOutput

__all__ = ["RandomForest", "SupportVectorMachine", "CLASSICAL_NAMES"]

CLASSICAL_NAMES = ("rf", "svm")
_MIN_PROBABILITY = 1e-7            # libsvm's clip of pairwise probabilities, and the floor of the log
_PIXELS_PER_CHUNK = 4_096          # forest traversal: trees x pixels node indices per chunk


class _Classical(HSIClassifier):
    """Standardisation buffers, the pixel-wise forward and the validation-tuned fit shared by both."""

    def __init__(self, config: Dict[str, Any]) -> None:
        super().__init__(config)
        bands = int(config["in_bands"])
        self.register_buffer("mean", torch.zeros(bands))
        self.register_buffer("scale", torch.ones(bands))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor, guide: Optional[Tensor] = None, valid: Optional[Tensor] = None) -> ModelOutput:
        """Per-pixel probabilities of x (B, Nb, H, W); guide and valid are unused (each pixel on its own;
        the predictor blanks nodata)."""
        if x.dim() != 4 or x.shape[1] != self.config["in_bands"]:
            raise ValueError(f"{self.name} expects images (batch, {self.config['in_bands']}, rows, cols), "
                             f"got shape {tuple(x.shape)}")
        if not bool(self.fitted):
            raise ValueError(f"the {self.name} model is not fitted; train it with fit_pixels (the trainer does)")
        b, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, c).to(torch.float64)
        z = (pixels - self.mean.double()) / self.scale.double()
        probabilities = self.probabilities(z).clamp(min=_MIN_PROBABILITY)
        logits = probabilities.log().to(x.dtype).reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return ModelOutput(logits=logits.contiguous())

    def probabilities(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_pixels(self, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                   seed: int = 0, threads: Optional[int] = None,
                   check_cancel: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
        """Fit on spectra (N, bands) with class indices, choosing the settings by validation OA (the first
        wins ties; without validation pixels, the first); returns {settings, validation OA, seconds}.
        ``check_cancel()`` runs before every fit of the search and raises the caller's exception to stop."""
        from sklearn.preprocessing import StandardScaler

        check = check_cancel or (lambda: None)
        started = time.perf_counter()
        scaler = StandardScaler().fit(x_train)
        scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        z_train, z_val = scaler.transform(x_train), scaler.transform(x_val) if len(x_val) else x_val
        best: Optional[Tuple[float, Dict[str, Any], Any]] = None
        for settings, estimator in self._grid(x_train.shape[1], seed, threads):
            check()
            estimator.fit(z_train, y_train)
            score = float(np.mean(estimator.predict(z_val) == y_val)) if len(y_val) else math.nan
            if best is None or score > best[0]:
                best = (score, settings, estimator)
            if not len(y_val):
                break
        score, settings, estimator = best
        self.mean.copy_(torch.from_numpy(scaler.mean_))
        self.scale.copy_(torch.from_numpy(scale))
        check()
        self._store(self._final(estimator, settings, z_train, y_train, seed, threads))
        self.config.update(settings)
        self.fitted.fill_(True)
        return {"settings": settings, "validation_oa": score, "seconds": time.perf_counter() - started}

    def _grid(self, bands: int, seed: int, threads: Optional[int]) -> List[Tuple[Dict[str, Any], Any]]:
        raise NotImplementedError  # pragma: no cover

    def _final(self, estimator: Any, settings: Dict[str, Any], z: np.ndarray, y: np.ndarray, seed: int,
               threads: Optional[int]) -> Any:
        return estimator

    def _store(self, estimator: Any) -> None:
        raise NotImplementedError  # pragma: no cover


class RandomForest(_Classical):
    """Random forest (scikit-learn), ``trees`` trees; max_features chosen from {sqrt, 0.3} on validation."""

    name = "rf"

    def __init__(self, in_bands: int, n_classes: int, trees: int = 500, max_features: Any = "sqrt",
                 nodes: int = 1, depth: int = 0, leaves: int = 1) -> None:
        super().__init__({"in_bands": in_bands, "n_classes": n_classes, "trees": trees,
                          "max_features": max_features, "nodes": nodes, "depth": depth, "leaves": leaves})
        # Per tree and node (padded to the largest tree): split feature, threshold (float64, as scikit-learn
        # compares), children (−1 at leaves) and the row of the node's class distribution in ``leaf``, which
        # holds the leaves only (row 0: internal nodes), so a forest of deep trees stays small.
        self.register_buffer("feature", torch.zeros(trees, nodes, dtype=torch.int32))
        self.register_buffer("threshold", torch.zeros(trees, nodes, dtype=torch.float64))
        self.register_buffer("child", torch.full((trees, nodes, 2), -1, dtype=torch.int32))
        self.register_buffer("leaf_row", torch.zeros(trees, nodes, dtype=torch.int32))
        self.register_buffer("leaf", torch.zeros(leaves, n_classes, dtype=torch.float32))

    def _grid(self, bands: int, seed: int, threads: Optional[int]) -> List[Tuple[Dict[str, Any], Any]]:
        from sklearn.ensemble import RandomForestClassifier

        return [({"max_features": mf}, RandomForestClassifier(n_estimators=self.config["trees"], max_features=mf,
                                                              n_jobs=threads or 1, random_state=seed))
                for mf in ("sqrt", 0.3)]

    def _store(self, forest: Any) -> None:
        trees = [t.tree_ for t in forest.estimators_]
        nodes, depth = max(t.node_count for t in trees), max(t.max_depth for t in trees)
        n_classes, present = self.config["n_classes"], forest.classes_.astype(np.int64)
        feature = np.zeros((len(trees), nodes), np.int32)
        threshold = np.zeros((len(trees), nodes))
        children = np.full((len(trees), nodes, 2), -1, np.int32)
        leaf_row = np.zeros((len(trees), nodes), np.int32)
        leaves = [np.zeros((1, n_classes), np.float32)]
        following = 1
        for k, tree in enumerate(trees):
            n = tree.node_count
            feature[k, :n] = np.maximum(tree.feature, 0)
            threshold[k, :n] = tree.threshold
            children[k, :n, 0], children[k, :n, 1] = tree.children_left, tree.children_right
            is_leaf = np.flatnonzero(tree.children_left < 0)
            counts = tree.value[is_leaf, 0, :]
            table = np.zeros((len(is_leaf), n_classes), np.float32)
            table[:, present] = counts / np.maximum(counts.sum(1, keepdims=True), 1e-300)
            leaf_row[k, is_leaf] = np.arange(following, following + len(is_leaf))
            leaves.append(table)
            following += len(is_leaf)
        self.config.update(nodes=int(nodes), depth=int(depth), leaves=int(following))
        for name, array in (("feature", feature), ("threshold", threshold), ("child", children),
                            ("leaf_row", leaf_row), ("leaf", np.concatenate(leaves))):
            setattr(self, name, torch.from_numpy(array))

    def probabilities(self, z: Tensor) -> Tensor:
        n_trees, nodes = self.feature.shape
        offset = (torch.arange(n_trees, device=z.device) * nodes)[:, None]     # node k of tree t: t·nodes + k
        feature, threshold = self.feature.reshape(-1).long(), self.threshold.reshape(-1)
        left, right = self.child[..., 0].reshape(-1).long(), self.child[..., 1].reshape(-1).long()
        leaf_row = self.leaf_row.reshape(-1).long()
        out = []
        for chunk in z.split(_PIXELS_PER_CHUNK):
            spectra = chunk.float().double().t().contiguous()   # scikit-learn's trees compare float32 spectra
            node = torch.zeros(n_trees, len(chunk), dtype=torch.int64, device=z.device)   # with float64 thresholds
            for _ in range(int(self.config["depth"])):
                at = (node + offset).reshape(-1)
                value = spectra.gather(0, feature[at].view(n_trees, -1))           # (trees, pixels)
                step = torch.where(value <= threshold[at].view(n_trees, -1), left[at].view(n_trees, -1),
                                   right[at].view(n_trees, -1))
                node = torch.where(step >= 0, step, node)                           # leaves stay
            rows = leaf_row[(node + offset).reshape(-1)]
            out.append(self.leaf[rows].view(n_trees, len(chunk), -1).double().mean(0))
        return torch.cat(out) if out else z.new_zeros(0, self.config["n_classes"])


class SupportVectorMachine(_Classical):
    """RBF SVM (scikit-learn's SVC), C and γ chosen on validation from {1, 10, 100, 1000} × {1, 0.1, 10}/bands."""

    name = "svm"

    def __init__(self, in_bands: int, n_classes: int, C: float = 1.0, gamma: float = 0.0,
                 support: int = 1) -> None:
        super().__init__({"in_bands": in_bands, "n_classes": n_classes, "C": C, "gamma": gamma,
                          "support": support})
        pairs = n_classes * (n_classes - 1) // 2
        self.register_buffer("vectors", torch.zeros(support, in_bands, dtype=torch.float64))
        self.register_buffer("coef", torch.zeros(max(n_classes - 1, 1), support, dtype=torch.float64))
        self.register_buffer("owner", torch.zeros(support, dtype=torch.int64))     # class index of each vector
        self.register_buffer("intercept", torch.zeros(pairs, dtype=torch.float64))
        self.register_buffer("prob_a", torch.zeros(pairs, dtype=torch.float64))
        self.register_buffer("prob_b", torch.zeros(pairs, dtype=torch.float64))

    def _grid(self, bands: int, seed: int, threads: Optional[int]) -> List[Tuple[Dict[str, Any], Any]]:
        from sklearn.svm import SVC

        return [({"C": float(c), "gamma": factor / bands}, SVC(kernel="rbf", C=c, gamma=factor / bands))
                for c in (1, 10, 100, 1000) for factor in (1.0, 0.1, 10.0)]

    def _final(self, estimator: Any, settings: Dict[str, Any], z: np.ndarray, y: np.ndarray, seed: int,
               threads: Optional[int]) -> Any:
        """The chosen settings again, with libsvm's probability sigmoids (an internal cross-validation)."""
        from sklearn.svm import SVC

        return SVC(kernel="rbf", probability=True, random_state=seed, **settings).fit(z, y)

    def _store(self, svm: Any) -> None:
        n_classes = self.config["n_classes"]
        if len(svm.classes_) != n_classes:
            raise ValueError(f"the SVM saw {len(svm.classes_)} of the {n_classes} classes in training; "
                             "every class needs training pixels")
        owner = np.repeat(np.arange(n_classes), svm.n_support_)
        self.config.update(support=int(len(owner)))
        self.vectors = torch.from_numpy(np.asarray(svm.support_vectors_, np.float64))
        # libsvm's own signs: scikit-learn flips dual_coef_ and intercept_ of two-class models only
        self.coef = torch.from_numpy(np.asarray(svm._dual_coef_, np.float64))
        self.owner = torch.from_numpy(owner.astype(np.int64))
        self.intercept = torch.from_numpy(np.asarray(svm._intercept_, np.float64))
        self.prob_a = torch.from_numpy(np.asarray(svm.probA_, np.float64))
        self.prob_b = torch.from_numpy(np.asarray(svm.probB_, np.float64))

    def decision(self, z: Tensor) -> Tensor:
        """One-against-one decision values (N, pairs), pairs (0,1), (0,2), …, as scikit-learn's 'ovo'."""
        kernel = torch.exp(-self.config["gamma"] * torch.cdist(z, self.vectors).square())     # (N, S)
        n_classes, out = self.config["n_classes"], []
        for i in range(n_classes):
            for j in range(i + 1, n_classes):
                mine, theirs = self.owner == i, self.owner == j
                out.append(kernel[:, mine] @ self.coef[j - 1, mine] + kernel[:, theirs] @ self.coef[i, theirs])
        return torch.stack(out, 1) + self.intercept

    def probabilities(self, z: Tensor) -> Tensor:
        n_classes = self.config["n_classes"]
        if len(z) == 0:
            return z.new_zeros(0, n_classes)
        if len(z) > _PIXELS_PER_CHUNK:                    # the kernel matrix and pairwise tables per chunk
            return torch.cat([self.probabilities(chunk) for chunk in z.split(_PIXELS_PER_CHUNK)])
        f = self.decision(z) * self.prob_a + self.prob_b                               # libsvm's sigmoid_predict
        pairwise = torch.where(f >= 0, torch.exp(-f) / (1 + torch.exp(-f)), 1 / (1 + torch.exp(f)))
        pairwise = pairwise.clamp(_MIN_PROBABILITY, 1 - _MIN_PROBABILITY)
        r = z.new_zeros(len(z), n_classes, n_classes)                                  # r[i, j] = P(i | i or j)
        pair = 0
        for i in range(n_classes):
            for j in range(i + 1, n_classes):
                r[:, i, j], r[:, j, i] = pairwise[:, pair], 1 - pairwise[:, pair]
                pair += 1
        return _couple(r)


def _couple(r: Tensor) -> Tensor:
    """libsvm's ``multiclass_probability`` for every pixel at once: the p minimising Σ (r_ji p_i − r_ij p_j)²,
    by its fixed-point iteration, each pixel stopping where libsvm's would."""
    n, k = r.shape[:2]
    q = -r.transpose(1, 2) * r                                                         # Q[t, j] = −r_jt r_tj
    diagonal = (r.transpose(1, 2) ** 2).sum(2) - torch.diagonal(r, dim1=1, dim2=2) ** 2   # Σ_{j≠t} r_jt²
    q = q - torch.diag_embed(torch.diagonal(q, dim1=1, dim2=2)) + torch.diag_embed(diagonal)
    p = r.new_full((n, k), 1.0 / k)
    active = torch.ones(n, dtype=torch.bool, device=r.device)
    for _ in range(max(100, k)):
        qp = (q @ p[..., None])[..., 0]
        pqp = (p * qp).sum(1)
        active &= (qp - pqp[:, None]).abs().amax(1) >= 0.005 / k
        if not bool(active.any()):
            break
        for t in range(k):
            diff = torch.where(active, (-qp[:, t] + pqp) / q[:, t, t], torch.zeros_like(pqp))
            p[:, t] += diff
            pqp = (pqp + diff * (diff * q[:, t, t] + 2 * qp[:, t])) / (1 + diff) ** 2
            qp = (qp + diff[:, None] * q[:, t, :]) / (1 + diff)[:, None]
            p = p / (1 + diff)[:, None]
    return p
