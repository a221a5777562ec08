"""Diagnostic probe for issue #6: 78 short generic requests (6 per agent type, no context) written with the
plain-forms experiment (benchmarks/RESULTS.md) to confirm that a plain "fix the <bug> in <place>" went to the
documenter. Not a held-out set: the experiment's templates were written for the same gap, so a router trained on them
is expected to do well here. Prints each miss and the count right, per agent type.

Usage: python benchmarks/plain_probe.py [--model data/trained_adapter]
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

PROBE = {
    "debugger": [
        "fix the crash on startup",
        "fix the off-by-one error in the pager",
        "resolve the import error in the worker",
        "fix the broken password reset link",
        "track down why the cron job silently stops",
        "fix the encoding bug in the csv export",
    ],
    "coder": [
        "add a dark mode toggle to the settings page",
        "implement CSV export for the orders table",
        "write a function that parses ISO durations",
        "build a CLI to sync files to S3",
        "add retry support to the http client",
        "create an endpoint that returns the user's invoices",
    ],
    "tester": [
        "write unit tests for the cart service",
        "add integration tests for the payment webhook",
        "increase test coverage of the parser",
        "set up end-to-end tests for signup",
        "add a regression test for the rounding bug",
        "mock the clock in the scheduler tests",
    ],
    "reviewer": [
        "review my pull request for the billing module",
        "look over this diff before I merge",
        "check this function for edge cases I missed",
        "give feedback on the new caching code",
        "review the error handling in the upload handler",
        "is this migration script safe to merge?",
    ],
    "refactorer": [
        "clean up the user controller",
        "split this 900-line file into modules",
        "remove the duplicated validation logic",
        "rename the confusing variables in the report builder",
        "convert the class components to hooks",
        "simplify the nested ifs in the pricing code",
    ],
    "optimizer": [
        "speed up the search query",
        "reduce memory usage of the importer",
        "make the dashboard load faster",
        "cut the docker image size",
        "the report endpoint takes 8 seconds, make it faster",
        "cache the expensive permissions lookup",
    ],
    "documenter": [
        "write a README for the cli",
        "document how to run the project locally",
        "add docstrings to the utils module",
        "write a migration guide for v3",
        "update the changelog for the release",
        "explain the deploy process in the wiki",
    ],
    "api-docs": [
        "document the REST endpoints in OpenAPI",
        "write the swagger spec for the orders API",
        "add request and response examples to the API reference",
        "generate API docs for the graphql schema",
        "document the error codes our API returns",
        "describe the webhook payloads for integrators",
    ],
    "architect": [
        "design the architecture for a multi-tenant SaaS",
        "should we use event sourcing for orders?",
        "choose between a monolith and microservices for the new product",
        "design the data model for subscriptions",
        "how should the services talk to each other?",
        "propose a caching layer for the platform",
    ],
    "security-architect": [
        "audit the login flow for vulnerabilities",
        "check the app for SQL injection",
        "set up secrets management for the services",
        "threat model the file upload feature",
        "review our JWT handling for security issues",
        "harden the nginx config",
    ],
    "devops": [
        "set up CI for the repo",
        "write a Dockerfile for the api",
        "deploy the app to kubernetes",
        "configure autoscaling for the workers",
        "add a staging environment",
        "set up log shipping to elasticsearch",
    ],
    "researcher": [
        "compare postgres and mongodb for our use case",
        "find out which charting libraries support SSR",
        "research how other teams handle feature flags",
        "what are the options for full-text search?",
        "investigate whether we can drop python 3.8",
        "look into alternatives to redux",
    ],
    "planner": [
        "break the checkout redesign into tasks",
        "plan the next sprint",
        "estimate how long the migration will take",
        "make a roadmap for the mobile app",
        "create a project plan for the launch",
        "prioritize the backlog for Q3",
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="data/trained_adapter", help="router folder (trained_adapter or production_router)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ruvtrain_pipeline.core.router import Router

    router = Router(Path(args.model))
    requests = [(agent, text) for agent, texts in PROBE.items() for text in texts]
    right: Counter = Counter()
    for (agent, text), route in zip(requests, router.route_many([(t, None) for _, t in requests]), strict=True):
        if route.agent_type == agent:
            right[agent] += 1
        else:
            print(f"{agent:18s} -> {route.agent_type:18s} {route.method:9s} {route.confidence:.2f} | {text}")
    print(
        f"{sum(right.values())} of {len(requests)} right; per agent type: "
        + ", ".join(f"{a} {right[a]}/{len(t)}" for a, t in PROBE.items())
    )


if __name__ == "__main__":
    main()
