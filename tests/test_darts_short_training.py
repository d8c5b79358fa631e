"""experiments/darts_short_training.py at a tiny size: candidates trained and ranked on
validation accuracy, test accuracy read afterwards, and the NB201 sanity check."""

import json
import os
import pathlib
import shutil

import pytest

from conftest import data_path, import_experiment

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def short(monkeypatch):
    ds = import_experiment("darts_short_training")
    monkeypatch.setattr(ds, "SIZE", {"channels": 2, "layers": 2})
    monkeypatch.setattr(ds, "TRAIN_IMAGES", 32)
    monkeypatch.setattr(ds, "VALID_IMAGES", 16)
    monkeypatch.setattr(ds, "RECIPE_OVERRIDES", {"batch_size": 16, "eval_batch_size": 16})
    return ds


def test_short_training_ranks_on_validation_then_reads_test(short, tmp_path, capsys):
    root = str(data_path("cifar10_jpeg").parent)
    bench = str(data_path("nb201", "nb201_accuracies.csv"))
    common = ["--epochs", "1", "--seeds", "0", "--workdir", str(tmp_path / "w"), "--data-dir", root,
              "--benchmark", bench, "--output", str(tmp_path / "s.json"), "--quiet"]
    assert short.main(["train", "--candidate", "V2=DARTS_V2", "--candidate", "rnd=random:1",
                       "--candidate", "gone=docs/runs/no_such_file.txt"] + common) == 0
    assert "gone: skipped" in capsys.readouterr().err
    res = json.loads((tmp_path / "s.json").read_text())
    assert set(res["results"]) == {"V2", "rnd"} and res["recipe"]["train_size"] == 32
    assert res["recipe"]["channels"] == 2 and res["recipe"]["eval_split"] == "valid"
    shutil.rmtree(tmp_path / "w")  # the record carries finished runs across lost workdirs
    assert short.main(["train", "--candidate", "rnd=random:1"] + common) == 0  # finished: merged, not retrained
    assert "[short]" not in capsys.readouterr().err
    assert json.loads((tmp_path / "s.json").read_text())["results"] == res["results"]
    with pytest.raises(SystemExit, match="was trained as"):  # before anything else is trained
        short.main(["train", "--candidate", "new=random:0", "--candidate", "rnd=random:2"] + common)
    assert "[short]" not in capsys.readouterr().err
    v2 = res["results"]["V2"]
    assert len(v2["runs"]) == 1 and 0 <= v2["valid_acc_mean"] <= 100 and len(v2["runs"][0]["valid_acc_per_epoch"]) == 1
    assert v2["params_short_network"] > 0
    with pytest.raises(SystemExit, match="run the 'train' step first"):
        short.main(["table"] + common[:-3] + ["--output", str(tmp_path / "none.json"), "--quiet"])
    assert short.main(["table"] + common) == 0
    table = capsys.readouterr().out
    assert short.main(["table", "--candidate", "V2=DARTS_V2", "--candidate", "rnd=random:1",
                       "--candidate", "more=random:2"] + common) == 0  # how far train is, on stderr
    assert "[short] 2 of 3 runs recorded; next: more, seed 0" in capsys.readouterr().err
    assert "test acc" not in table and table.count("\n") == 4  # header, rule, two candidates
    assert (tmp_path / "s.png").exists() and (tmp_path / "s.md").read_text() == table
    assert short.main(["table", "--read-test"] + common) == 0  # the test accuracies stored at each run's end
    acc = res["results"]["V2"]["runs"][0]["test_acc"]
    v2_line = next(line for line in capsys.readouterr().out.splitlines() if "| V2 |" in line)
    assert 0 <= acc <= 100 and v2_line.endswith(f" {acc:.2f} |")
    with pytest.raises(SystemExit, match="no rule chosen yet"):  # no rule's cells were trained
        short.main(["table", "--chosen-genotypes", str(tmp_path / "g")] + common)
    assert not list(tmp_path.glob("g_*.txt"))
    with pytest.raises(SystemExit):
        short.main(["train", "--chosen-genotypes", str(tmp_path / "g")] + common)
    assert "options of 'table', not of 'train'" in capsys.readouterr().err


def test_table_writes_the_chosen_rules_genotypes(short, tmp_path, capsys):
    """Once every rule's two cells have every seed, ``table --chosen-genotypes STEM`` writes the
    chosen rule's NASI-FIX and NASI-ADA genotypes (as trained) where ``nasi train`` reads them."""
    from nasi_jax.spaces import darts
    results = {}
    for k, (rule, fix, ada) in enumerate(short.RULES):
        for j, name in enumerate((fix, ada)):
            g = darts.genotype_to_str(darts.random_genotype(10 * k + j))
            base = (50.0, 56.0, 53.0)[k]  # the middle rule wins: not the first, not the last
            accs = [base + j, base + 1]
            results[name] = {"genotype": g, "params_short_network": 1, "params_c36_20_cells": 2,
                             "valid_acc_mean": sum(accs) / 2, "valid_acc_sd": 0.5,
                             "runs": [{"seed": s, "valid_acc": a} for s, a in enumerate(accs)]}
    out = tmp_path / "s.json"
    out.write_text(json.dumps({"what": "train", "seeds": [0, 1], "results": results}))
    assert short.main(["table", "--output", str(out), "--chosen-genotypes", str(tmp_path / "g")]) == 0
    rule, fix, ada = short.RULES[1]  # the highest means, by construction
    assert f"chosen rule: {rule}" in capsys.readouterr().out
    for tag, name in (("fix", fix), ("ada", ada)):
        text = (tmp_path / f"g_{tag}.txt").read_text()
        assert text == results[name]["genotype"] + "\n"
        assert darts.genotype_to_str(darts.parse_genotype(text.strip())) == results[name]["genotype"]


def test_random_genotypes_are_valid_and_the_sources_parse(short):
    from nasi_jax.spaces import darts
    gs = [darts.random_genotype(k) for k in range(20)]
    for g in gs:
        assert darts.check_genotype(g) == g
    assert len({str(g) for g in gs}) == 20
    assert short.genotype_of("random:3") == gs[3] and short.genotype_of("DARTS_V2") == darts.DARTS_V2
    assert short.genotype_of("docs/runs/darts_search_data_agnostic.json#trace-only (mu=0)") == darts.parse_genotype(
        json.loads((REPO / "docs/runs/darts_search_data_agnostic.json").read_text())["variants"]["trace-only (mu=0)"]["genotype"])
    with pytest.raises(SystemExit, match="non-negative integer"):
        short.genotype_of("random:x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        short.genotype_of("docs/runs/nothing_here.txt")


def test_short_recipe_nb201_check(short, tmp_path):
    root = str(data_path("cifar10_jpeg").parent)
    bench = str(data_path("nb201", "nb201_accuracies.csv"))
    cells = short.nb201_cells(bench, 3)
    accs = [a for _, a, _ in cells]
    assert accs == sorted(accs) and accs[0] < accs[-1]
    out = tmp_path / "n.json"
    assert short.main(["nb201-check", "--nb201-cells", "3", "--nb201-layers", "1", "--epochs", "1", "--seeds", "0",
                       "--workdir", str(tmp_path / "w"), "--data-dir", root, "--benchmark", bench,
                       "--nb201-output", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert list(res["results"]) == [c for c, _, _ in cells]
    ours = [v["valid_acc_mean"] for v in res["results"].values()]
    for col in ("table_valid_200", "table_valid_12"):
        if len(set(ours)) > 1:
            assert -1 <= res[col]["kendall_tau"] <= 1 and -1 <= res[col]["spearman_rho"] <= 1
        else:  # one epoch on 32 images may leave every cell at chance: no order to compare
            assert res[col] == {"kendall_tau": None, "spearman_rho": None}


def test_rule_table_chooses_only_when_every_rule_is_complete(short):
    runs = lambda *v: {"runs": [{"seed": i, "valid_acc": a} for i, a in enumerate(v)]}  # noqa: E731
    (r0, f0, a0), (r1, f1, a1), (r2, f2, a2) = short.RULES
    res = {f0: runs(50, 52), a0: runs(54, 56), f1: runs(60, 62), a1: runs(58, 60), f2: runs(61, 63), a2: runs(57)}
    text, chosen = short.rule_table(res, [0, 1])
    assert chosen is None  # ADA of the quantile rule has one seed of two
    assert f"| {r2} | 62.00 | 57.00 | 60.33 | 3 of 4 |" in text.splitlines()
    res[a2] = runs(59, 60)
    text, chosen = short.rule_table(res, [0, 1])
    assert chosen == r2 and f"| {r1} | 61.00 | 59.00 | 60.00 | 4 of 4 |" in text.splitlines()  # 60.75 > 60.00
    assert short.rule_table({"V2": runs(1.0)}, [0]) == ("", None)  # no rule's candidates: no table
    assert short.rule_table({f0: runs(50), a0: runs(51)}, [0])[1] is None  # other rules untrained


def test_training_order_puts_the_rules_candidates_first(short):
    cands = [(name,) for name, _ in short.CANDIDATES]
    order = [(seed, c[0]) for seed, c in short.training_order(cands, [0, 1])]
    ruled = [name for rule in short.RULES for name in rule[1:]]
    assert len(order) == 2 * len(cands) and len(set(order)) == len(order)
    head = order[:2 * len(ruled)]  # every rule's cells at seed 0, then at seed 1
    assert {name for _, name in head} == set(ruled)
    assert [seed for seed, _ in head] == [0] * len(ruled) + [1] * len(ruled)
    rest = [name for _, name in order[2 * len(ruled):]]
    assert rest == [c[0] for c in cands if c[0] not in ruled] * 2  # the others, seed by seed


def test_merge_unites_runs_made_elsewhere(short, tmp_path, capsys):
    """``merge``: results files of the same recipe united by candidate and seed, refused when a
    genotype or a seed's run differs, or the recipe is another."""
    from nasi_jax.train.recipes import config_dict
    recipe = config_dict(short.short_recipe(epochs=1))

    def part(name, results, rec=recipe):
        (tmp_path / name).write_text(json.dumps({"recipe": rec, "results": results}))
        return str(tmp_path / name)

    def entry(genotype, *runs):
        return {"genotype": genotype, "params_short_network": 1, "params_c36_20_cells": 2,
                "runs": [{"seed": s, "valid_acc": v} for s, v in runs]}

    a = part("a.json", {"V2": entry("g", (0, 50.0)), "rnd": entry("r", (1, 40.0))})
    b = part("b.json", {"V2": entry("g", (1, 52.0), (0, 50.0)), "new": entry("n", (0, 45.0))})
    out = tmp_path / "out.json"
    common = ["merge", "--epochs", "1", "--output", str(out)]
    assert short.main(common + ["--part", a, "--part", b]) == 0
    res = json.loads(out.read_text())
    assert res["recipe"] == recipe and res["seeds"] == [0, 1]
    v2 = res["results"]["V2"]
    assert [r["seed"] for r in v2["runs"]] == [0, 1] and v2["valid_acc_mean"] == 51.0
    assert set(res["results"]) == {"V2", "rnd", "new"} and res["results"]["new"]["valid_acc_sd"] == 0.0
    assert short.main(common + ["--part", b]) == 0  # merging again changes nothing
    assert json.loads(out.read_text())["results"] == res["results"]
    for bad, match in ((part("c.json", {"V2": entry("other", (2, 1.0))}), "was trained as"),
                       (part("d.json", {"V2": entry("g", (1, 99.0))}), "holds another run"),
                       (part("e.json", {}, rec={**recipe, "epochs": 2}), "another recipe"),
                       (str(tmp_path / "none.json"), "no such results file")):
        with pytest.raises(SystemExit, match=match):
            short.main(common + ["--part", bad])
    assert json.loads(out.read_text())["results"] == res["results"]  # untouched by the refusals
    with pytest.raises(SystemExit, match="--part"):
        short.main(common)


def test_claim_leaves_a_run_that_another_process_holds(short, tmp_path):
    """``train --claim``: a run whose claim another process holds is left to it; the others
    are trained and merged into the results file, each with its core count."""
    common = ["--epochs", "1", "--seeds", "0", "--workdir", str(tmp_path / "w"), "--quiet",
              "--data-dir", str(data_path("cifar10_jpeg").parent), "--output", str(tmp_path / "s.json")]
    held = short.claim_file(str(tmp_path / "w" / "rnd" / "seed0.claim"))
    try:
        assert short.main(["train", "--claim", "--candidate", "V2=DARTS_V2", "--candidate", "rnd=random:1"]
                          + common) == 0
    finally:
        held.close()
    res = json.loads((tmp_path / "s.json").read_text())
    assert set(res["results"]) == {"V2"} and res["results"]["V2"]["runs"][0]["cores"] >= 1


def test_jobs_start_single_core_workers(tmp_path, capfd):
    """``train --jobs N``: N worker processes, one core each here, that find finished runs in
    the results file and leave it as it was, and whose failure stops the command."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores")
    ds = import_experiment("darts_short_training")  # the module's own sizes: the workers' recipe
    from nasi_jax.spaces import darts
    from nasi_jax.train.recipes import config_dict
    out = tmp_path / "s.json"
    out.write_text(json.dumps({"recipe": config_dict(ds.short_recipe(epochs=1)), "results": {"rnd": {
        "genotype": darts.genotype_to_str(darts.random_genotype(1)), "runs": [{"seed": 0, "valid_acc": 50.0}]}}}))
    before = out.read_text()
    argv = ["train", "--candidate", "rnd=random:1", "--epochs", "1", "--workdir", str(tmp_path / "w"),
            "--output", str(out), "--quiet", "--data-dir", str(tmp_path / "no_data"), "--jobs", "2"]
    assert ds.main(argv + ["--seeds", "0"]) == 0  # both workers find the run done
    assert out.read_text() == before
    capfd.readouterr()
    with pytest.raises(SystemExit, match="worker exit codes"):  # seed 1 is due and the data are absent
        ds.main(argv + ["--seeds", "0,1"])
    err = capfd.readouterr().err
    assert "[short] rnd, seed 1" in err and "1 core(s)" in err and "2 core(s)" not in err  # pinned
    assert out.read_text() == before
    with pytest.raises(SystemExit, match="give at most --jobs"):
        ds.main(argv[:-1] + [str(len(os.sched_getaffinity(0)) + 1)])
    with pytest.raises(SystemExit):
        ds.main(["table", "--jobs", "2", "--output", str(out)])
    assert "options of 'train'" in capfd.readouterr().err
    import doctest
    assert doctest.testmod(import_experiment("_workers")).failed == 0
