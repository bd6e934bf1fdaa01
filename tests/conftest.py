"""Shared fixtures: tiny FASTA files and an HTTP server on 127.0.0.1 for download tests."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_FASTA = REPO / "data" / "demo_chr20_hnf4a" / "chr20_42000001_44000000.fa.gz"
LAMBDA_FASTA = REPO / "tests" / "data" / "lambda_virus.fa.gz"


def write_fasta(path: Path, records: dict[str, str], *, width: int = 60, gz: bool = False) -> Path:
    """Write ``records`` as FASTA (optionally gzipped) with the given line width."""
    lines = []
    for name, seq in records.items():
        lines.append(f">{name} test record")
        lines += [seq[i : i + width] for i in range(0, len(seq), width)] or [""]
    text = ("\n".join(lines) + "\n").encode()
    if gz:
        path.write_bytes(gzip.compress(text))
    else:
        path.write_bytes(text)
    return path


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class FileServer:
    """Serves a directory; ``fail_next[path] = n`` makes the next n GETs of path answer 503,
    ``truncate[path] = True`` cuts the body short on the first GET."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fail_next: dict[str, int] = {}
        self.truncate: dict[str, bool] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                server.requests.append(self.path)
                if server.fail_next.get(self.path, 0) > 0:
                    server.fail_next[self.path] -= 1
                    self.send_error(503, "try again")
                    return
                if server.truncate.pop(self.path, False):
                    body = (server.root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = FileServer(root)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


#: Test files that run the workflow for minutes, longest first. ``make test`` spreads files over
#: two pytest-xdist workers in collection order (``--dist loadfile --no-loadscope-reorder``);
#: starting the long ones first keeps one of them from being left alone at the end.
SLOW_FILES = ("test_slurm.py", "test_workflow_demo.py", "test_incremental.py",
              "test_workflow_long_context.py", "test_workflow_score.py", "test_readme.py",
              "test_s3.py", "test_workflow_genome.py", "test_profiles.py",
              "test_workflow_usage.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # stable: rest in order
