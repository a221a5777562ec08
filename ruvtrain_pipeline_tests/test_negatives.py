"""Hard-negative providers: Claude through the real anthropic SDK against a local Messages API server, and the
offline miner on the real MiniLM encoder."""

from __future__ import annotations

from pathlib import Path

import anthropic
import numpy as np
import polars as pl
import pytest

from ruvtrain_pipeline.core.augment import AugmentSettings, augment_examples, load_augment_data
from ruvtrain_pipeline.core.negatives.claude import (
    ClaudeProviderError,
    ClaudeSettings,
    ResponseCache,
    claude_triplets,
    shingles,
)
from ruvtrain_pipeline.core.negatives.triplets import TripletSettings, partner_matrix, template_triplets, triplet_report
from ruvtrain_pipeline.core.templates import compile_templates, generate_base_examples

from .messages_api_server import ServerState, messages_api_server

KEY = "sk-ant-test-DO-NOT-LEAK-0123456789"
SETTINGS = ClaudeSettings(model="claude-sonnet-4-6", items_per_request=4, requests_per_pair=1)


def _client(url: str, *, timeout: float = 5.0, retries: int = 1) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=url, timeout=timeout, max_retries=retries)


def _key_absent(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            assert KEY not in p.read_text(errors="ignore"), p


def test_claude_structured_output_and_cache(tiny_catalog, tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    with messages_api_server() as (url, state):
        df, stats = claude_triplets(_client(url), tiny_catalog, SETTINGS, cache, [], set())
        assert stats.requests_sent == 10 and stats.cache_hits == 0
        assert df.height == 40 and stats.accepted == 40
        assert df["is_hard"].all() and (df["source"] == "claude").all()
        assert (df["positive"] != df["negative"]).all()
        for row in df.iter_rows(named=True):
            assert set(row["pair"].split("|")) == {row["positive"], row["negative"]}
        assert stats.input_tokens > 0 and stats.cost_usd > 0
        # the SDK really talked HTTP to us, with the key in its header, asking for a forced tool call
        first = state.requests[0]
        sent = first["headers"].get("x-api-key", "") + first["headers"].get("authorization", "")
        assert KEY in sent
        assert first["body"]["tool_choice"] == {"type": "tool", "name": "submit_requests"}
        again, stats2 = claude_triplets(_client(url), tiny_catalog, SETTINGS, cache, [], set())
        assert stats2.requests_sent == 0 and stats2.cache_hits == 10
        assert state.message_calls == 10
        assert again.equals(df)
    _key_absent(tmp_path / "cache")


def test_claude_failures_are_counted_not_fatal(tiny_catalog, tmp_path):
    script = ["429", "ok",          # pair 1: rate limited, retried, succeeds
              "500", "500",         # pair 2: 5xx twice -> dropped
              "garbage",            # pair 3: invalid JSON body
              "slow", "slow",       # pair 4: past the client timeout twice -> dropped
              "wrong_labels",       # pair 5: every item has a label outside the pair
              "truncated",          # pair 6: stop_reason max_tokens
              "no_tool"]            # pair 7: no tool call
    state = ServerState(script=script, slow_seconds=1.0)
    with messages_api_server(state) as (url, state):
        df, stats = claude_triplets(_client(url, timeout=0.4, retries=1), tiny_catalog, SETTINGS,
                                    ResponseCache(tmp_path / "c"), [], set())
    assert stats.failures == {"server_error": 1, "malformed": 2, "timeout": 1, "truncated": 1}
    assert stats.rejects == {"wrong_label": 4}
    assert stats.accepted == df.height == 4 * 4  # pair 1 + pairs 8-10
    assert stats.requests_sent == 10


def test_claude_everything_failing_says_so(tiny_catalog, tmp_path):
    with messages_api_server(ServerState(default="500")) as (url, _):
        with pytest.raises(ClaudeProviderError, match=r"all 10 Claude requests failed .*server_error.: 10"):
            claude_triplets(_client(url, retries=0), tiny_catalog, SETTINGS, ResponseCache(tmp_path / "c"), [], set())


def test_claude_rejects_duplicates_and_peer_copies(tiny_catalog, tmp_path):
    existing = ["ticket LOCAL-0: sort out the coder vs refactorer question in module m0.py"]
    peer = shingles("please sort out the coder vs refactorer question in module m1.py today")
    with messages_api_server() as (url, _):
        df, stats = claude_triplets(_client(url), tiny_catalog, SETTINGS, ResponseCache(tmp_path / "c"), existing, peer)
    assert stats.rejects["duplicate"] == 1
    assert stats.rejects["peer_copy"] >= 1
    assert not df["anchor"].is_in(existing).any()


def test_claude_message_batches(tiny_catalog, tmp_path):
    settings = ClaudeSettings(items_per_request=4, use_batches=True, batch_poll_seconds=0.0)
    cache = ResponseCache(tmp_path / "c")
    with messages_api_server() as (url, state):
        df, stats = claude_triplets(_client(url), tiny_catalog, settings, cache, [], set())
        assert len(stats.batch_ids) == 1 and stats.requests_sent == 10 and df.height == 40
        assert state.message_calls == 0 and any(r["path"] == "/v1/messages/batches" for r in state.requests)
        sync_df, sync_stats = claude_triplets(_client(url), tiny_catalog, SETTINGS, ResponseCache(tmp_path / "s"),
                                              [], set())
    assert stats.cost_usd == pytest.approx(sync_stats.cost_usd / 2, rel=0.02)
    _key_absent(tmp_path / "c")


def _tiny_examples(catalog, per_agent=6):
    ct = compile_templates(catalog)
    base = generate_base_examples(ct, per_agent, np.random.default_rng(0))
    data = load_augment_data(complexities=catalog.complexities)
    return augment_examples(base, ct, data, AugmentSettings(), np.random.default_rng(1)).examples


def test_template_triplets_hit_the_ratio(tiny_catalog):
    ex = _tiny_examples(tiny_catalog, 30)
    trip = template_triplets(ex, tiny_catalog, TripletSettings(0.48), np.random.default_rng(2))
    rep = triplet_report(trip, tiny_catalog, 0.48)
    assert abs(rep["hard_ratio"] - 0.48) < 0.05
    assert rep["positive_equals_negative"] == 0 and rep["unknown_labels"] == 0
    partners = partner_matrix(tiny_catalog)
    idx = {a: i for i, a in enumerate(tiny_catalog.agent_types)}
    for row in trip.iter_rows(named=True):
        assert partners[idx[row["positive"]], idx[row["negative"]]] == row["is_hard"]


def test_stored_similarity_is_rounded_so_cpu_float_noise_cannot_reach_disk():
    from ruvtrain_pipeline.core.negatives.triplets import SIMILARITY_DECIMALS, finish

    noisy = np.array([0.7123456, 0.7123457, np.nan, -0.0004999], dtype=np.float32)
    twin = np.nextafter(noisy, np.float32(1))  # the last-digit difference another CPU's SIMD path can give
    cols = {"anchor": ["a"] * 4, "positive": ["x"] * 4, "negative": ["y"] * 4, "is_hard": [True] * 4,
            "source": ["mined"] * 4, "group_id": ["g"] * 4}
    one = finish({**cols, "similarity": noisy})
    two = finish({**cols, "similarity": twin})
    assert one.equals(two) and one.schema["similarity"] == pl.Float32
    sims = one["similarity"].to_list()
    assert sims[0] == sims[1] == pytest.approx(0.712, abs=1e-6)
    assert np.isnan(sims[2])  # NaN stays NaN (rounding adds no value)
    assert sims[3] == pytest.approx(0.0, abs=1e-9)
    assert all(round(v, SIMILARITY_DECIMALS) == pytest.approx(v, abs=1e-7) for v in sims if not np.isnan(v))


@pytest.mark.slow
def test_mined_provider_on_real_minilm(tiny_catalog):
    from ruvtrain_pipeline.core.negatives.mined import mined_triplets
    from ruvtrain_pipeline.resources import BaseEncoder

    ex = _tiny_examples(tiny_catalog, 9)
    emb = BaseEncoder().encode(ex["input"].to_list())
    assert emb.shape == (ex.height, 384)
    trip = mined_triplets(ex, emb, tiny_catalog, TripletSettings(0.48), np.random.default_rng(3))
    rep = triplet_report(trip, tiny_catalog, 0.48)
    assert abs(rep["hard_ratio"] - 0.48) < 0.05 and rep["positive_equals_negative"] == 0
    agent_of = dict(zip(ex["input"], ex["agent_type"], strict=True))
    # the negative text is an example of the negative agent; the positive text one of the positive agent
    for row in trip.iter_rows(named=True):
        assert agent_of[row["negative_text"]] == row["negative"]
        assert agent_of[row["positive_text"]] == row["positive"] and row["positive_text"] != row["anchor"]
    # mining finds closer negatives than chance: hard similarity well above the random negatives' similarity
    hard = trip.filter(pl.col("is_hard"))["similarity"].mean()
    easy = trip.filter(~pl.col("is_hard"))["similarity"].mean()
    assert hard > easy + 0.1
    again = mined_triplets(ex, emb, tiny_catalog, TripletSettings(0.48), np.random.default_rng(3))
    assert again.equals(trip)
