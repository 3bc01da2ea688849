"""Runs every notebook here against a live demo server, as CI does (`.ci/run`).

Usage: python notebooks/run_against_demo.py PATH/TO/nachtwacht

Starts `nachtwacht demo` on free loopback ports (web, QUIC and metrics, so another server on the
machine cannot stop it), reads its address and research token from its
output, executes each notebook with NACHTWACHT_URL and NACHTWACHT_TOKEN set, and stops the demo.
Exits non-zero when a notebook fails: a notebook that does not run is a broken example.
"""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import nbformat
from nbclient import NotebookClient


def start_demo(binary):
    demo = subprocess.Popen(
        [binary, "demo", "--exit-after", "900s", "--http-listen", "127.0.0.1:0",
         "--quic-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = token = None
    deadline = time.monotonic() + 600
    for line in demo.stdout:
        if m := re.search(r"Web:\s+(http://\S+?)/?$", line):
            url = m.group(1)
        if m := re.search(r"Research token \(project [^)]*\): (\S+)", line):
            token = m.group(1)
        if line.startswith("Ready in"):
            break
        if time.monotonic() > deadline:
            break
    if not (url and token):
        demo.kill()
        sys.exit("the demo did not print its address and research token")
    return demo, url, token


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/nachtwacht"
    demo, url, token = start_demo(binary)
    os.environ.update(NACHTWACHT_URL=url, NACHTWACHT_TOKEN=token)
    failed = []
    try:
        for path in sorted(pathlib.Path(__file__).parent.glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            try:
                NotebookClient(nb, timeout=300, kernel_name="python3").execute()
                print(f"notebook ok: {path.name}")
                if out := os.environ.get("NOTEBOOK_OUT"):
                    # Executed copies with their outputs, e.g. to look at after a CI run.
                    pathlib.Path(out).mkdir(parents=True, exist_ok=True)
                    nbformat.write(nb, pathlib.Path(out) / path.name)
            except Exception as e:  # report every notebook, then fail
                failed.append(path.name)
                print(f"notebook FAILED: {path.name}: {e}", file=sys.stderr)
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
    if failed:
        sys.exit(f"{len(failed)} notebook(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
