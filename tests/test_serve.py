"""Tests for facetracker.serve: `facetracker serve` binds 127.0.0.1, serves one folder only, stops on Ctrl+C."""

import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from web_browser import ENTRY_POINT

from facetracker.errors import FaceTrackerError
from facetracker.serve import make_server


@pytest.fixture
def page(tmp_path) -> Path:
    """A folder with a page (index.html and one file of each kind the page loads), beside a secret file."""
    (tmp_path / "secret.txt").write_text("not for the browser")
    folder = tmp_path / "web"
    (folder / "vendor").mkdir(parents=True)
    (folder / "index.html").write_text("<!doctype html><title>page</title>")
    for name in ("app.js", "model.json", "model.tflite", "vendor/runtime.wasm", "style.css"):
        (folder / name).write_bytes(b"{}")
    (folder / "outside").symlink_to(tmp_path / "secret.txt")
    return folder


@pytest.fixture
def server(page):
    """make_server on a free port, serving in a thread; yields (host, port)."""
    httpd = make_server(page, port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[:2]
    httpd.shutdown()
    httpd.server_close()


def raw_get(address: tuple[str, int], target: str) -> str:
    """Send `GET target` as written (no client normalises the path); the whole response as text."""
    with socket.create_connection(address, timeout=90) as connection:
        connection.sendall(f"GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("latin-1")


def test_binds_the_loopback_address_by_default(page):
    httpd = make_server(page, port=0)
    try:
        assert httpd.server_address[0] == "127.0.0.1"
    finally:
        httpd.server_close()


@pytest.mark.parametrize("target", ["/../secret.txt", "/%2e%2e/secret.txt", "/vendor/../../secret.txt",
                                    "/..%2fsecret.txt", "/outside"])
def test_refuses_paths_out_of_the_folder(target, server):
    response = raw_get(server, target)
    assert response.startswith("HTTP/1.0 403") and "not for the browser" not in response, response[:200]


def test_serves_the_page_with_the_right_types_and_no_listing(server):
    host, port = server
    expected = {"/": "text/html", "/app.js": "text/javascript", "/model.json": "application/json",
                "/model.tflite": "application/octet-stream", "/vendor/runtime.wasm": "application/wasm",
                "/style.css": "text/css"}
    for path, mime in expected.items():
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=90) as response:
            assert response.headers.get_content_type() == mime, path
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"http://{host}:{port}/vendor/", timeout=90)
    assert error.value.code == 404


def test_refuses_a_folder_without_a_page(tmp_path):
    with pytest.raises(FaceTrackerError, match="no index.html.*facetracker export --format web"):
        make_server(tmp_path, port=0)


def ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize("parent", ["a shell", "a parent ignoring SIGINT (a Jupyter kernel)"])
def test_serve_prints_the_url_and_stops_on_ctrl_c(page, parent):
    server = subprocess.Popen([str(ENTRY_POINT), "serve", str(page), "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=ignore_ctrl_c if "ignoring" in parent else None)
    try:
        line = server.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:"), line
        with urllib.request.urlopen(url, timeout=90) as response:
            assert b"<title>page</title>" in response.read()
        server.send_signal(signal.SIGINT)
        # Generous: once, with the 2 cores shared with a mutation run and swapping, 30 s passed.
        out, err = server.communicate(timeout=90)
    finally:
        server.kill()
    assert server.returncode == 0 and "stopped" in out, (out, err)
    assert "Traceback" not in err


@pytest.mark.slow
def test_serve_on_a_busy_port_is_one_line(page):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([str(ENTRY_POINT), "serve", str(page), "--port", str(port)], capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 2 and f"127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
