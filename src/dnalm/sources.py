"""Resolve genome ``source`` strings from the sample sheet to download URLs or local paths.

Supported forms (documented in README.md, unit-tested against each provider's real URL layout):

``ucsc:<assembly>``
    ``https://hgdownload.soe.ucsc.edu/goldenPath/<assembly>/bigZips/<assembly>.fa.gz``
    (soft-masked, UCSC contig names such as ``chr1``).
``ensembl:<species>/<assembly>[@<release>][#<content>]``
    ``https://ftp.ensembl.org/pub/release-<release>/fasta/<species>/dna/<Species>.<assembly>.<dna>.<content>.fa.gz``;
    without a release, the ``current_fasta`` folder. ``<content>`` is ``toplevel`` (default) or
    ``primary_assembly``; the sequence type is soft-masked ``dna_sm``.
``ncbi:<GCF_|GCA_ accession>[_<assembly name>]``
    ``https://ftp.ncbi.nlm.nih.gov/genomes/all/GCF/000/001/405/<acc>_<name>/<acc>_<name>_genomic.fna.gz``.
    Without the assembly name, it is looked up in the NCBI folder listing at download time.
``http://``, ``https://``, ``ftp://``
    Used as given.
anything else
    A local file path (plain or gzipped FASTA), relative to the working directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from dnalm.errors import ConfigError

UCSC_BASE = os.environ.get("DNALM_UCSC_BASE_URL", "https://hgdownload.soe.ucsc.edu/goldenPath")
ENSEMBL_BASE = os.environ.get("DNALM_ENSEMBL_BASE_URL", "https://ftp.ensembl.org/pub")
NCBI_BASE = os.environ.get("DNALM_NCBI_BASE_URL", "https://ftp.ncbi.nlm.nih.gov/genomes/all")

_REMOTE_SCHEMES = ("http://", "https://", "ftp://")
_ENSEMBL_RE = re.compile(
    r"^(?P<species>[A-Za-z0-9_]+)/(?P<assembly>[A-Za-z0-9_.\-]+)"
    r"(?:@(?P<release>\d+))?(?:#(?P<content>toplevel|primary_assembly))?$"
)
_NCBI_RE = re.compile(
    r"^(?P<prefix>GC[AF])_(?P<digits>\d{9})\.(?P<version>\d+)(?:_(?P<name>\S+))?$"
)
_UCSC_RE = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class Source:
    """Where a genome comes from.

    ``kind`` is ``"url"`` (fetch ``location``), ``"ncbi"`` (``location`` is the accession folder,
    resolved to a file by listing it), or ``"local"`` (``location`` is a file path).
    """

    kind: str
    location: str
    original: str

    @property
    def is_remote(self) -> bool:
        return self.kind != "local"


def ucsc_url(assembly: str) -> str:
    """URL of a UCSC assembly's soft-masked FASTA."""
    if not _UCSC_RE.match(assembly):
        raise ConfigError(f"invalid UCSC assembly name {assembly!r}")
    return f"{UCSC_BASE}/{assembly}/bigZips/{assembly}.fa.gz"


def ensembl_url(spec: str) -> str:
    """URL of an Ensembl soft-masked FASTA for ``<species>/<assembly>[@release][#content]``."""
    m = _ENSEMBL_RE.match(spec)
    if not m:
        raise ConfigError(
            f"invalid Ensembl source {spec!r}: expected <species>/<assembly>[@release][#content], "
            "for example homo_sapiens/GRCh38@110#primary_assembly"
        )
    species = m["species"].lower()
    content = m["content"] or "toplevel"
    file = f"{species.capitalize()}.{m['assembly']}.dna_sm.{content}.fa.gz"
    if m["release"]:
        return f"{ENSEMBL_BASE}/release-{m['release']}/fasta/{species}/dna/{file}"
    return f"{ENSEMBL_BASE}/current_fasta/{species}/dna/{file}"


def ncbi_folder(accession: str) -> tuple[str, str | None]:
    """NCBI ``genomes/all`` folder of an accession, and the full assembly folder name if known.

    ``GCF_000001405.40`` lives under ``GCF/000/001/405/``; its files are in a sub-folder named
    ``GCF_000001405.40_GRCh38.p14``, which needs a listing when the name part is not given.
    """
    m = _NCBI_RE.match(accession)
    if not m:
        raise ConfigError(
            f"invalid NCBI accession {accession!r}: expected GCF_ or GCA_ followed by nine digits "
            "and a version, for example GCF_000001405.40"
        )
    d = m["digits"]
    folder = f"{NCBI_BASE}/{m['prefix']}/{d[0:3]}/{d[3:6]}/{d[6:9]}"
    full = accession if m["name"] else None
    return folder, full


def ncbi_file_url(folder: str, assembly_dir: str) -> str:
    """URL of the genomic FASTA inside an NCBI assembly folder."""
    return f"{folder}/{assembly_dir}/{assembly_dir}_genomic.fna.gz"


def find_ncbi_assembly_dir(listing_html: str, accession: str) -> str | None:
    """Pick the assembly folder for ``accession`` out of an NCBI folder listing (HTML)."""
    names = re.findall(r'href="([^"/]+)/?"', listing_html)
    matches = sorted({n for n in names if n.startswith(accession + "_")})
    return matches[-1] if matches else None


def resolve(source: str) -> Source:
    """Turn a sample-sheet ``source`` into a :class:`Source`; raises ``ConfigError`` if unknown."""
    text = source.strip()
    if not text:
        raise ConfigError("empty source")
    if text.startswith(_REMOTE_SCHEMES):
        return Source("url", text, source)
    scheme, sep, rest = text.partition(":")
    if sep and len(scheme) > 1 and "/" not in scheme:
        scheme = scheme.lower()
        if scheme == "ucsc":
            return Source("url", ucsc_url(rest), source)
        if scheme == "ensembl":
            return Source("url", ensembl_url(rest), source)
        if scheme == "ncbi":
            folder, full = ncbi_folder(rest)
            if full:
                return Source("url", ncbi_file_url(folder, full), source)
            return Source("ncbi", f"{folder}|{rest}", source)
        if scheme in {"file"}:
            return Source("local", rest.removeprefix("//"), source)
        raise ConfigError(
            f"unknown source scheme {scheme!r} in {source!r}: use ucsc:, ensembl:, ncbi:, "
            "http(s)://, ftp:// or a local path"
        )
    return Source("local", str(Path(text)), source)
