"""CSSMamba: clustering-guided spatial-spectral Mamba (MODELS.md §4).

Per stage, every pixel token u (2D wide) is softly assigned to one of K_tot = K·Ncls clusters by EMA
prototypes (``LearnableClustering``), scored by attention-driven token selection (``TokenSelector``) and
routed with its cluster into a short local Mamba (``partition`` + ``LocalBranch``). The local outputs are
scattered back, a global Mamba scans all pixels, and the result is fused with the spectral Mamba
(``ClusterSpatialMamba`` + ``SpectralMamba`` in ``CSSMambaStage``). Training groups from the static
prior (``cluster_prior``) only steer the EMA updates and the optional top-k / L_b paths; inference needs
no labels.

Shapes: images (B, C, H, W); tokens (B, L, C) in raster order, L = H·W; routed tokens are flattened
over the batch, token b·L + i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ssm.mamba import Mamba
from ..ssm.scan import BACKENDS
from .base import HSIClassifier, ModelOutput
from .blocks import GROUP_NORM_GROUPS, ClassifierHead, Embedding, RMSNorm, SoftmaxFusion, SpectralMamba
from .cluster_prior import static_cluster_prior

__all__ = [
    "CSSMamba",
    "CSSMambaStage",
    "ClusterSpatialMamba",
    "LearnableClustering",
    "LocalBranch",
    "Partition",
    "TokenSelector",
    "cluster_loss_la",
    "cluster_loss_lb",
    "hard_partition",
    "la_terms",
    "mode_pool2x2",
    "segment_softmax",
    "topk_partition",
]

CLUSTER_LOSSES = ("la", "lb", "none")
GATES = ("sigmoid", "prior", "attention")
PARTITIONS = ("hard", "topk")
# Order of the tokens inside a cluster's scan (hard partition): ascending score puts the most confident
# tokens last, next to the scan's output state (MODELS.md §4.5, the reference); descending puts them first,
# as the paper's summary describes ADTS (issue 13, lead 1: both measured, bench/results/).
TOKEN_ORDERS = ("ascending", "descending")
LOCAL_WEIGHTS = ("per_cluster", "shared")
MAX_CLUSTERS_PER_CLASS = 5
HEAD_WIDTH = 128
HEAD_KERNELS = (3, 5, 1)                      # the head's first conv: the reference's 3×3, 5×5 or 1×1


# --------------------------------------------------------------------------------------------------
# Learnable clustering (§4.3)
# --------------------------------------------------------------------------------------------------


class LearnableClustering(nn.Module):
    """LCM: cosine memberships to EMA prototypes M (K_tot, width), a persistent buffer without gradient.

    ``forward(u (B, L, width), groups=None)`` returns the membership logits cos(u, m)/τ (B, L, K_tot);
    P = softmax(logits). Ids no group has ever updated get −∞ (while none is updated yet, all ids
    stay open, so an untrained model still gives uniform P). In training mode with ``groups`` (B, L)
    (training group id, −1 elsewhere) the prototypes take one EMA step on the detached u.

    While ``deferring`` (the trainer sets it when one optimizer step runs several forwards: label
    windows, a memory grid), the EMA steps of ids already set are summed instead and taken once, by
    ``flush``, over every forward's pixels: one step per optimizer step, as for the whole scene in one
    forward, rather than one per window with only that window's pixels. An id seen for the first time
    is still set at once, since its mean must exist before tokens can be compared with it.
    """

    def __init__(self, width: int, n_clusters: int, tau: float = 1.0, momentum: float = 0.9) -> None:
        super().__init__()
        self.tau = tau
        self.momentum = momentum
        self.register_buffer("prototypes", torch.zeros(n_clusters, width))
        self.register_buffer("used", torch.zeros(n_clusters, dtype=torch.bool))
        self.deferring = False
        self._pending: Optional[Tuple[Tensor, Tensor]] = None   # summed (u, count) per id of deferred steps

    def forward(self, u: Tensor, groups: Optional[Tensor] = None) -> Tensor:
        learn = self.training and groups is not None
        if learn and not bool(self.used.any()):
            # First step: the means must exist before they can be compared with (§4.3 [design]).
            self.update(u, groups)
            learn = False
        logits = self.logits(u)
        if learn:
            self.update(u, groups)  # this step's u shapes the next step's prototypes
        return logits

    def logits(self, u: Tensor) -> Tensor:
        """cos(u, m)/τ with −∞ at ids never updated: (..., width) -> (..., K_tot), always in fp32.

        Routing in fp32 under autocast too: bf16 cosines sent 5–8 % of tokens to another cluster than
        the fp32 prediction path (issue 14), so a model would train on other clusters than it predicts with.
        """
        with torch.autocast(u.device.type, enabled=False):
            prototypes = F.normalize(self.prototypes.float(), dim=-1)  # a fresh tensor: later EMA steps are safe
            logits = F.normalize(u.float(), dim=-1) @ prototypes.T / self.tau
        if bool(self.used.any()):
            logits = logits.masked_fill(~self.used, float("-inf"))
        return logits

    @torch.no_grad()
    def update(self, u: Tensor, groups: Tensor) -> None:
        """m_c ← γ·m_c + (1−γ)·mean{u_i : g_i = c} for groups present in u; the first update sets the mean.

        u (..., width), groups (...) int64 with −1 for pixels outside the training set.
        """
        u = u.detach().reshape(-1, u.shape[-1]).to(self.prototypes.dtype)
        groups = groups.reshape(-1)
        member = groups >= 0
        ids = groups[member]
        counts = torch.bincount(ids, minlength=self.prototypes.shape[0])
        sums = torch.zeros_like(self.prototypes).index_add_(0, ids, u[member])
        present = counts > 0
        fresh = present & ~self.used
        if fresh.any():                                  # the first mean of an id sets it
            self.prototypes[fresh] = sums[fresh] / counts[fresh, None]
            self.used |= fresh
        seen = present & ~fresh
        if self.deferring:
            pending = self._pending or (torch.zeros_like(sums), torch.zeros_like(counts))
            self._pending = (pending[0] + torch.where(seen[:, None], sums, 0), pending[1] + torch.where(seen, counts, 0))
        elif seen.any():
            self._blend(seen, sums[seen] / counts[seen, None])

    @torch.no_grad()
    def flush(self) -> None:
        """Take the deferred EMA step: m_c ← γ·m_c + (1−γ)·mean of every deferred u of id c."""
        if self._pending is not None:
            sums, counts = self._pending
            self._pending = None
            seen = counts > 0
            if seen.any():
                self._blend(seen, sums[seen] / counts[seen, None])

    def _blend(self, ids: Tensor, means: Tensor) -> None:
        self.prototypes[ids] = self.momentum * self.prototypes[ids] + (1 - self.momentum) * means

    def extra_repr(self) -> str:
        k, width = self.prototypes.shape
        return f"clusters={k}, width={width}, tau={self.tau}, momentum={self.momentum}"


# --------------------------------------------------------------------------------------------------
# Token selection (§4.4) and partition (§4.5)
# --------------------------------------------------------------------------------------------------


def segment_softmax(values: Tensor, segment: Tensor, n_segments: int) -> Tensor:
    """Softmax of values (N,) within each segment id (N,) in [0, n_segments): sums to 1 per segment."""
    peak = torch.full((n_segments,), float("-inf"), dtype=values.dtype, device=values.device)
    peak = peak.scatter_reduce(0, segment, values.detach(), "amax")  # any per-segment shift is exact
    e = torch.exp(values - peak[segment])
    total = torch.zeros(n_segments, dtype=values.dtype, device=values.device).index_add(0, segment, e)
    return e / total[segment]


class TokenSelector(nn.Module):
    """ADTS: attention score a = ⟨W_q u, W_k u⟩/√(width/4) mixed with the prior score by a gate g.

    gate 'sigmoid': g = σ(α), α learnable from 0.5; 'prior': g ≡ 0 (no attention weights);
    'attention': g ≡ 1. Scores are softmax-normalised within each cluster (hard partition) or over
    all L tokens per cluster (top-k), so the scale w = n·s averages 1 per cluster.
    """

    def __init__(self, width: int, gate: str = "sigmoid", alpha0: float = 0.5) -> None:
        super().__init__()
        self.gate = gate
        self.scale = (width // 4) ** -0.5
        if gate != "prior":
            self.query = nn.Linear(width, width // 4)
            self.key = nn.Linear(width, width // 4)
        if gate == "sigmoid":
            self.alpha = nn.Parameter(torch.tensor(float(alpha0)))

    def gate_value(self) -> Union[Tensor, float]:
        """g: σ(α) for the learned gate, 0.0 or 1.0 for the fixed ones."""
        if self.gate == "sigmoid":
            return torch.sigmoid(self.alpha)
        return 0.0 if self.gate == "prior" else 1.0

    def attention(self, u: Tensor) -> Tensor:
        """(B, L, width) -> (B, L) attention score a."""
        return (self.query(u) * self.key(u)).sum(-1) * self.scale

    def cluster_scores(self, u: Tensor, prior: Tensor, segment: Tensor, n_segments: int) -> Tensor:
        """Hard-partition scores s (B, L): softmaxes within each segment (cluster, image) of ids (B, L).

        prior (B, L) is π_i = P_{i,c(i)}.
        """
        def within(values: Tensor) -> Tensor:
            return segment_softmax(values.reshape(-1), segment.reshape(-1), n_segments).view_as(values)

        if self.gate == "prior":
            return within(prior)
        attention = within(self.attention(u))
        if self.gate == "attention":
            return attention
        g = self.gate_value()
        return g * attention + (1 - g) * within(prior)

    def topk_scores(self, u: Tensor, memberships: Tensor) -> Tensor:
        """Top-k scores s (B, L, K_tot): s_ic = g·softmax_L(a)_i + (1−g)·softmax_L(P_·c)_i."""
        if self.gate == "prior":
            return memberships.softmax(dim=1)
        attention = self.attention(u).softmax(dim=1)[..., None]
        if self.gate == "attention":
            return attention.expand_as(memberships)
        g = self.gate_value()
        return g * attention + (1 - g) * memberships.softmax(dim=1)


@dataclass
class Partition:
    """Tokens routed to the local branches, flattened over the batch (token b·L + i).

    index (T,) int64: routed tokens in scan order, grouped by cluster, then image;
    cluster (T,) int64: the cluster each routed token goes to;
    reset (T,) bool: True at the first token of each (cluster, image) sequence;
    spans: (cluster, start, stop) of every non-empty cluster's slice of ``index``.
    """

    index: Tensor
    cluster: Tensor
    reset: Tensor
    spans: List[Tuple[int, int, int]]

    def gather(self, tokens: Tensor) -> Tensor:
        """(B, L, C) -> routed tokens (T, C)."""
        return tokens.reshape(-1, tokens.shape[-1]).index_select(0, self.index)

    def scatter(self, values: Tensor, batch: int, length: int) -> Tensor:
        """Routed outputs (T, C) -> (B, L, C): a token routed several times gets the sum, one routed
        nowhere gets 0."""
        out = values.new_zeros(batch * length, values.shape[-1]).index_add(0, self.index, values)
        return out.view(batch, length, -1)


def _spans(per_cluster: Tensor) -> List[Tuple[int, int, int]]:
    """(K,) routed-token counts -> (cluster, start, stop) for the non-empty clusters."""
    stops = torch.cumsum(per_cluster, 0).tolist()
    counts = per_cluster.tolist()
    return [(c, stop - n, stop) for c, (n, stop) in enumerate(zip(counts, stops)) if n > 0]


def hard_partition(
    assign: Tensor, n_clusters: int, score: Optional[Tensor] = None, keep_ratio: float = 1.0,
    routable: Optional[Tensor] = None, descending: bool = False,
) -> Partition:
    """§4.5 hard partition of assign (B, L) cluster ids into disjoint sets covering all routable tokens.

    Within a set the order is ascending score (B, L) (``descending``: highest first), ties in raster
    order; raster order when score is None. keep_ratio ρ < 1 keeps the ⌈ρ·n_c⌉ highest-scoring tokens of
    each (cluster, image), in that order. routable (B, L) bool: tokens to partition (None: all); the
    others (nodata) are routed nowhere.
    """
    b, length = assign.shape
    image = torch.arange(b, device=assign.device).repeat_interleave(length)
    key = assign.reshape(-1) * b + image  # segment id, cluster-major then image
    tokens = torch.arange(b * length, device=assign.device)
    if routable is not None:
        tokens = tokens[routable.reshape(-1)]
        key = key[tokens]
    if score is None:
        order = torch.argsort(key, stable=True)
    else:
        values = score.reshape(-1)[tokens]
        order = torch.argsort(-values if descending else values, stable=True)
        order = order[torch.argsort(key[order], stable=True)]
    n_segments = n_clusters * b
    counts = torch.bincount(key, minlength=n_segments)
    sorted_key = key[order]
    rank = torch.arange(order.numel(), device=order.device) - (torch.cumsum(counts, 0) - counts)[sorted_key]
    if keep_ratio < 1:
        kept = torch.ceil(counts.double() * keep_ratio - 1e-9).long()
        if descending:                                   # the best come first: keep the leading ranks
            keep = rank < kept[sorted_key]
        else:                                            # the best come last: keep the trailing ranks
            rank = rank - (counts - kept)[sorted_key]
            keep = rank >= 0
        order, sorted_key, rank, counts = order[keep], sorted_key[keep], rank[keep], kept
    return Partition(
        index=tokens[order],
        cluster=torch.div(sorted_key, b, rounding_mode="floor"),
        reset=rank == 0,
        spans=_spans(counts.view(n_clusters, b).sum(1)),
    )


def topk_partition(score: Tensor, k: List[int]) -> Partition:
    """§4.5 top-k option: cluster c takes the k[c] highest s (B, L, K_tot) of each image, in ascending
    raster order. A token may go to several clusters or to none."""
    b, length, n_clusters = score.shape
    offsets = torch.arange(b, device=score.device)[:, None] * length
    index, cluster, reset, counts = [], [], [], []
    for c in range(n_clusters):
        kc = min(k[c], length)
        picked = score[:, :, c].detach().topk(kc, dim=1).indices.sort(dim=1).values  # (B, kc)
        index.append((picked + offsets).reshape(-1))
        cluster.append(torch.full((b * kc,), c, dtype=torch.long, device=score.device))
        starts = torch.zeros(b, kc, dtype=torch.bool, device=score.device)
        starts[:, 0] = True
        reset.append(starts.reshape(-1))
        counts.append(b * kc)
    return Partition(
        index=torch.cat(index),
        cluster=torch.cat(cluster),
        reset=torch.cat(reset),
        spans=_spans(torch.tensor(counts)),
    )


# --------------------------------------------------------------------------------------------------
# Local and global branches (§4.6, §4.7)
# --------------------------------------------------------------------------------------------------


class LocalBranch(nn.Module):
    """V = Lin(Mamba(DWConv(U))): (1, T, width) -> (1, T, dim), one cluster's tokens in scan order.

    DWConv is causal and depthwise (kernel 4, no bias, no activation). With ``reset`` (1, T) the
    sequence holds several concatenated ones (images, or clusters when weights are shared); the conv
    and the Mamba both restart at each reset, so each comes out as if run alone.
    """

    KERNEL = 4

    def __init__(self, width: int, dim: int, scan_backend: Optional[str] = None) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, self.KERNEL, groups=width, padding=self.KERNEL - 1, bias=False)
        self.mamba = Mamba(width, scan_backend=scan_backend)
        self.proj = nn.Linear(width, dim)

    def forward(self, u: Tensor, reset: Optional[Tensor] = None) -> Tensor:
        return self.proj(self.mamba(self._causal_conv(u, reset), reset))

    def _causal_conv(self, u: Tensor, reset: Optional[Tensor]) -> Tensor:
        """Causal depthwise conv over (b, T, width); a tap reaching before its sequence start reads 0."""
        length = u.shape[1]
        if reset is None:
            return self.conv(u.transpose(1, 2))[..., :length].transpose(1, 2)
        w = self.conv.weight[:, 0]  # (width, K); w[:, K−1] multiplies the current token
        pos = torch.arange(length, device=u.device)
        start = torch.cummax(torch.where(reset, pos, 0), dim=1).values  # (b, T) own sequence start
        out = u * w[:, -1]
        for lag in range(1, min(self.KERNEL, length)):
            inside = (pos[lag:] - lag >= start[:, lag:]).unsqueeze(-1)  # (b, T − lag, 1)
            out = out + F.pad(u[:, :-lag] * inside, (0, 0, lag, 0)) * w[:, -1 - lag]
        return out


class ClusterSpatialMamba(nn.Module):
    """CSpaMamba (§4.1, §4.3–§4.7): clustered local scans + a global scan, (B, D, H, W) -> (B, D, H, W).

    ``forward(x, groups=None, static=None, data=None)`` -> (CSpa, cluster loss or None, hard assignment
    (B, H, W)). groups / static are the (B, H, W) guide maps; the loss is computed in training mode only.
    data (B, H, W) bool marks the tokens that hold data (None: all). Nodata tokens are routed to no local
    branch and left out of the cluster loss: on a mosaic with a nodata frame they would otherwise all
    join one cluster (they are identical) and fill its local scan — 92 % of one cluster's sequence on
    the EnMAP Potsdam mosaic. They still pass through the global scan, as in MambaHSI.
    """

    def __init__(
        self,
        dim: int,
        n_clusters: int,
        cluster_loss: str = "la",
        gate: str = "sigmoid",
        token_selection: bool = True,
        partition: str = "hard",
        keep_ratio: float = 1.0,
        local_weights: str = "per_cluster",
        tau: float = 1.0,
        ema_momentum: float = 0.9,
        scan_backend: Optional[str] = None,
        token_order: str = "ascending",
    ) -> None:
        super().__init__()
        width = 2 * dim
        self.token_order = token_order
        self.n_clusters = n_clusters
        self.cluster_loss = cluster_loss
        self.partition = partition
        self.keep_ratio = keep_ratio
        self.norm1 = RMSNorm(dim)
        self.lin_in = nn.Linear(dim, width)
        self.lcm = LearnableClustering(width, n_clusters, tau, ema_momentum)
        self.selector = TokenSelector(width, gate) if token_selection else None
        n_local = 1 if local_weights == "shared" else n_clusters
        self.local = nn.ModuleList(LocalBranch(width, dim, scan_backend) for _ in range(n_local))
        self.norm2 = RMSNorm(dim)
        self.lin_i = nn.Linear(dim, width)
        self.mamba_g = Mamba(width, scan_backend=scan_backend)
        self.lin_o = nn.Linear(width, dim)
        self.norm = nn.GroupNorm(GROUP_NORM_GROUPS, dim)
        if partition == "topk":
            # Static cluster sizes as a share of the guide's pixels, so inference (no guide) picks
            # k_c = ⌈ρ·share_c·L⌉ on a scene of any size.
            self.register_buffer("static_share", torch.full((n_clusters,), 1.0 / n_clusters, dtype=torch.float64))

    def forward(
        self, x: Tensor, groups: Optional[Tensor] = None, static: Optional[Tensor] = None,
        data: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        b, d, h, w = x.shape
        length = h * w
        routable = None if data is None or bool(data.all()) else data.reshape(b, length)
        tokens = x.flatten(2).transpose(1, 2)                       # F (B, L, D)
        u = self.lin_in(self.norm1(tokens))                          # (B, L, 2D)
        logits = self.lcm(u, None if groups is None else groups.reshape(b, length))
        memberships = logits.softmax(-1)                             # P (B, L, K_tot)
        assign = memberships.argmax(-1)                              # c(i) (B, L)

        if self.partition == "hard":
            part, weight = self._hard(u, memberships, assign, routable)
        else:
            part, weight = self._topk(u, memberships, static, routable)
        routed = part.gather(u)                                      # U (T, 2D)
        if weight is not None:
            routed = routed * weight[:, None]
        local = self._run_local(routed, part, b)                     # V (T, D)
        o = part.scatter(local, b, length) + tokens                  # O
        g = self.lin_o(self.mamba_g(self.lin_i(self.norm2(o)))) + tokens
        cspa = x + F.silu(self.norm(g.transpose(1, 2).reshape(b, d, h, w)))
        return cspa, self._loss(u, memberships, logits, static, routable), assign.view(b, h, w)

    def _hard(self, u: Tensor, memberships: Tensor, assign: Tensor,
              routable: Optional[Tensor] = None) -> Tuple[Partition, Optional[Tensor]]:
        """Hard partition, ADTS order and trainable scale w = n_c·s (None without token selection)."""
        if self.selector is None:
            return hard_partition(assign, self.n_clusters, None, self.keep_ratio, routable), None
        b, length = assign.shape
        # Nodata tokens form segments of their own (cluster id n_clusters), so they take no share
        # of a cluster's score softmax or size.
        routed_to = assign if routable is None else torch.where(routable, assign, self.n_clusters)
        segment = routed_to * b + torch.arange(b, device=assign.device)[:, None]
        n_segments = (self.n_clusters + 1) * b
        prior = memberships.gather(-1, assign[..., None]).squeeze(-1)      # π_i = P_{i,c(i)}
        score = self.selector.cluster_scores(u, prior, segment, n_segments)  # (B, L)
        size = torch.bincount(segment.reshape(-1), minlength=n_segments)
        scale = (size[segment] * score).reshape(-1)                          # w = n_c·s
        part = hard_partition(assign, self.n_clusters, score.detach(), self.keep_ratio, routable,
                              descending=self.token_order == "descending")
        return part, scale.index_select(0, part.index)

    def _topk(self, u: Tensor, memberships: Tensor, static: Optional[Tensor],
              routable: Optional[Tensor] = None) -> Tuple[Partition, Tensor]:
        """Top-k routing with k_c = max(1, ⌈ρ·N_c⌉) and scale w = L·s_ic; nodata tokens score 0, so
        they are picked last and, if picked, carry no weight."""
        b, length, _ = memberships.shape
        if self.training and static is not None:
            counts = torch.bincount(static[static >= 0].reshape(-1), minlength=self.n_clusters)
            self.static_share.copy_(counts.double() / static.numel())
        k = torch.ceil(self.keep_ratio * self.static_share * length - 1e-6).clamp(min=1).long().tolist()
        score = self.selector.topk_scores(u, memberships)                    # (B, L, K_tot)
        if routable is not None:
            score = score.masked_fill(~routable[..., None], 0.0)
        part = topk_partition(score, k)
        scale = score.reshape(b * length, -1)[part.index, part.cluster] * length
        return part, scale

    def _run_local(self, routed: Tensor, part: Partition, batch: int) -> Tensor:
        """Local branches over the routed tokens (T, 2D) -> (T, D), in the partition's order. No routed
        token at all (a window or tile entirely nodata) is a normal case: (0, D), and no branch runs."""
        if not part.spans:
            return routed.new_zeros(0, self.lin_i.in_features)
        if len(self.local) == 1:  # shared weights: every (cluster, image) sequence in one scan
            return self.local[0](routed[None], part.reset[None])[0]
        outputs = []
        for c, start, stop in part.spans:
            reset = part.reset[None, start:stop] if batch > 1 else None
            outputs.append(self.local[c](routed[None, start:stop], reset)[0])
        return torch.cat(outputs)

    def _loss(self, u: Tensor, memberships: Tensor, logits: Tensor, static: Optional[Tensor],
              routable: Optional[Tensor] = None) -> Optional[Tensor]:
        if not self.training or self.cluster_loss == "none":
            return None
        if self.cluster_loss == "la":
            return cluster_loss_la(u, memberships, routable)
        if static is None:
            raise ValueError("cluster_loss='lb' needs the static map: pass make_guide's guide to forward in training")
        return cluster_loss_lb(logits, static.reshape(logits.shape[:2]), self.lcm.used)


# --------------------------------------------------------------------------------------------------
# Cluster losses (§4.8)
# --------------------------------------------------------------------------------------------------


def la_terms(u: Tensor, memberships: Tensor, routable: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """L_a's compactness and separation per image (B,), from u (B, L, width) and P (B, L, K), over the
    routable (B, L) tokens only (None: all).

    Compactness (1/L)·Σ P_ic‖û_i − ĉ_c‖² is expanded as P_ic(‖û_i‖² − 2û_i·ĉ_c + ‖ĉ_c‖²), so no
    (L, K, width) tensor is built; separation is the mean cosine between distinct centroids ĉ.
    """
    # The expanded terms cancel to a small difference: sum them in at least fp32, even under autocast.
    dtype = torch.promote_types(u.dtype, torch.float32)
    with torch.autocast(u.device.type, enabled=False):
        unit = F.normalize(u.to(dtype), dim=-1)
        p = memberships.to(dtype)
        k = p.shape[2]
        if routable is None:
            length = p.shape[1]
        else:
            p = p * routable[..., None].to(dtype)
            length = routable.sum(1).clamp(min=1).to(dtype)
        mass = p.sum(1)                                         # Σ_i P_ic (B, K)
        weighted = p.transpose(1, 2) @ unit                     # Σ_i P_ic û_i (B, K, width)
        centroids = weighted / (mass[..., None] + 1e-8)         # ĉ
        compactness = (
            ((unit * unit).sum(-1) * p.sum(-1)).sum(1)
            - 2 * (centroids * weighted).sum((1, 2))
            + ((centroids * centroids).sum(-1) * mass).sum(1)
        ) / length
        if k < 2:
            return compactness, torch.zeros_like(compactness)
        unit_c = F.normalize(centroids, dim=-1)
        cosines = unit_c @ unit_c.transpose(1, 2)               # (B, K, K)
        off_diagonal = cosines.sum((1, 2)) - cosines.diagonal(dim1=1, dim2=2).sum(-1)
        return compactness, off_diagonal / (k * (k - 1))


def cluster_loss_la(u: Tensor, memberships: Tensor, routable: Optional[Tensor] = None) -> Tensor:
    """L_a = compactness + separation (``la_terms``), averaged over the images of the batch."""
    compactness, separation = la_terms(u, memberships, routable)
    return (compactness + separation).mean()


def cluster_loss_lb(logits: Tensor, static: Tensor, used: Tensor) -> Tensor:
    """L_b: CE of the LCM logits (B, L, K) against the static map (B, L); pixels whose static cluster is
    invalid (−1) or has no prototype yet are ignored."""
    target = static.clone()
    known = target >= 0
    target[known & ~used[target.clamp(min=0)]] = -1
    if not bool((target >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-1)


# --------------------------------------------------------------------------------------------------
# Stage and model
# --------------------------------------------------------------------------------------------------


class CSSMambaStage(nn.Module):
    """Y = X + w₀·CSpa(X) + w₁·SpeMamba(X), w = softmax(θ): (B, D, H, W) -> (B, D, H, W)."""

    def __init__(self, dim: int, n_clusters: int, scan_backend: Optional[str] = None, **cluster_options) -> None:
        super().__init__()
        self.spatial = ClusterSpatialMamba(dim, n_clusters, scan_backend=scan_backend, **cluster_options)
        self.spectral = SpectralMamba(dim, scan_backend=scan_backend)
        self.fusion = SoftmaxFusion()

    def forward(
        self, x: Tensor, groups: Optional[Tensor] = None, static: Optional[Tensor] = None,
        data: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        spa, loss, assign = self.spatial(x, groups, static, data)
        return self.fusion(x, spa, self.spectral(x)), loss, assign


def mode_pool2x2(maps: Tensor) -> Tensor:
    """2×2 mode pooling (floor) of id maps (B, C, H, W) int64: the most frequent id ≥ 0 of each block,
    ties to the smaller id, −1 where the block holds none. Ignoring −1 keeps sparse training pixels."""
    b, c, h, w = maps.shape
    h2, w2 = h // 2, w // 2
    blocks = maps[:, :, : 2 * h2, : 2 * w2].reshape(b, c, h2, 2, w2, 2)
    blocks = blocks.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h2, w2, 4)  # the 4 ids of each block last
    member = blocks >= 0
    votes = ((blocks[..., :, None] == blocks[..., None, :]) & member[..., None, :]).sum(-1)
    votes = torch.where(member, votes, 0)
    rank = votes * (int(maps.max()) + 2) - blocks  # more votes first, then the smaller id
    best = blocks.gather(-1, rank.argmax(-1, keepdim=True)).squeeze(-1)
    return torch.where(votes.amax(-1) > 0, best, -1)


def _choice(name: str, value: object, options: Tuple[object, ...]) -> None:
    """``value`` must be one of ``options`` and of their type (3.0 and True are not the int 3 and 1 here)."""
    if isinstance(value, bool) or not isinstance(value, type(options[0])) or value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class CSSMamba(HSIClassifier):
    """CSSMamba classifier: Embedding -> ``stages`` × CSSMambaStage -> Conv k×k head (``head_kernel``, 3×3 by
    default), (B, Nb, H, W) -> logits.

    Config (JSON-able, kept in ``self.config``; the §4.12 ablations are these flags):
    dim D (multiple of 4); stages; clusters_per_class K (1..5, K_tot = K·n_classes);
    cluster_loss 'la' | 'lb' | 'none' with cluster_loss_weight (0 also turns it off);
    gate 'sigmoid' (σ(α)) | 'prior' (g ≡ 0) | 'attention' (g ≡ 1), ignored without token_selection;
    token_selection (False: raster order inside clusters, w ≡ 1, no ADTS weights);
    partition 'hard' | 'topk'; keep_ratio ρ in (0, 1]; local_weights 'per_cluster' | 'shared';
    pooling (2×2 average pooling after every stage but the last, guide maps mode-pooled, logits
    upsampled bilinearly; off = full resolution as in §4.1); tau (LCM temperature); ema_momentum γ;
    scan_backend (passed to every Mamba); token_order 'ascending' | 'descending' (TOKEN_ORDERS);
    head_kernel 3 (the reference's Conv3×3, §4.1) | 1 (MambaHSI's Conv1×1: no spatial mixing after the stages) |
    5 (a 5×5 neighbourhood).
    """

    name = "cssmamba"

    def __init__(
        self,
        in_bands: int,
        n_classes: int,
        dim: int = 128,
        stages: int = 3,
        clusters_per_class: int = 3,
        cluster_loss: str = "la",
        cluster_loss_weight: float = 0.1,
        gate: str = "sigmoid",
        token_selection: bool = True,
        partition: str = "hard",
        keep_ratio: float = 1.0,
        local_weights: str = "per_cluster",
        pooling: bool = False,
        tau: float = 1.0,
        ema_momentum: float = 0.9,
        scan_backend: Optional[str] = None,
        token_order: str = "ascending",
        head_kernel: int = 3,
    ) -> None:
        super().__init__(dict(
            in_bands=in_bands, n_classes=n_classes, dim=dim, stages=stages, clusters_per_class=clusters_per_class,
            cluster_loss=cluster_loss, cluster_loss_weight=cluster_loss_weight, gate=gate,
            token_selection=token_selection, partition=partition, keep_ratio=keep_ratio,
            local_weights=local_weights, pooling=pooling, tau=tau, ema_momentum=ema_momentum,
            scan_backend=scan_backend, token_order=token_order, head_kernel=head_kernel,
        ))
        _positive_int("in_bands", in_bands)
        _positive_int("n_classes", n_classes)
        _positive_int("stages", stages)
        _positive_int("dim", dim)
        if dim % 4:
            raise ValueError(f"dim must be a multiple of 4 (GroupNorm and spectral groups of 4), got {dim}")
        _positive_int("clusters_per_class", clusters_per_class)
        if clusters_per_class > MAX_CLUSTERS_PER_CLASS:
            raise ValueError(f"clusters_per_class must be 1..{MAX_CLUSTERS_PER_CLASS}, got {clusters_per_class}")
        _choice("cluster_loss", cluster_loss, CLUSTER_LOSSES)
        _choice("gate", gate, GATES)
        _choice("partition", partition, PARTITIONS)
        _choice("local_weights", local_weights, LOCAL_WEIGHTS)
        for name, value in (("token_selection", token_selection), ("pooling", pooling)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        if not (isinstance(cluster_loss_weight, (int, float)) and 0 <= cluster_loss_weight < math.inf):
            raise ValueError(f"cluster_loss_weight must be a finite number >= 0, got {cluster_loss_weight!r}")
        if not (isinstance(keep_ratio, (int, float)) and 0 < keep_ratio <= 1):
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio!r}")
        if not (isinstance(tau, (int, float)) and tau > 0):
            raise ValueError(f"tau must be > 0, got {tau!r}")
        if not (isinstance(ema_momentum, (int, float)) and 0 <= ema_momentum < 1):
            raise ValueError(f"ema_momentum must be in [0, 1), got {ema_momentum!r}")
        if scan_backend is not None:
            _choice("scan_backend", scan_backend, BACKENDS)
        _choice("token_order", token_order, TOKEN_ORDERS)
        _choice("head_kernel", head_kernel, HEAD_KERNELS)
        if token_order != "ascending" and (partition != "hard" or not token_selection):
            raise ValueError("token_order orders the hard partition's clusters by the selector's scores; it needs "
                             "partition='hard' and token_selection=True (top-k keeps raster order)")
        if not token_selection and partition == "topk":
            raise ValueError("partition='topk' ranks tokens by the selector's scores; it needs token_selection=True")
        if not token_selection and keep_ratio < 1:
            raise ValueError("keep_ratio < 1 keeps the best-scored tokens; it needs token_selection=True")

        self.n_clusters = clusters_per_class * n_classes
        self.loss_weight = float(cluster_loss_weight) if cluster_loss != "none" else 0.0
        self.embed = Embedding(in_bands, dim)
        self.stages = nn.ModuleList(
            CSSMambaStage(
                dim, self.n_clusters, scan_backend=scan_backend,
                cluster_loss=cluster_loss if self.loss_weight > 0 else "none",
                gate=gate, token_selection=token_selection, partition=partition, keep_ratio=float(keep_ratio),
                local_weights=local_weights, tau=float(tau), ema_momentum=float(ema_momentum),
                token_order=token_order,
            )
            for _ in range(stages)
        )
        self.head = ClassifierHead(dim, n_classes, hidden=HEAD_WIDTH, kernel_size=head_kernel)

    def make_guide(self, raw: np.ndarray, train_labels: np.ndarray, valid: np.ndarray) -> Tensor:
        """(2, H, W) int64: [training groups (−1 off training pixels); static map (−1 at invalid pixels)]."""
        prior = static_cluster_prior(
            raw, train_labels, valid, self.config["n_classes"], self.config["clusters_per_class"]
        )
        return torch.from_numpy(np.stack([prior.groups, prior.static]))

    def forward(self, x: Tensor, guide: Optional[Tensor] = None, valid: Optional[Tensor] = None) -> ModelOutput:
        """x (B, Nb, H, W) -> logits, the cluster loss in training, the last stage's clusters. valid (B, H, W)
        bool: the pixels routed to the clusters; None: every pixel not all zero (apply_stretch's nodata). The
        trainer and predictor pass the raster's mask, since a valid pixel at the low limit of the stretch in
        every band is all zero too (3 pixels of the EnMAP mosaic)."""
        self._check_inputs(x, guide, valid)
        size = x.shape[-2:]
        data = (x.detach() != 0).any(1) if valid is None else valid
        x = self.embed(x)
        losses, assign = [], None
        for i, stage in enumerate(self.stages):
            groups, static = (None, None) if guide is None else (guide[:, 0], guide[:, 1])
            x, loss, assign = stage(x, groups, static, data)
            if loss is not None:
                losses.append(loss)
            if self.config["pooling"] and i < len(self.stages) - 1:
                x = F.avg_pool2d(x, 2)
                guide = None if guide is None else mode_pool2x2(guide)
                data = F.max_pool2d(data[:, None].float(), 2)[:, 0] > 0  # a pooled cell with any data has data
        logits = self.head(x)
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
            assign = F.interpolate(assign[:, None].float(), size=size, mode="nearest")[:, 0].long()
        aux = self.loss_weight * torch.stack(losses).mean() if losses else None
        return ModelOutput(logits=logits, aux_loss=aux, clusters=assign)

    def _check_inputs(self, x: Tensor, guide: Optional[Tensor], valid: Optional[Tensor]) -> None:
        bands = self.config["in_bands"]
        if x.dim() != 4 or x.shape[1] != bands:
            raise ValueError(f"CSSMamba expects images (batch, {bands}, rows, cols), got shape {tuple(x.shape)}")
        grid = (x.shape[0],) + tuple(x.shape[2:])
        if valid is not None and (valid.dtype != torch.bool or tuple(valid.shape) != grid or valid.device != x.device):
            raise ValueError(f"valid must be a bool mask (batch, rows, cols) = {grid} on the image's device "
                             f"({x.device}), got {valid.dtype} {tuple(valid.shape)} on {valid.device}")
        if self.config["pooling"]:
            least = 2 ** (len(self.stages) - 1)
            if min(x.shape[-2:]) < least:
                raise ValueError(
                    f"with pooling the image must be at least {least}×{least} pixels, got {tuple(x.shape[-2:])}"
                )
        if guide is None:
            return
        expected = (x.shape[0], 2, x.shape[2], x.shape[3])
        if tuple(guide.shape) != expected or guide.dtype != torch.int64:
            raise ValueError(
                f"guide must be int64 {expected} (make_guide's maps, cropped like the image), "
                f"got {guide.dtype} {tuple(guide.shape)}"
            )
        if bool((guide < -1).any()) or bool((guide >= self.n_clusters).any()):
            raise ValueError(
                f"guide ids must lie in -1..{self.n_clusters - 1} (clusters_per_class × n_classes); "
                "was it made by a model with another configuration?"
            )
