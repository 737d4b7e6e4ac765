"""LLM planner throughput against a loopback fake OpenAI-compatible server; prints JSON.

    python benchmarks/llm_planner.py            # 1,000 prompts, 200 ms server, default concurrency
    python benchmarks/llm_planner.py --transport both --prompts 1000
    python benchmarks/llm_planner.py screen          # recall of the offline screen on the dev set

Goals (issue 3): 1,000 prompts <= 15 s wall at the default concurrency (16); the same 1,000
again, fully cached, <= 1 s. The server runs in its own process so its CPU does not share
the planner's GIL; real litellm HTTP goes over 127.0.0.1 (nothing is mocked).

``run`` measures, in child processes so each transport starts cold:
- ``litellm_import_s``: the one-off import of litellm that the first cache miss pays;
- ``uncached_s``: ``LLMPlanner.plan_many`` over all prompts with an empty cache;
- ``litellm_only_s``: the same requests through bare ``litellm.acompletion``, for comparison;
- ``chunked_s``: the same through ``lcfix.batch.plan_records``, as ``lcfix plan FILE`` runs;
- ``cached_s``: a new planner over the same prompts (all cache hits, no HTTP);
- ``cached_fresh_process_s``: a fresh Python process doing only the cached run, import included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONTAINERS = [
    "tea cup",
    "beer stein",
    "champagne flute",
    "baby bottle",
    "paper cup",
    "teapot",
    "martini glass",
    "soup bowl",
    "cereal bowl",
    "wine glass",
]
DRINKS = [
    "iced coke",
    "espresso",
    "green tea",
    "red wine",
    "hot cocoa",
    "milk",
    "whiskey",
    "lemonade",
    "orange juice",
    "beer",
]
PROMPT_RE = re.compile(r"^a (.+?) of (.+?) on table \d+$")
DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "lcmis_dev.jsonl"

# Held out from the dev set: written for the known patterns, to see whether the screen
# generalises beyond what its knowledge base may have been tuned on.
HELD_OUT_RISK = [
    "A silver anklet in a toilet bowl", "Orange juice served in a gravy boat",
    "Hot soup in a champagne flute", "Coffee poured into a wine glass",
    "Ice cream served in a teapot", "Cereal in a martini glass",
    "A kangaroo standing in front of the Eiffel Tower", "A camel at Big Ben",
    "A koala in Times Square", "A flamingo on the Great Wall of China",
    "A penguin at the pyramids of Giza", "An elephant covered in zebra stripes",
    "A cat with turtle shell", "A dog covered in feathers",
    "Sushi served at a Bavarian beer hall", "Pizza in a Japanese tea house",
    "Croissants at the Taj Mahal", "A gold necklace inside a lunch box",
    "Diamond earrings in a fruit bowl", "A pearl bracelet in a sugar bowl",
    "Grapes growing on an oak tree", "Strawberries hanging from a palm tree",
    "A purple carrot on a plate", "An orange swan on a lake", "A teapot made of paper",
    "A bicycle made of bread", "Champagne in a soup bowl", "A wooden spoon made of glass",
    "A firefighter wearing a chef's uniform", "Milk served in a gravy boat",
]  # fmt: skip
HELD_OUT_SAFE = [
    "A cup of tea on a saucer", "A giraffe on the savanna", "Orange juice in a glass",
    "A cat sleeping on a sofa", "A plate of pasta", "Grapes on a vine",
    "A gold ring in a jewelry box", "A kangaroo in the outback",
    "Croissants in a Paris bakery", "A white swan on a lake",
]  # fmt: skip


def make_prompts(n: int) -> list[str]:
    return [f"a {CONTAINERS[i % 10]} of {DRINKS[(i // 10) % 10]} on table {i}" for i in range(n)]


# ---- the fake server ---------------------------------------------------------------------------


def fake_answer(body: bytes) -> str:
    """A valid plan for the benchmark's prompts: the container is fragile, the drink dominant."""
    try:
        messages = json.loads(body)["messages"]
        found = re.search(r"<prompt>(.*?)</prompt>", messages[1]["content"], flags=re.DOTALL)
        prompt = found.group(1) if found else ""
    except (ValueError, KeyError, IndexError, TypeError):
        prompt = ""
    m = PROMPT_RE.match(prompt)
    if not m:
        return json.dumps(
            {"at_risk": False, "pairs": [], "concepts": [], "stage1_end": None, "natural": None}
        )
    fragile, dominant = m.groups()
    return json.dumps(
        {
            "at_risk": True,
            "pairs": [
                {
                    "fragile": fragile,
                    "dominant": dominant,
                    "latent": "glass",
                    "pattern": "beverage-container",
                    "severity": 4,
                    "rationale": "the drink's usual container wins",
                }
            ],
            "concepts": [{"name": fragile, "description": f"a clearly visible {fragile}"}],
            "stage1_end": 0.25,
            "natural": None,
        }
    )


async def serve(port: int, delay: float, mode: str = "ok") -> None:
    """``mode``: ok (valid plans), 500 (every request fails), garbage (200 with non-JSON),
    hang (never answers)."""
    served = in_flight = peak = connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served, in_flight, peak, connections
        connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                size = int(headers.get("content-length", "0"))
                body = await reader.readexactly(size) if size else b""
                if line.startswith(b"GET /stats"):
                    out = json.dumps(
                        {"served": served, "peak_in_flight": peak, "connections": connections}
                    ).encode()
                elif mode == "hang":
                    await asyncio.sleep(3600)
                    break
                elif mode == "500":
                    served += 1
                    out = b'{"error": {"message": "internal error"}}'
                    writer.write(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(out), out)
                    )
                    await writer.drain()
                    continue
                else:
                    in_flight += 1
                    peak = max(peak, in_flight)
                    await asyncio.sleep(delay)
                    in_flight -= 1
                    served += 1
                    content = "<html>oops</html>" if mode == "garbage" else fake_answer(body)
                    out = json.dumps(
                        {
                            "id": f"c{served}",
                            "object": "chat.completion",
                            "created": 1,
                            "model": "fake",
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content},
                                }
                            ],
                            "usage": {
                                "prompt_tokens": 1200,
                                "completion_tokens": 90,
                                "total_tokens": 1290,
                            },
                        }
                    ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(out), out)
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=2048)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def start_server(delay: float, mode: str = "ok") -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", "--delay", str(delay), "--mode", mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def served(port: int) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return int(json.load(r)["served"])


# ---- one measurement (child process) -----------------------------------------------------------


def measure(port: int, n: int, concurrency: int | None, cache_dir: str) -> dict[str, Any]:
    from lcfix.batch import plan_records
    from lcfix.inputs import PromptRecord
    from lcfix.llm_planner import LLMPlanner
    from lcfix.plans import Plan

    base = f"http://127.0.0.1:{port}/v1"
    prompts = make_prompts(n)
    kw: dict[str, Any] = {"api_base": base, "api_key": "fake-bench"}
    if concurrency is not None:
        kw["concurrency"] = concurrency

    def summary(results: list[Any]) -> dict[str, int]:
        plans = [r for r in results if isinstance(r, Plan)]
        return {
            "plans": len(plans),
            "errors": len(results) - len(plans),
            "llm": sum(p.planner.name == "llm" and not p.planner.cached for p in plans),
            "cached": sum(p.planner.cached for p in plans),
            "fallbacks": sum(p.planner.fallback is not None for p in plans),
            "total_tokens": sum(p.planner.usage.total_tokens for p in plans if p.planner.usage),
        }

    planner = LLMPlanner("openai/fake-planner", cache=f"{cache_dir}/a.sqlite3", **kw)
    t = time.perf_counter()
    planner._get_client()  # imports litellm: seconds, paid once per process by the first miss
    import_s = time.perf_counter() - t
    load_before = os.getloadavg()[0]
    before = served(port)
    t = time.perf_counter()
    first = planner.plan_many(prompts)
    uncached = time.perf_counter() - t
    requests = served(port) - before
    planner.close()

    chunked_planner = LLMPlanner("openai/fake-planner", cache=f"{cache_dir}/b.sqlite3", **kw)
    t = time.perf_counter()
    chunked: list[Any] = []
    records = [PromptRecord(i, p, i, "bench") for i, p in enumerate(prompts, start=1)]
    # exactly what `lcfix plan FILE` does: lcfix.batch feeds the planner in chunks
    plan_records(records, chunked_planner, lambda _rec, res: chunked.append(res))
    chunked_s = time.perf_counter() - t
    chunked_planner.close()

    floor_s = litellm_floor(planner, prompts, port)

    again = LLMPlanner("openai/fake-planner", cache=f"{cache_dir}/a.sqlite3", **kw)
    before = served(port)
    t = time.perf_counter()
    second = again.plan_many(prompts)
    cached = time.perf_counter() - t
    cached_requests = served(port) - before
    return {
        "concurrency": again.concurrency,
        "loadavg_1min_before": round(load_before, 2),
        "litellm_import_s": round(import_s, 3),
        "uncached_s": round(uncached, 3),
        "uncached_with_import_s": round(uncached + import_s, 3),
        "uncached_requests": requests,
        "uncached": summary(first),
        "litellm_only_s": round(floor_s, 3),
        "chunked_s": round(chunked_s, 3),
        "chunked": summary(chunked),
        "cached_s": round(cached, 3),
        "cached_requests": cached_requests,
        "cached": summary(second),
    }


def litellm_floor(planner: Any, prompts: list[str], port: int) -> float:
    """The same requests through bare ``litellm.acompletion`` at the same concurrency: what
    litellm alone costs, without lcfix's retries, checks, composition or cache."""
    import litellm

    _, rf = planner._get_client()
    base = f"http://127.0.0.1:{port}/v1"

    async def go() -> None:
        gate = asyncio.Semaphore(planner.concurrency)

        async def one(prompt: str) -> None:
            async with gate:
                await litellm.acompletion(
                    model="openai/fake-planner",
                    api_base=base,
                    api_key="fake-bench",
                    messages=planner.template.messages(prompt),
                    response_format=rf,
                    max_retries=0,
                    timeout=30,
                )

        await asyncio.gather(*(one(p) for p in prompts))

    t = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - t


def cached_fresh(n: int, cache_dir: str, port: int) -> dict[str, Any]:
    t = time.perf_counter()
    from lcfix.llm_planner import LLMPlanner

    planner = LLMPlanner(
        "openai/fake-planner",
        f"http://127.0.0.1:{port}/v1",
        cache=f"{cache_dir}/a.sqlite3",
        api_key="fake-bench",
    )
    results = planner.plan_many(make_prompts(n))
    return {
        "cached_fresh_process_s": round(time.perf_counter() - t, 3),
        "cached_fresh_all_hits": all(
            getattr(r, "planner", None) and r.planner.cached for r in results
        ),
        "litellm_imported": "litellm" in sys.modules,
    }


def child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    proc, port = start_server(args.delay)
    try:
        report: dict[str, Any] = {
            "prompts": args.prompts,
            "server_delay_s": args.delay,
            "cpus": os.cpu_count(),
            "goal_uncached_s": 15.0,
            "goal_cached_s": 1.0,
            "runs": {},
        }
        transports = ["aiohttp", "httpx"] if args.transport == "both" else [args.transport]
        for transport in transports:
            with tempfile.TemporaryDirectory() as cache_dir:
                env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
                env.pop("DISABLE_AIOHTTP_TRANSPORT", None)
                if transport == "httpx":
                    env["DISABLE_AIOHTTP_TRANSPORT"] = "True"
                extra = ["--concurrency", str(args.concurrency)] if args.concurrency else []
                where = ["--port", str(port), "--prompts", str(args.prompts)]
                where += ["--cache-dir", cache_dir]
                res = child(["measure", *where, *extra], env)
                res.update(child(["fresh", *where], env))
                report["runs"][transport] = res
        return report
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---- broken endpoints --------------------------------------------------------------------------


def faults(args: argparse.Namespace) -> dict[str, Any]:
    """Every prompt still gets a plan, in bounded time, when the endpoint is down, answers
    500, answers garbage, or hangs (each request then waits ``--timeout``)."""
    import socket

    from lcfix.llm_planner import LLMPlanner
    from lcfix.offline import OfflinePlanner
    from lcfix.plans import Plan

    prompts = make_prompts(args.prompts)
    out: dict[str, Any] = {"prompts": args.prompts, "timeout_s": args.timeout}
    for mode in ("down", "500", "garbage", "hang"):
        proc = None
        if mode == "down":
            with socket.socket() as sock:  # a port nobody listens on
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        else:
            proc, port = start_server(0.2, mode)
        try:
            planner = LLMPlanner(
                "openai/fake-planner",
                f"http://127.0.0.1:{port}/v1",
                fallback=OfflinePlanner(embeddings=False),
                cache=False,
                timeout=args.timeout,
                api_key="fake-bench",
            )
            planner._get_client()  # litellm's import is not the endpoint's fault
            t = time.perf_counter()
            results = planner.plan_many(prompts)
            seconds = time.perf_counter() - t
            requests = None if proc is None or mode == "hang" else served(port)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)
        plans = [r for r in results if isinstance(r, Plan)]
        reasons = sorted({(p.planner.fallback or "")[:90] for p in plans})
        out[mode] = {
            "seconds": round(seconds, 2),
            "plans": len(plans),
            "with_fallback": sum(p.planner.fallback is not None for p in plans),
            "requests_served": requests,
            "reasons": reasons[:4],
        }
    return out


# ---- screening recall ----------------------------------------------------------------------------


def screen(args: argparse.Namespace) -> dict[str, Any]:
    """How many truly at-risk dev prompts the offline planner flags (the screen's recall),
    and how many LLM calls screening would save."""
    from lcfix.offline import OfflinePlanner  # type: ignore[import-not-found,unused-ignore]

    rows = [json.loads(line) for line in Path(args.dev).read_text().splitlines() if line.strip()]
    held = [{"prompt": p, "at_risk": True} for p in HELD_OUT_RISK]
    held += [{"prompt": p, "at_risk": False} for p in HELD_OUT_SAFE]
    out: dict[str, Any] = {"dev": str(args.dev), "min_recall": 0.95}
    for embeddings in (False, True):
        try:
            planner = OfflinePlanner(embeddings=embeddings)
            planner.plan("warm up")
        except Exception as exc:  # the embeddings extra may be missing
            out[f"embeddings={embeddings}"] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[f"embeddings={embeddings}"] = {
            "dev": _recall(planner, rows),
            "held_out": _recall(planner, held),
        }
    return out


def _recall(planner: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    t = time.perf_counter()
    flagged = [planner.plan(r["prompt"]).at_risk for r in rows]
    seconds = time.perf_counter() - t
    pos = [f for f, r in zip(flagged, rows, strict=True) if r["at_risk"]]
    neg = [f for f, r in zip(flagged, rows, strict=True) if not r["at_risk"]]
    recall = sum(pos) / len(pos)
    return {
        "prompts": len(rows),
        "at_risk": len(pos),
        "recall": round(recall, 4),
        "false_positive_rate": round(sum(neg) / len(neg), 4) if neg else None,
        "llm_calls_saved": round(1 - sum(flagged) / len(flagged), 4),
        "missed": [
            r["prompt"] for f, r in zip(flagged, rows, strict=True) if r["at_risk"] and not f
        ],
        "meets_goal": recall >= 0.95,
        "seconds": round(seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    p_run = sub.add_parser("run")
    for p in (parser, p_run):
        p.add_argument("--prompts", type=int, default=1000)
        p.add_argument("--delay", type=float, default=0.2)
        p.add_argument("--concurrency", type=int, default=None, help="default: the planner's")
        p.add_argument("--transport", choices=["aiohttp", "httpx", "both"], default="aiohttp")
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("--port", type=int, default=0)
    p_serve.add_argument("--delay", type=float, default=0.2)
    p_serve.add_argument("--mode", choices=["ok", "500", "garbage", "hang"], default="ok")
    p_faults = sub.add_parser("faults")
    p_faults.add_argument("--prompts", type=int, default=1000)
    p_faults.add_argument("--timeout", type=float, default=30.0)
    for name in ("measure", "fresh"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--prompts", type=int, default=1000)
        p.add_argument("--cache-dir", required=True)
        p.add_argument("--concurrency", type=int, default=None)
    p_screen = sub.add_parser("screen")
    p_screen.add_argument("--dev", default=str(DEV))
    args = parser.parse_args()
    if args.cmd == "serve":
        asyncio.run(serve(args.port, args.delay, args.mode))
        return
    if args.cmd == "measure":
        result = measure(args.port, args.prompts, args.concurrency, args.cache_dir)
    elif args.cmd == "fresh":
        result = cached_fresh(args.prompts, args.cache_dir, args.port)
    elif args.cmd == "screen":
        result = screen(args)
    elif args.cmd == "faults":
        result = faults(args)
    else:
        result = run(args)
    print(json.dumps(result, indent=None if args.cmd in ("measure", "fresh") else 2))


if __name__ == "__main__":
    main()
