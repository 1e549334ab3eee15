"""`facetracker serve`: the exported web page over HTTP on this machine, for the browser's camera.

A page may open the camera only in a secure context, which `http://127.0.0.1` and `http://localhost`
are (a file:// page or a LAN address is not), so the server binds 127.0.0.1 unless told otherwise. It
serves the files of one folder and nothing else: a path with `..` or one that leads out of the folder
(a symbolic link) is refused, and folders are not listed.
"""

import functools
import http.server
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from facetracker.errors import FaceTrackerError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Python's mimetypes lacks .tflite and, on some systems, .wasm; a browser compiles wasm only as application/wasm.
MIME_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript",
              ".tflite": "application/octet-stream", ".json": "application/json", ".html": "text/html",
              ".css": "text/css", ".jsonl": "application/jsonl"}


class PageHandler(http.server.SimpleHTTPRequestHandler):
    """Static files of one folder; refuses `..`, paths out of the folder, and listings."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def send_head(self):  # noqa: ANN201 - the base class's contract (a file object or None)
        segments = unquote(urlsplit(self.path).path).replace("\\", "/").split("/")
        if ".." in segments:
            self.send_error(403, "paths with '..' are refused: only the page's folder is served")
            return None
        root = Path(self.directory).resolve()
        target = Path(self.translate_path(self.path)).resolve()
        if target != root and root not in target.parents:
            self.send_error(403, "outside the served folder")
            return None
        return super().send_head()

    def list_directory(self, path):  # noqa: ANN001, ANN201 - the base class's signature
        self.send_error(404, "folders are not listed")
        return None

    def end_headers(self) -> None:
        # A page exported again must not be mixed with cached files of the previous export.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log failed requests only: a page load makes a dozen."""
        if str(code).startswith(("4", "5")):
            super().log_request(code, size)


def make_server(folder: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> http.server.ThreadingHTTPServer:
    """An HTTP server for `folder`, bound to host:port (port 0: a free one); clear errors for the usual mistakes."""
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise FaceTrackerError(f"{folder} holds no index.html; write the page first with "
                               "facetracker export --format web (or pass the folder it wrote).")
    handler = functools.partial(PageHandler, directory=str(folder.resolve()))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as error:
        raise FaceTrackerError(f"cannot listen on {host}:{port} ({error.strerror}); pass another --port "
                               "(or stop the program using it).") from error


def serve(folder: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve `folder` until Ctrl+C, printing the address to open."""
    server = make_server(folder, host, port)
    bound_host, bound_port = server.server_address[:2]
    print(f"serving {folder} at http://{bound_host}:{bound_port}/ (Ctrl+C stops)", flush=True)
    if bound_host not in ("127.0.0.1", "::1"):
        print("note: browsers open the camera only on http://localhost or https; from another machine "
              "only image files work.", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
