"""Snakemake adapter: one labelled variant set evaluated against its score tables (rule
evaluate)."""

from dnalm.evaluate import ScoreTable, evaluate_set, evaluation_settings, label_spec
from dnalm.logs import run_script


def main(sm) -> None:
    name = sm.wildcards.evalset
    spec = sm.params.spec
    evaluate_set(sm.input.variants,
                 [ScoreTable(model, path, kind) for model, path, kind in sm.params.tables],
                 label_spec(spec["label"], spec.get("strata"),
                            where=f"evaluation.sets.{name}.label"),
                 sm.output.table, out_html=sm.output.html, out_png=sm.output.curves,
                 settings=evaluation_settings(sm.params.settings, seed=sm.params.seed),
                 set_name=name)


run_script(snakemake, main)
