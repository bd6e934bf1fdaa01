# Genome-wide tracks of fine-tuned runs: region jobs, then Parquet + bedGraph + bigWig.
# Settings (window, stride, region count...) are dnalm.finetune.settings.TrackSettings.
from dnalm.finetune.settings import track_settings

TRACKS = config.get("tracks", {})

for _name, _spec in TRACKS.items():
    if _spec["task"] not in FINETUNE_TASKS or _spec["run"] not in FINETUNE_RUNS:
        sys.exit(f"dnalm: error: tracks.{_name}: task {_spec['task']!r} / run {_spec['run']!r} "
                 "is not defined under finetune")
    try:
        track_settings(_spec, name=_name)
    except DnalmError as _error:
        sys.exit(f"dnalm: error: {_error}")


def track_targets():
    targets = []
    for name, spec in TRACKS.items():
        base = f"results/tracks/{spec['genome']}/{name}"
        targets += [f"{base}.parquet", f"{base}.bedgraph", f"{base}.bw", f"{base}.png"]
    return targets


rule track_region:
    input:
        run=lambda wc: f"results/finetune/{TRACKS[wc.track]['task']}/{TRACKS[wc.track]['run']}",
        fasta="results/genomes/{genome}/genome.fa.gz",
        fai="results/genomes/{genome}/genome.fa.gz.fai",
        gzi="results/genomes/{genome}/genome.fa.gz.gzi",
    output:
        "results/tracks/{genome}/{track}/regions/{region}.parquet",
    params:
        spec=lambda wc: TRACKS[wc.track],
    log:
        "logs/tracks/{genome}_{track}_{region}.log",
    benchmark:
        "results/benchmarks/tracks/{genome}_{track}_{region}.tsv"
    threads: threads_for("track_region")
    resources:
        mem_mb=mem_for("track_region"),
        runtime=runtime_for("track_region"),
        **gpu_resources("track_region"),
    script:
        "../scripts/track_region.py"


rule gather_track:
    input:
        parts=lambda wc: expand("results/tracks/{{genome}}/{{track}}/regions/{region}.parquet",
                                region=range(track_settings(TRACKS[wc.track],
                                                            name=wc.track).regions)),
        fai="results/genomes/{genome}/genome.fa.gz.fai",
        gzi="results/genomes/{genome}/genome.fa.gz.gzi",
    output:
        table="results/tracks/{genome}/{track}.parquet",
        bedgraph="results/tracks/{genome}/{track}.bedgraph",
        bigwig="results/tracks/{genome}/{track}.bw",
        picture=report("results/tracks/{genome}/{track}.png", category="Tracks",
                       labels={"track": "{track}", "genome": "{genome}"}),
    params:
        stride=lambda wc: track_settings(TRACKS[wc.track], name=wc.track).stride_bp,
    log:
        "logs/tracks/{genome}_{track}_gather.log",
    benchmark:
        "results/benchmarks/tracks/{genome}_{track}_gather.tsv"
    threads: 1
    resources:
        mem_mb=mem_for("gather_track"),
        runtime=runtime_for("gather_track"),
    script:
        "../scripts/gather_track.py"
