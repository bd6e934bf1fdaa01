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
        base = paths.track(spec["genome"], name)
        targets += [f"{base}.parquet", f"{base}.bedgraph", f"{base}.bw", f"{base}.png"]
        if spec.get("tss_bed"):
            targets.append(f"{base}_tss.json")
    return targets


rule track_region:
    input:
        run=lambda wc: paths.finetune_run(TRACKS[wc.track]["task"], TRACKS[wc.track]["run"]),
        **paths.genome_files(),
    output:
        paths.track() + "/regions/{region}.parquet",
    params:
        spec=lambda wc: TRACKS[wc.track],
    log:
        paths.log("tracks", "{genome}_{track}_{region}"),
    benchmark:
        paths.benchmark("tracks", "{genome}_{track}_{region}")
    threads: threads_for("track_region")
    resources:
        mem_mb=mem_for("track_region"),
        runtime=runtime_for("track_region"),
        **gpu_resources("track_region"),
    script:
        "../scripts/track_region.py"


rule gather_track:
    input:
        parts=lambda wc: [f"{paths.track(wc.genome, wc.track)}/regions/{r}.parquet"
                          for r in range(track_settings(TRACKS[wc.track], name=wc.track).regions)],
        **paths.genome_index_files(),
    output:
        table=paths.track() + ".parquet",
        bedgraph=paths.track() + ".bedgraph",
        bigwig=paths.track() + ".bw",
        picture=report(paths.track() + ".png", category="Tracks",
                       labels={"track": "{track}", "genome": "{genome}"}),
    params:
        stride=lambda wc: track_settings(TRACKS[wc.track], name=wc.track).stride_bp,
    log:
        paths.log("tracks", "{genome}_{track}_gather"),
    benchmark:
        paths.benchmark("tracks", "{genome}_{track}_gather")
    threads: 1
    resources:
        mem_mb=mem_for("gather_track"),
        runtime=runtime_for("gather_track"),
    script:
        "../scripts/gather_track.py"


rule track_tss_enrichment:
    input:
        track=paths.track() + ".parquet",
        tss=lambda wc: TRACKS[wc.track]["tss_bed"],
    output:
        paths.track() + "_tss.json",
    log:
        paths.log("tracks", "{genome}_{track}_tss"),
    benchmark:
        paths.benchmark("tracks", "{genome}_{track}_tss")
    threads: 1
    script:
        "../scripts/track_tss.py"
