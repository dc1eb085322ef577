#!/usr/bin/env python3
"""Protocol checks of a running `infer serve` (tests/infer/test-serve.sh protocol).

Usage: serve_protocol.py PORT. The server serves the model "tiny-kjv". Checks
OpenAI's response schema for completions and chat, whole and streamed (SSE
framing, one finish_reason, [DONE] last, usage chunk), log-probabilities,
/health, /v1/models, /metrics in Prometheus' text format, the 400s of bad
requests naming the field, 404s, and that a client leaving mid-stream frees
its sequence's blocks. Standard library only; every request has a timeout.
"""
import http.client
import json
import re
import socket
import sys
import time

PORT = int(sys.argv[1])
TIMEOUT = 30


def request(method, path, body=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    text = response.read().decode("utf-8")
    headers = dict(response.getheaders())
    conn.close()
    return response.status, text, headers


def post(path, body=None, raw=None):
    return request("POST", path, body, raw)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_error(status, path, body=None, raw=None, param=None, contains=None):
    got, text, _ = post(path, body, raw)
    check(got == status, f"{body or raw!r}: status {got}, wanted {status}: {text}")
    error = json.loads(text)["error"]
    check(set(error) == {"message", "type", "param", "code"}, f"error fields: {error}")
    if param is not None:
        check(error["param"] == param, f"{body or raw!r}: param {error['param']!r}, wanted {param!r}")
    if contains is not None:
        check(contains in error["message"], f"{body or raw!r}: message {error['message']!r}")
    return error


def metrics():
    status, text, headers = request("GET", "/metrics")
    check(status == 200 and headers["Content-Type"].startswith("text/plain"), "metrics status")
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            check(not line or re.match(r"# (HELP|TYPE) [a-z_:][a-z0-9_:]* ", line), f"metrics: {line}")
            continue
        match = re.fullmatch(r'([a-z_:][a-z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf|NaN)', line)
        check(match, f"not a Prometheus sample: {line!r}")
        values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


def sse_events(text):
    check(text.endswith("\n\n"), "SSE stream does not end with a blank line")
    events = text[:-2].split("\n\n")
    for event in events:
        check(event.startswith("data: "), f"SSE event without 'data: ': {event!r}")
    check(events[-1] == "data: [DONE]", f"last event {events[-1]!r}")
    return [json.loads(e[len("data: "):]) for e in events[:-1]]


def main():
    # /health, /v1/models
    status, text, _ = request("GET", "/health")
    check(status == 200 and json.loads(text)["status"] == "ok", f"health: {status} {text}")
    status, text, _ = request("GET", "/v1/models")
    models = json.loads(text)
    check(models["object"] == "list" and models["data"][0]["id"] == "tiny-kjv", f"models: {text}")

    # A whole completion with log-probabilities.
    status, text, _ = post("/v1/completions", {"model": "tiny-kjv", "prompt": "And God said",
                                               "max_tokens": 6, "temperature": 0, "logprobs": 2})
    check(status == 200, f"completion: {status} {text}")
    r = json.loads(text)
    check(r["object"] == "text_completion" and r["id"].startswith("cmpl-"), r)
    check(isinstance(r["created"], int) and r["model"] == "tiny-kjv", r)
    choice = r["choices"][0]
    check(choice["index"] == 0 and choice["finish_reason"] in ("stop", "length"), choice)
    lp = choice["logprobs"]
    check(len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) ==
          len(lp["text_offset"]) == r["usage"]["completion_tokens"], lp)
    check(all(x <= 0 for x in lp["token_logprobs"]), lp)
    check(all(len(t) <= 2 for t in lp["top_logprobs"]), lp)
    # Greedy: each chosen token is the likeliest one.
    for token, top in zip(lp["token_logprobs"], lp["top_logprobs"]):
        check(abs(token - max(top.values())) < 1e-4, (token, top))
    u = r["usage"]
    check(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["prompt_tokens"] > 0, u)

    # Chat, whole and streamed.
    chat = {"messages": [{"role": "system", "content": "You answer from the Bible."},
                         {"role": "user", "content": "Who made the light?"}],
            "max_tokens": 10, "seed": 5}
    status, text, _ = post("/v1/chat/completions", chat)
    check(status == 200, f"chat: {status} {text}")
    r = json.loads(text)
    check(r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-"), r)
    message = r["choices"][0]["message"]
    check(message["role"] == "assistant" and isinstance(message["content"], str), message)
    whole = message["content"]
    status, text, headers = post("/v1/chat/completions",
                                 dict(chat, stream=True, stream_options={"include_usage": True}))
    check(status == 200 and headers["Content-Type"].startswith("text/event-stream"), headers)
    chunks = sse_events(text)
    check(all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks),
          "chunk ids")
    check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", chunks[0])
    finishes = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    check(len(finishes) == 1, f"{len(finishes)} chunks carry a finish_reason")
    check(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0, chunks[-1])
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    check(streamed == whole, f"streamed {streamed!r} != whole {whole!r} (same seed)")

    # Bad requests: 400 naming the field.
    completions = "/v1/completions"
    expect_error(400, completions, raw="{not json", contains="JSON")
    expect_error(400, completions, raw="[1, 2]")
    expect_error(400, completions, {"prompt": 5}, param="prompt")
    expect_error(400, completions, {"prompt": ""}, param="prompt")
    expect_error(400, completions, {"max_tokens": 3}, param="prompt")
    expect_error(400, completions, {"prompt": "x", "max_tokens": -3}, param="max_tokens")
    expect_error(400, completions, {"prompt": "x", "max_tokens": 10**9}, param="max_tokens")
    expect_error(400, completions, {"prompt": "x", "max_tokens": "ten"}, param="max_tokens")
    expect_error(400, completions, {"prompt": "x", "temperature": 3}, param="temperature")
    expect_error(400, completions, {"prompt": "x", "top_p": 0}, param="top_p")
    expect_error(400, completions, {"prompt": "x", "n": 2}, param="n")
    expect_error(400, completions, {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, param="stop")
    expect_error(400, completions, {"prompt": "x", "frobnicate": 1}, param="frobnicate",
                 contains="Unrecognized request argument")
    expect_error(400, completions, {"prompt": "x", "max_tokens": 2000}, param="max_tokens",
                 contains="maximum context length is 1024")
    expect_error(400, completions, {"prompt": "x " * 1100, "max_tokens": 1}, param="prompt",
                 contains="maximum context length")
    expect_error(404, completions, {"prompt": "x", "model": "gpt-4"}, param="model")
    expect_error(400, "/v1/chat/completions", {"messages": []}, param="messages")
    expect_error(400, "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]})
    expect_error(400, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                               "tools": [{"type": "function"}]}, param="tools")
    status, text, _ = request("GET", "/v1/nothing")
    check(status == 404 and "error" in json.loads(text), f"404: {status} {text}")

    # A client that leaves mid-stream: its request is cancelled, its blocks freed. (Its
    # sequence is counted as cancelled, unless the tiny model sampled its end-of-text
    # before the server saw the client leave: then it finished as "stop".)
    # Sampled at temperature 1 the tiny model may end its text within two tokens:
    # that request finished before the client could leave, so it is asked again.
    for attempt in range(5):
        before = metrics()
        cancelled_before = before.get('turbine_requests_total{outcome="cancelled"}', 0)
        finished_before = sum(v for k, v in before.items()
                              if k.startswith("turbine_sequences_finished_total"))
        sock = socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT)
        body = json.dumps({"prompt": "And God said", "max_tokens": 1000, "stream": True,
                           "temperature": 1.0, "top_k": 0})
        sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                      f"Content-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        received = b""
        while received.count(b"data: ") < 3 and b"[DONE]" not in received:
            part = sock.recv(4096)
            check(part, "the stream ended before three events without [DONE]")
            received += part
        sock.close()
        if b"[DONE]" not in received:
            break
        check(attempt < 4, "5 streams in a row ended within two tokens")
    deadline = time.time() + 20
    while True:
        m = metrics()
        finished = sum(v for k, v in m.items() if k.startswith("turbine_sequences_finished_total"))
        if (m.get('turbine_requests_total{outcome="cancelled"}', 0) == cancelled_before + 1
                and finished == finished_before + 1
                and m["turbine_running_sequences"] == 0 and m["turbine_kv_blocks_used"] == 0):
            break
        check(time.time() < deadline, f"the disconnected stream was not cancelled: {m}")
        time.sleep(0.1)
    check(m.get('turbine_requests_total{outcome="cancelled"}', 0) >= 1, "no cancelled outcome")
    for name in ["turbine_queue_length", "turbine_kv_blocks_free", "turbine_prompt_tokens_total",
                 "turbine_generation_tokens_total", "turbine_generation_tokens_per_second",
                 "turbine_time_to_first_token_seconds_count",
                 "turbine_time_per_output_token_seconds_count", 'turbine_requests_total{outcome="ok"}',
                 'turbine_requests_total{outcome="bad_request"}']:
        check(name in m, f"/metrics lacks {name}")
    check(m['turbine_requests_total{outcome="bad_request"}'] >= 18, "bad requests not counted")
    print("protocol: ok")


if __name__ == "__main__":
    main()
