"""Robustness of the router: accuracy on an evaluation set under deterministic perturbations (typos, casing,
truncation, irrelevant context, no context) and edge-case inputs (empty, one word, 5,000 characters, non-English,
code only) that must route without an error and with a sensible confidence. Pure Python over a `Router`; the
evaluation_report asset writes the numbers."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .evaluate import EvalSet, score_routes
from .router import has_content, request_text

PERTURBATIONS = ("typos", "casing", "truncation", "irrelevant_context", "empty_context")
TYPO_RATE = 0.2  # share of eligible words (4+ letters) that get one typo; every text gets at least one
TRUNCATE_KEEP = 0.5  # share of the request's words kept (at least TRUNCATE_MIN_WORDS)
TRUNCATE_MIN_WORDS = 3
# Written for this module: small talk with nothing to say about the task.
IRRELEVANT_CONTEXT = (
    "Sorry for the slow reply, I was stuck in meetings most of the afternoon.",
    "Sending this from my phone while waiting for the bus.",
    "The office coffee machine is broken again, so forgive any grumpiness.",
    "My manager says hi and hopes the weather is better on your side.",
    "No rush on this one, I am off on holiday from Friday anyway.",
)
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _rng(seed: int, *parts: str) -> np.random.Generator:
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def _neighbour(ch: str, rng: np.random.Generator) -> str:
    low = ch.lower()
    for row in _KEYBOARD_ROWS:
        i = row.find(low)
        if i >= 0:
            options = [row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)]
            out = options[int(rng.integers(len(options)))]
            return out.upper() if ch.isupper() else out
    return ch


def _typo(word: str, rng: np.random.Generator) -> str:
    """One human-like slip inside a word: swap two neighbouring letters, drop one, double one, or hit a neighbouring
    key. The first letter is kept (people rarely mistype it)."""
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(4))
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    return word[:i] + _neighbour(word[i], rng) + word[i + 1 :]


def add_typos(text: str, seed: int, rate: float = TYPO_RATE) -> str:
    words = text.split(" ")
    eligible = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not eligible:
        return text
    rng = _rng(seed, "typos", text)
    chosen = [i for i in eligible if rng.random() < rate] or [eligible[int(rng.integers(len(eligible)))]]
    for i in chosen:
        words[i] = _typo(words[i], rng)
    return " ".join(words)


def truncate(text: str, keep: float = TRUNCATE_KEEP, min_words: int = TRUNCATE_MIN_WORDS) -> str:
    """The first `keep` of the words (a request cut off mid-sentence)."""
    words = text.split()
    n = max(min_words, math.ceil(keep * len(words)))
    return " ".join(words[:n])


def perturb(kind: str, inputs: Sequence[str], contexts: Sequence[str | None],
            seed: int = 0) -> tuple[list[str], list[str | None]]:
    """The set's requests and contexts under one perturbation; the same seed gives the same texts."""
    if kind == "typos":
        return [add_typos(t, seed) for t in inputs], [add_typos(c, seed) if c else c for c in contexts]
    if kind == "casing":
        return [t.upper() for t in inputs], [c.upper() if c else c for c in contexts]
    if kind == "truncation":
        return [truncate(t) for t in inputs], list(contexts)
    if kind == "irrelevant_context":
        out = []
        for t, c in zip(inputs, contexts, strict=True):
            noise = IRRELEVANT_CONTEXT[int(_rng(seed, "context", t).integers(len(IRRELEVANT_CONTEXT)))]
            out.append(f"{c.strip()} {noise}" if c and c.strip() else noise)
        return list(inputs), out
    if kind == "empty_context":
        return list(inputs), [None] * len(inputs)
    raise ValueError(f"unknown perturbation {kind!r}; use one of {PERTURBATIONS}")


def perturbation_scores(router: Any, eval_set: EvalSet, score_args: tuple, mode: str = "hybrid",
                        seed: int = 0) -> dict[str, dict]:
    """{"clean" | perturbation: metrics} on `eval_set`: the evaluation metrics over every row (and, for clean, the
    median confidence), plus how many texts the perturbation changed, agent-type accuracy on those rows alone, and
    the share of rows whose routed agent type differs from the clean route (flip rate)."""
    clean_texts, emb, views = router.embed_requests(list(zip(eval_set.inputs, eval_set.contexts, strict=True)))
    clean = router.route_embedded(clean_texts, emb, mode, views=views)
    clean_agents = [r.agent_type for r in clean]
    out = {"clean": _score(eval_set, clean, score_args)}
    out["clean"]["confidence_median"] = round(float(np.median([r.confidence for r in clean])), 4) if clean else 0.0
    for kind in PERTURBATIONS:
        inputs, contexts = perturb(kind, eval_set.inputs, eval_set.contexts, seed)
        texts, emb, views = router.embed_requests(list(zip(inputs, contexts, strict=True)))
        routes = router.route_embedded(texts, emb, mode, views=views)
        m = _score(eval_set, routes, score_args)
        changed = [i for i, (a, b) in enumerate(zip(texts, clean_texts, strict=True)) if a != b]
        agents = [r.agent_type for r in routes]
        m["changed"] = len(changed)
        m["agent_acc_changed"] = (round(sum(agents[i] == eval_set.agent_type[i] for i in changed) / len(changed), 4)
                                  if changed else None)
        m["agent_flip_rate"] = round(sum(a != b for a, b in zip(agents, clean_agents, strict=True)) / len(agents), 4)
        m["agent_acc_delta"] = round(m["agent_acc"] - out["clean"]["agent_acc"], 4)
        out[kind] = m
    return out


def _score(eval_set: EvalSet, routes: list, score_args: tuple) -> dict:
    full = score_routes(eval_set, [r.agent_type for r in routes], [r.model for r in routes], *score_args)
    keep = ("n", "agent_acc", "category_acc", "agent_macro_f1", "tier_acc", "under_tier_rate", "saving_vs_opus")
    return {k: full[k] for k in keep if k in full}


# ---------------------------------------------------------------- edge cases
@dataclass(frozen=True)
class EdgeCase:
    name: str
    request: str
    context: str | None
    # "no_content": nothing to route on (the router must decline: no agent, confidence 0);
    # "garbage": letters but no request (confidence must be below the median of real requests);
    # "input": an unusual but real request (any valid route)
    kind: str


def _long_request(chars: int = 5000) -> str:
    base = ("The nightly export job for the reporting database started failing after last week's deploy; it "
            "stops about halfway through with a timeout and leaves partial files in the bucket. Here is everything "
            "I have looked at so far, in order. ")
    return (base * (chars // len(base) + 1))[:chars]


EDGE_CASES = (
    EdgeCase("empty", "", None, "no_content"),
    EdgeCase("whitespace", " \n\t  ", None, "no_content"),
    EdgeCase("punctuation", "?!... ### --", None, "no_content"),
    EdgeCase("emoji_only", "\U0001f642\U0001f525\U0001f680", None, "no_content"),
    EdgeCase("keyboard_mash", "asdf qwer zxcv uiop", None, "garbage"),
    EdgeCase("greeting", "hello", None, "garbage"),
    EdgeCase("one_word", "refactor", None, "input"),
    EdgeCase("long_5000_chars", _long_request(), None, "input"),
    EdgeCase("german", "Bitte schreib Unit-Tests für die Funktion parse_date im Modul utils.", None, "input"),
    EdgeCase("spanish", "¿Por qué falla la conexión a la base de datos solo en producción?", None, "input"),
    EdgeCase("chinese", "请帮我修复登录页面的错误", None, "input"),
    EdgeCase("code_only", "def total(xs):\n    return sum(x for x in xs if x > 0)\n", None, "input"),
    EdgeCase("stack_trace_only", 'Traceback (most recent call last):\n  File "app.py", line 12, in <module>\n'
             "    user = users[request.args['id']]\nKeyError: 'id'", None, "input"),
    EdgeCase("long_context", "fix this", _long_request(), "input"),
)


def judge(case: EdgeCase, route: dict, labels: dict, reference_confidence: float) -> tuple[list[str], list[str]]:
    """(problems, warnings) of one edge-case route; sensible = neither. Problems (the route is invalid): a confidence
    that is not a finite number in [0, 1], an unknown agent type, category, tier or complexity, or a route for input
    with no content (it must be declined: no agent, confidence 0). Warning: garbage routed with a confidence at or
    above `reference_confidence` (the median confidence on real requests)."""
    problems, warnings = [], []
    conf = route.get("confidence")
    if not isinstance(conf, int | float) or isinstance(conf, bool) or not math.isfinite(conf) or not 0 <= conf <= 1:
        problems.append(f"confidence {conf!r} is not a finite number in [0, 1]")
        conf = None
    agent = route.get("agent_type")
    if agent is not None and agent not in labels["agent_types"]:
        problems.append(f"unknown agent type {agent!r}")
    elif agent is not None and route.get("agent") != labels["agent_category"][agent]:
        problems.append(f"category {route.get('agent')!r} is not the category of {agent}")
    if route.get("model") is not None and route["model"] not in labels["tiers"]:
        problems.append(f"unknown tier {route['model']!r}")
    if route.get("complexity") not in labels["complexities"]:
        problems.append(f"unknown complexity {route.get('complexity')!r}")
    if case.kind == "no_content" and (agent is not None or conf != 0):
        problems.append(f"no content to route on, but routed to {agent} with confidence {conf}")
    if case.kind == "garbage" and conf is not None and conf >= reference_confidence:
        warnings.append(f"confidence {conf} on garbage is not below the median on real requests "
                        f"({reference_confidence})")
    return problems, warnings


def edge_case_results(router: Any, reference_confidence: float, mode: str = "hybrid",
                      cases: Sequence[EdgeCase] = EDGE_CASES) -> list[dict]:
    """Route every edge case one at a time (an error in one is recorded, not raised) and judge it."""
    out = []
    for case in cases:
        row: dict[str, Any] = {"case": case.name, "kind": case.kind, "chars": len(case.request) + len(case.context or "")}
        try:
            route = router.route(case.request, case.context, mode=mode).as_dict()
        except Exception as exc:  # noqa: BLE001 - the point is to record any failure
            row |= {"error": f"{type(exc).__name__}: {exc}", "problems": [f"raised {type(exc).__name__}"],
                    "warnings": [], "sensible": False}
            out.append(row)
            continue
        text = request_text(case.request, case.context)
        sim = float((router.embed([text]) @ router.prototypes.T).max()) if has_content(text) else None
        problems, warnings = judge(case, route, router.labels, reference_confidence)
        row |= {k: route[k] for k in ("agent_type", "model", "confidence", "method")}
        row |= {"max_prototype_similarity": round(sim, 4) if sim is not None else None, "problems": problems,
                "warnings": warnings, "sensible": not problems and not warnings}
        out.append(row)
    return out
