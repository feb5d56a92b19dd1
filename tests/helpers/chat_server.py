"""An OpenAI-compatible /v1/chat/completions server on 127.0.0.1 for caption tests; its behaviour per request is picked
by the emotion named in the prompt (429 then success, 500 then success, 400 that echoes the auth header, slow, broken
JSON, empty caption). With `echo=True` every request succeeds with a caption that repeats its Authorization header and
`leak` (a model that echoes a key): what the secret scan before publishing must catch.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeChatServer:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1; behaviour per request picked by the emotion in the prompt."""

    def __init__(self, echo: bool = False, leak: str = ""):
        self.echo, self.leak = echo, leak
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                with outer.lock:
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    self.handle_chat()
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def handle_chat(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                content = body["messages"][0]["content"]
                prompt = next(p["text"] for p in content if p["type"] == "text")
                image_url = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
                emotion = next((e for e in ("amusement", "awe", "contentment", "excitement", "anger", "fear", "sadness", "disgust")
                                if f"emotion of {e}" in prompt), None)
                with outer.lock:
                    n = sum(r["emotion"] == emotion for r in outer.requests)
                    outer.requests.append({"emotion": emotion, "auth": self.headers.get("Authorization"),
                                           "path": self.path, "model": body["model"], "image_url": image_url,
                                           "max_tokens": body["max_tokens"]})
                if outer.echo:  # every request succeeds at once, repeating its auth header and `leak`
                    text = f"A {emotion or 'plain'} scene, auth {self.headers.get('Authorization')} {outer.leak}."
                    return self.reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
                if emotion == "awe" and n == 0:
                    return self.reply(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
                if emotion == "contentment" and n == 0:
                    return self.reply(500, {"error": {"message": "overloaded"}})
                if emotion == "anger":  # a server that echoes the auth header in its error: must be redacted
                    return self.reply(400, {"error": {"message": f"bad image (auth was {self.headers.get('Authorization')})"}})
                if emotion == "fear":
                    time.sleep(2.0)
                if emotion == "sadness":
                    time.sleep(0.2)
                if emotion == "excitement":  # a broken server: 200 with a body that is not JSON (nor UTF-8)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    body = b"\xff\xfe{oops"
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if emotion == "disgust":
                    return self.reply(200, {"choices": [{"message": {"role": "assistant", "content": "  **  **  "}}]})
                text = f'Caption: "A {emotion or "plain"} scene glows softly." Extra sentence.'
                self.reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})

            def reply(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, emotion):
        return sum(r["emotion"] == emotion for r in self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
