"""Offline hard-negative mining with the base encoder (the embedded default when no Anthropic key is set).

For a hard anchor of agent A, the negative is the confusing partner of A owning the example nearest to the anchor
(cosine on normalized embeddings), and that example becomes `negative_text`; the other anchors get a random
non-partner agent and a random example of it, so the hard share lands on the configured ratio.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from ..catalog import Catalog
from .triplets import (
    TripletSettings,
    agent_indices,
    draw_negatives,
    finish,
    hard_probability,
    pair_name,
    partner_matrix,
    random_example_of,
)

log = logging.getLogger(__name__)


def nearest_partner_examples(
    embeddings: np.ndarray, pos: np.ndarray, anchors: np.ndarray, partners: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """For each anchor row, (row index, cosine) of the most similar example whose agent is a partner of its agent."""
    best_row = np.full(len(anchors), -1, dtype=np.int64)
    best_sim = np.full(len(anchors), -np.inf, dtype=np.float32)
    for a in np.unique(pos[anchors]):
        cand = np.flatnonzero(partners[a][pos])
        mine = np.flatnonzero(pos[anchors] == a)
        if len(cand) == 0 or len(mine) == 0:
            continue
        cand_emb = embeddings[cand]
        for start in range(0, len(mine), chunk):
            sel = mine[start : start + chunk]
            sims = embeddings[anchors[sel]] @ cand_emb.T
            j = sims.argmax(axis=1)
            best_row[sel] = cand[j]
            best_sim[sel] = sims[np.arange(len(sel)), j]
    return best_row, best_sim


def mined_triplets(
    examples: pl.DataFrame,
    embeddings: np.ndarray,
    catalog: Catalog,
    settings: TripletSettings,
    rng: np.random.Generator,
) -> pl.DataFrame:
    if embeddings.shape[0] != examples.height:
        raise ValueError(f"{embeddings.shape[0]} embeddings for {examples.height} examples")
    emb = embeddings.astype(np.float32, copy=False)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.maximum(norms, 1e-12)
    agents = np.array(catalog.agent_types)
    partners = partner_matrix(catalog)
    pos = agent_indices(examples, catalog)
    has_partner = partners.any(axis=1)[pos]
    p_hard = hard_probability(np.tile(has_partner, settings.triplets_per_anchor), settings.hard_negative_ratio)
    texts = examples["input"]
    groups = examples["group_id"]
    rows = np.arange(examples.height)
    frames = []
    for _ in range(settings.triplets_per_anchor):
        hard = (rng.random(len(pos)) < p_hard) & has_partner
        neg = draw_negatives(pos, hard, partners, rng)
        neg_row = random_example_of(neg, pos, rng)
        sim = np.full(len(pos), np.nan, dtype=np.float32)
        hard_rows = np.flatnonzero(hard)
        best_row, best_sim = nearest_partner_examples(emb, pos, hard_rows, partners)
        neg_row[hard_rows] = best_row
        neg[hard_rows] = pos[best_row]
        sim[hard_rows] = best_sim
        easy = ~hard
        sim[easy] = np.einsum("ij,ij->i", emb[easy], emb[neg_row[easy]])
        pos_row = random_example_of(pos, pos, rng, exclude_row=rows)
        pairs = np.where(hard, [pair_name(a, b) for a, b in zip(agents[pos], agents[neg], strict=True)], None)
        frames.append(finish({
            "anchor": texts, "context": examples["context"], "positive": agents[pos], "negative": agents[neg],
            "is_hard": hard, "source": ["mined"] * len(pos), "pair": pairs.tolist(), "group_id": groups,
            "positive_text": texts.gather(pos_row), "positive_group_id": groups.gather(pos_row),
            "negative_text": texts.gather(neg_row), "negative_group_id": groups.gather(neg_row),
            "similarity": sim,
        }))
    out = pl.concat(frames)
    log.info("mined %d triplets (hard ratio %.3f)", out.height, float(out["is_hard"].mean() or 0))
    return out
