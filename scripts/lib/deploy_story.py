#!/usr/bin/python3
"""The demo's story against a running compose stack (scripts/test-deploy.sh).

The stack's seed step deployed vision v1 to its agents, and its stand-in application calls Predict
on every agent. This then pushes v2 (the head fine-tuned) with a reference sample of its inputs,
waits for the server's v1 -> v2 patch, rolls v2 out in waves gated on the agents' telemetry, sends
a burst of Predict calls so that v2 has enough samples for a drift number, and rolls out a broken
v3 that the first wave's probation catches and the controller rolls back. Every claim is checked;
the first one that is false ends the story with an error.

Usage: deploy_story.py --ctl EDGEFLEETCTL --models DIR --sockets S1,S2,... [--timeout SECONDS]
                       [--metrics URL]
--sockets: every agent's inference socket (one per agent of the stack).
The admin API comes from the environment (EDGEFLEET_SERVER, EDGEFLEET_TOKEN).
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = "vision"
SPECS = ["--input", "image:1x3x32x32", "--output", "probs:1x10"]
WAVES = "34%,67%,100%"
# A small fleet on one shared host: gates decide on 10 inferences a side, p99 is one slow call.
GATES = ["--soak", "3s", "--min-devices", "1", "--on-failure", "rollback"]
INFERENCE_GATES = ["--min-inferences", "10", "--min-inference-devices", "1",
                   "--max-p99-ratio", "100", "--max-p50-ratio", "2", "--max-output-psi", "100"]
# Drift needs 1,000 samples of a feature, in the reference and in its window: a reference of this
# many images, and a burst of this many Predicts per agent.
REFERENCE_SAMPLES = 1200
BURST_PER_AGENT = 400


class StoryError(Exception):
    pass


def say(text):
    print(f"    {text}", flush=True)


class Story:
    def __init__(self, args):
        self.ctl_path, self.models, self.timeout = args.ctl, args.models, args.timeout
        self.sockets = [s for s in args.sockets.split(",") if s]
        self.agents, self.metrics_url = len(self.sockets), args.metrics

    def ctl(self, *argv):
        result = subprocess.run([self.ctl_path, "-o", "json", *argv], capture_output=True,
                                text=True, check=False)
        if result.returncode != 0:
            raise StoryError(f"edgefleetctl {' '.join(argv)}: {result.stderr.strip()}")
        return json.loads(result.stdout) if result.stdout.strip() else {}

    def until(self, what, probe):
        """Polls probe() until it returns something true; returns that."""
        deadline = time.monotonic() + self.timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise StoryError(f"timed out after {self.timeout}s waiting for {what}")
            time.sleep(1)  # polling the server, not ordering

    def counter(self, name, **labels):
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                if all(f'{k}="{v}"' in line for k, v in labels.items()):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def serving(self, version):
        """How many agents' local APIs serve the model at version."""
        count = 0
        for socket in self.sockets:
            try:
                models = self.ctl("agent", "models", "--socket", socket).get("models", [])
            except StoryError:
                continue
            count += any(m.get("modelName") == MODEL and m.get("version") == version
                         and m.get("state", "MODEL_STATE_SERVING") == "MODEL_STATE_SERVING"
                         for m in models)
        return count

    def rollout_end(self, name):
        def ended():
            state = self.ctl("rollout", "status", name)["state"].replace("ROLLOUT_STATE_", "")
            return state if state in ("SUCCEEDED", "ABORTED", "ROLLED_BACK") else None
        return self.until(f"rollout {name} to end", ended)

    def push(self, version, extra=()):
        path = os.path.join(self.models, f"{MODEL}_v{version}.onnx")
        pushed = self.ctl("model", "push", MODEL, path, "--version", version, *SPECS, *extra)
        say(f"pushed {MODEL} {version}: {int(pushed['sizeBytes'])} bytes")
        return int(pushed["sizeBytes"])

    def predict_burst(self, sample):
        def burst(socket):
            for _ in range(BURST_PER_AGENT):
                self.ctl("agent", "predict", "--socket", socket, "--model", MODEL,
                         "--input", f"image=@{sample}")
        with concurrent.futures.ThreadPoolExecutor(len(self.sockets)) as pool:
            list(pool.map(burst, self.sockets))

    def run(self):
        subprocess.run([sys.executable, os.path.join(SOURCE, "tests/models/make_demo_models.py"),
                        self.models], check=True, capture_output=True)
        sample = os.path.join(self.models, "image_sample.npy")
        # Inputs like the applications' (the sample image, a little noise), as v2's reference.
        rng = np.random.default_rng(7)
        image = np.load(sample)
        reference = os.path.join(self.models, "reference_v2.npy")
        noise = rng.normal(0, 0.05, (REFERENCE_SAMPLES, *image.shape[1:]))
        np.save(reference, np.clip(image + noise, 0, 1).astype(np.float32))

        self.until(f"{self.agents} agents serving {MODEL} 1 (the seed's deployment)",
                   lambda: self.serving("1") == self.agents)
        say(f"all {self.agents} agents serve {MODEL} 1, deployed by the stack's seed step")

        patches = self.counter("edgefleet_patches_computed_total", result="ready")
        size = self.push("2", ["--reference", reference])
        self.until("the server's v1 -> v2 patch",
                   lambda: self.counter("edgefleet_patches_computed_total", result="ready") > patches)
        full = self.counter("edgefleet_artifact_bytes_served_total", kind="full")
        patch = self.counter("edgefleet_artifact_bytes_served_total", kind="patch")
        self.ctl("rollout", "create", f"{MODEL}-v2", "--model", MODEL, "--version", "2",
                 "--waves", WAVES, *GATES, *INFERENCE_GATES)
        state = self.rollout_end(f"{MODEL}-v2")
        if state != "SUCCEEDED":
            raise StoryError(f"rollout {MODEL}-v2 ended {state}, not SUCCEEDED")
        self.until(f"every agent serving {MODEL} 2", lambda: self.serving("2") == self.agents)
        sent_full = self.counter("edgefleet_artifact_bytes_served_total", kind="full") - full
        sent_patch = self.counter("edgefleet_artifact_bytes_served_total", kind="patch") - patch
        if sent_full or not 0 < sent_patch < size:
            raise StoryError(f"v2 went out as {sent_patch:.0f} patch bytes and {sent_full:.0f} "
                             f"full-file bytes; expected patches only, less than one {size}-byte file")
        say(f"{MODEL}-v2 SUCCEEDED in waves {WAVES}; every agent serves v2, delivered as "
            f"{sent_patch / self.agents / 1e3:.1f} KB patches against a {size / 1e6:.1f} MB file")

        self.predict_burst(sample)
        say(f"sent {BURST_PER_AGENT} Predicts to each agent (drift needs 1,000 samples a feature)")

        self.push("3")
        self.ctl("rollout", "create", f"{MODEL}-v3", "--model", MODEL, "--version", "3",
                 "--waves", WAVES, *GATES)
        state = self.rollout_end(f"{MODEL}-v3")
        if state != "ROLLED_BACK":
            raise StoryError(f"rollout {MODEL}-v3 ended {state}, not ROLLED_BACK")
        status = self.ctl("rollout", "status", f"{MODEL}-v3")
        if any(int(w.get("targeted", 0)) for w in status["waves"][1:]):
            raise StoryError(f"{MODEL}-v3 targeted devices beyond its first wave")
        self.until(f"every agent serving {MODEL} 2 again", lambda: self.serving("2") == self.agents)
        say(f"{MODEL}-v3 (NaN on real images) was ROLLED_BACK by its first wave's probation; "
            "the later waves targeted nobody and every agent serves v2 again")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ctl", required=True, help="the edgefleetctl binary")
    parser.add_argument("--models", required=True, help="directory for the generated models")
    parser.add_argument("--sockets", required=True, help="the agents' inference sockets, comma-separated")
    parser.add_argument("--timeout", type=float, default=180, help="seconds for each wait")
    parser.add_argument("--metrics", default="http://127.0.0.1:7480/metrics")
    args = parser.parse_args()
    try:
        Story(args).run()
    except (StoryError, subprocess.CalledProcessError, OSError) as e:
        print(f"deploy story: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
