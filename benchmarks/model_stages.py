"""Throughput of the three model stages with the tiny random models, and of the openai caption backend on loopback.

Run: `PYTHONPATH=. python benchmarks/model_stages.py [--images 64] [--latency-ms 100]`. Prints images/s per stage as JSON.
Tiny-model numbers measure our code's overhead (batching, preprocessing, generation loop), not a real model's speed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("EMOCURATE_TINY_CACHE", tempfile.mkdtemp(prefix="emocurate-bench-"))


def photos(n: int):
    """Real photos from scikit-image, cycled to n, at their native sizes (about 512 px)."""
    from skimage import data

    names = ["astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "horse", "immunohistochemistry", "retina"]
    from PIL import Image

    base = []
    for name in names:
        try:
            base.append(Image.fromarray(getattr(data, name)()).convert("RGB"))
        except Exception:  # noqa: BLE001  some need pooch downloads; skip them
            continue
    return [base[i % len(base)] for i in range(n)]


def rate(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def chat_server(latency_s: float):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(latency_s)  # a model's think time
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "A bright scene."}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()

    from emocurate.stages.caption import load_captioner
    from emocurate.stages.caption.contract import CaptionConfig
    from emocurate.stages.classify import ClassifyConfig, load_classifier
    from emocurate.stages.clip_filter import ClipFilterConfig, load_scorer
    from emocurate.core.emotions import EMOTIONS

    n = args.images
    images = photos(n)
    emotions = [EMOTIONS[i % 8] for i in range(n)]
    out = {"images": n}
    classifier = load_classifier(ClassifyConfig(model="tiny:clip", device="cpu"), EMOTIONS)
    out["classify_clip_zeroshot_tiny"] = rate(lambda: classifier.predict(images), n)
    scorer = load_scorer(ClipFilterConfig(model="tiny:clip", device="cpu"))
    out["clipscore_tiny"] = rate(lambda: scorer.score(images, ["a bright scene with people"] * n), n)
    captioner = load_captioner(CaptionConfig(model="tiny:captioner", device="cpu", max_new_tokens=32))
    out["caption_transformers_tiny_32_tokens"] = rate(lambda: captioner.caption(images, emotions), n)
    server = chat_server(args.latency_ms / 1000)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    for concurrency in (1, 16, 64):
        remote = load_captioner(CaptionConfig(backend="openai", base_url=url, concurrency=concurrency))
        out[f"caption_openai_loopback_{args.latency_ms:g}ms_concurrency_{concurrency}"] = rate(
            lambda: remote.caption(images, emotions), n)
    server.shutdown()
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
