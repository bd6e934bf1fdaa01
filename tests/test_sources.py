"""Source shorthands resolve to the providers' real URL layouts."""

import pytest

from dnalm.errors import ConfigError
from dnalm.sources import find_ncbi_assembly_dir, ncbi_file_url, ncbi_folder, resolve


def test_ucsc() -> None:
    s = resolve("ucsc:hg38")
    assert s.kind == "url"
    assert s.location == "https://hgdownload.soe.ucsc.edu/goldenPath/hg38/bigZips/hg38.fa.gz"


def test_ensembl_with_release_and_content() -> None:
    s = resolve("ensembl:homo_sapiens/GRCh38@110#primary_assembly")
    assert s.location == (
        "https://ftp.ensembl.org/pub/release-110/fasta/homo_sapiens/dna/"
        "Homo_sapiens.GRCh38.dna_sm.primary_assembly.fa.gz"
    )


def test_ensembl_current_release_toplevel() -> None:
    s = resolve("ensembl:saccharomyces_cerevisiae/R64-1-1")
    assert s.location == (
        "https://ftp.ensembl.org/pub/current_fasta/saccharomyces_cerevisiae/dna/"
        "Saccharomyces_cerevisiae.R64-1-1.dna_sm.toplevel.fa.gz"
    )


def test_ncbi_full_name_needs_no_lookup() -> None:
    s = resolve("ncbi:GCF_000001405.40_GRCh38.p14")
    assert s.kind == "url"
    assert s.location == (
        "https://ftp.ncbi.nlm.nih.gov/genomes/all/GCF/000/001/405/GCF_000001405.40_GRCh38.p14/"
        "GCF_000001405.40_GRCh38.p14_genomic.fna.gz"
    )


def test_ncbi_accession_resolved_from_listing() -> None:
    s = resolve("ncbi:GCA_000001405.29")
    assert s.kind == "ncbi"
    folder, full = ncbi_folder("GCA_000001405.29")
    assert folder == "https://ftp.ncbi.nlm.nih.gov/genomes/all/GCA/000/001/405"
    assert full is None
    listing = (
        '<a href="GCA_000001405.28_GRCh38.p13/">x</a>'
        '<a href="GCA_000001405.29_GRCh38.p14/">x</a><a href="other/">y</a>'
    )
    name = find_ncbi_assembly_dir(listing, "GCA_000001405.29")
    assert name == "GCA_000001405.29_GRCh38.p14"
    assert ncbi_file_url(folder, name).endswith(
        "/GCA_000001405.29_GRCh38.p14/GCA_000001405.29_GRCh38.p14_genomic.fna.gz"
    )


@pytest.mark.parametrize(
    "text", ["https://x.org/g.fa.gz", "http://127.0.0.1:8000/a.fa", "ftp://ftp.x.org/g.fa.gz"]
)
def test_urls_pass_through(text: str) -> None:
    assert resolve(text).location == text


def test_local_paths() -> None:
    assert resolve("data/genome.fa.gz").kind == "local"
    assert resolve("/abs/genome.fa").location == "/abs/genome.fa"
    assert resolve("file:///abs/g.fa").location == "/abs/g.fa"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3x:bucket/genome", "unknown source scheme 's3x'"),
        ("ncbi:GCF_12", "invalid NCBI accession"),
        ("ensembl:homo_sapiens", "invalid Ensembl source"),
        ("ucsc:hg/38", "invalid UCSC assembly"),
        ("", "empty source"),
    ],
)
def test_bad_sources(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(text)
