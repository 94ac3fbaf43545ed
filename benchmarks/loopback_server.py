"""A minimal OpenAI Chat Completions server on 127.0.0.1 for the `http` benchmark (asyncio, keep-alive).

tests/fake_llm_server.py uses a thread per connection; with 1,000 connections at once that is
1,000 threads fighting for one GIL, so its own delays would be measured as the client's. This
server holds each connection as a coroutine and runs in its own process, so the client's cost is
what the benchmark sees. It answers like the echo provider, after `--latency` seconds:
`[echo <model>] <first 200 chars of the last user message>`.

GET /stats returns {"connections", "requests", "max_in_flight"}.
Run: python benchmarks/loopback_server.py --latency 0.1   (prints the port on its first line)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

STATS = {"connections": 0, "requests": 0, "max_in_flight": 0, "errors": 0}
_in_flight = 0


def reply_for(body: dict) -> dict:
    model = str(body.get("model", ""))
    messages = body.get("messages") or []
    last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    text = f"[echo {model}] {last_user[:200]}"
    prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
    STATS["requests"] += 1
    return {"id": f"chatcmpl-{STATS['requests']}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(text) // 4 + 1,
                      "total_tokens": prompt + len(text) // 4 + 1}}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float) -> None:
    global _in_flight
    STATS["connections"] += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            if method == "GET" and path.endswith("/stats"):
                status, payload = 200, dict(STATS)
            elif method == "POST" and path.endswith("/chat/completions"):
                _in_flight += 1
                STATS["max_in_flight"] = max(STATS["max_in_flight"], _in_flight)
                try:
                    await asyncio.sleep(latency)
                    status, payload = 200, reply_for(json.loads(body or b"{}"))
                finally:
                    _in_flight -= 1
            else:
                STATS["errors"] += 1
                status, payload = 404, {"error": {"message": f"no route {path}", "type": "not_found"}}
            data = json.dumps(payload).encode()
            writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
                         f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n".encode() + data)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(latency: float) -> None:
    server = await asyncio.start_server(lambda r, w: handle(r, w, latency), "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.latency))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
