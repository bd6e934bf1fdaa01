"""Downloads against an HTTP server on 127.0.0.1: retries, checksums, atomic writes."""

import gzip
import hashlib
from pathlib import Path

import pytest

from dnalm.download import download, fetch_source
from dnalm.errors import DownloadError
from dnalm.sources import Source

FASTA = b">c1\nACGTACGTAC\n>c2\nGGGCCC\n"


def _publish(server, name: str, data: bytes) -> str:
    (server.root / name).write_bytes(data)
    return server.url(name)


def test_plain_and_gzipped(http_server, tmp_path: Path) -> None:
    for name, data in (("g.fa", FASTA), ("g.fa.gz", gzip.compress(FASTA))):
        url = _publish(http_server, name, data)
        out = download(url, tmp_path / name, sha256=hashlib.sha256(data).hexdigest(),
                       md5=hashlib.md5(data).hexdigest(), retries=0)
        assert out.read_bytes() == data


def test_transient_failure_is_retried(http_server, tmp_path: Path) -> None:
    url = _publish(http_server, "flaky.fa", FASTA)
    http_server.fail_next["/flaky.fa"] = 2
    out = download(url, tmp_path / "flaky.fa", retries=3, backoff_seconds=0.01)
    assert out.read_bytes() == FASTA
    assert http_server.requests.count("/flaky.fa") == 3


def test_truncated_body_is_retried(http_server, tmp_path: Path) -> None:
    url = _publish(http_server, "cut.fa", FASTA * 100)
    http_server.truncate["/cut.fa"] = True
    out = download(url, tmp_path / "cut.fa", retries=2, backoff_seconds=0.01)
    assert out.read_bytes() == FASTA * 100


def test_checksum_mismatch_leaves_nothing(http_server, tmp_path: Path) -> None:
    url = _publish(http_server, "g.fa", FASTA)
    dest = tmp_path / "g.fa"
    with pytest.raises(DownloadError, match="sha256 checksum mismatch"):
        download(url, dest, sha256="0" * 64, retries=0)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [http_server.root]


def test_not_found_fails_at_once(http_server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(http_server.url("missing.fa"), tmp_path / "x", retries=5, backoff_seconds=5)
    assert http_server.requests == ["/missing.fa"]


def test_unreachable_after_retries(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="unreachable after 2 attempts"):
        download("http://127.0.0.1:9/g.fa", tmp_path / "x", retries=1, backoff_seconds=0.01,
                 timeout_seconds=2)
    assert not (tmp_path / "x").exists()


def test_ncbi_accession_lookup(http_server, tmp_path: Path, monkeypatch) -> None:
    folder = http_server.root / "GCF" / "000" / "001" / "405"
    asm = folder / "GCF_000001405.40_GRCh38.p14"
    asm.mkdir(parents=True)
    (asm / "GCF_000001405.40_GRCh38.p14_genomic.fna.gz").write_bytes(gzip.compress(FASTA))
    source = Source("ncbi", f"{http_server.url('GCF/000/001/405')}|GCF_000001405.40", "ncbi:x")
    out = fetch_source(source, tmp_path / "g.fna.gz", retries=0)
    assert gzip.decompress(out.read_bytes()) == FASTA


def test_ncbi_unknown_accession(http_server, tmp_path: Path) -> None:
    (http_server.root / "GCF").mkdir()
    source = Source("ncbi", f"{http_server.url('GCF')}|GCF_000009999.1", "ncbi:x")
    with pytest.raises(DownloadError, match=r"GCF_000009999\.1 not found"):
        fetch_source(source, tmp_path / "g", retries=0)
