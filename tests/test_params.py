import copy
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, ctc
from ctcoupling.config import params as P
from ctcoupling.pipeline import dag
from ctcoupling.core.errors import UserError


def load(name):
    return yaml.safe_load((ROOT / "params" / name).read_text())


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "params").glob("*.yaml")
                                         if p.name != "published_fids.yaml"))  # the audit's registry
def test_shipped_params_are_valid(name):
    assert P.load(ROOT / "params" / name)["threads"] >= 1


def test_grid_expands_to_cartesian_blocks():
    params = load("default.yaml")
    exps = P.experiments(params)
    sizes = [len(b["dataset"]) * len(b["objective"]) * len(b["coupling"]) * len(b["seed"]) for b in params["grid"]]
    assert len(exps) == sum(sizes)
    assert len({e.name for e in exps}) == len(exps)
    e = next(x for x in exps if not any("objective" in params["overrides"][o]["set"] for o in x.overrides))
    assert e.name == f"{e.dataset}-{e.objective}-{e.coupling}-s{e.seed}"
    assert e.config["objective"] == params["objectives"][e.objective]
    shifted = next(x for x in exps if "schedule_digits" in x.overrides)  # an override sets objective keys
    assert shifted.config["objective"] == params["objectives"][shifted.objective] | {"s1": 80}


def test_duplicate_cells_across_blocks_are_counted_once():
    params = load("smoke.yaml")
    params["grid"].append(copy.deepcopy(params["grid"][0]))
    assert len(P.experiments(params)) == len(P.experiments(load("smoke.yaml")))


def test_overrides_apply_only_where_they_match():
    params = load("smoke.yaml")
    steps = {e.dataset: e.config["train"]["steps"] for e in P.experiments(params)}
    assert steps["checkerboard"] == params["overrides"]["checkerboard_short"]["set"]["train"]["steps"]
    assert steps["two_gaussians"] == params["train"]["steps"]
    # the override leaves the params dict itself alone
    assert params["train"]["steps"] != steps["checkerboard"]


def test_override_can_switch_network():
    params = load("smoke.yaml")
    params["networks"]["wide"] = dict(params["networks"]["mlp"], hidden=64)
    params["overrides"]["wide_net"] = {"match": {"dataset": ["two_gaussians"]}, "set": {"train": {"network": "wide"}}}
    P.validate(params)
    nets = {e.dataset: e.config["network"].get("hidden") for e in P.experiments(params)}
    assert nets == {"two_gaussians": 64, "checkerboard": params["networks"]["mlp"]["hidden"], "digits": None}
    keys = P.stage_param_keys(params, "train", "two_gaussians-ict-ic-s0")
    assert "networks.wide" in keys and "overrides.wide_net.set.train" in keys


def test_stage_param_keys_are_exact():
    params = load("smoke.yaml")
    assert P.stage_param_keys(params, "prepare", "digits") == ["threads", "datasets.digits"]
    keys = P.stage_param_keys(params, "train", "checkerboard-ict-ic-s0")
    assert keys == ["threads", "objectives.ict", "couplings.ic", "networks.mlp", "train",
                    "overrides.checkerboard_short.match", "overrides.checkerboard_short.set.train"]
    assert P.stage_param_keys(params, "sample", "checkerboard-ict-ic-s0") == [
        "threads", "sample", "overrides.checkerboard_short.match"]
    assert P.stage_param_keys(params, "sample", "two_gaussians-ict-ic-s0") == ["threads", "sample"]


@pytest.mark.parametrize("mutate, fragment", [
    (lambda p: p["train"].update(lrr=1.0), "key 'train': unknown key 'lrr'"),
    (lambda p: p.update(bogus=1), "key '<top level>': unknown key 'bogus'"),
    (lambda p: p["train"].update(steps="many"), "key 'train.steps': 'many' is not of type 'integer'"),
    (lambda p: p["train"].update(lr=-1.0), "key 'train.lr': -1.0 is less than or equal to the minimum of 0"),
    (lambda p: p["datasets"]["digits"].update(n_test=5000), "key 'datasets.digits.n_test': 5000 is greater than"),
    (lambda p: p["grid"][0].update(dataset=["nope"]), "key 'grid[0].dataset': unknown dataset 'nope'"),
    (lambda p: p["train"].update(network="nope"), "key 'train.network': unknown network 'nope'"),
    (lambda p: p["datasets"].update(Bad={"source": "digits", "n_test": 1, "seed": 0}), "'Bad' does not match"),
    (lambda p: p["datasets"]["two_gaussians"].pop("n_train"), "'n_train' is a required property"),
    # every number finite: YAML's .nan and .inf slip past JSON-schema bounds
    (lambda p: p["train"].update(lr=float("nan")), "key 'train.lr': nan is not a finite number"),
    (lambda p: p["objectives"]["ict"]["kernel"].update(sigma_max=float("inf")),
     "key 'objectives.ict.kernel.sigma_max': inf is not a finite number"),
    (lambda p: p["theory"].update(times=[0.1, float("nan")]), "key 'theory.times[1]': nan is not a finite number"),
    # ordered pairs, on each experiment's resolved settings
    (lambda p: p["objectives"]["ict"]["kernel"].update(sigma_min=100.0),
     "key 'objectives.ict.kernel' of experiment two_gaussians-ict-ic-s0: sigma_min 100 must be below sigma_max 80"),
    (lambda p: p["objectives"]["ict"].update(s0=2000), "key 'objectives.ict' of experiment two_gaussians-ict-ic-s0: "
                                                       "s0 2000 must not exceed s1 1280"),
    (lambda p: p["couplings"]["gc"].update(mu_ramp_steps=10_000), "key 'couplings.gc.mu_ramp_steps' of experiment "
                                                                  "two_gaussians-ict-gc-s0: 10000 ramps past the end"),
    (lambda p: p["train"].update(ema_gamma=6.94), "ema_gamma and ema_warmup are two EMA schedules"),
    # network keys checked against the network's kind, in the section and after an override
    (lambda p: p["networks"]["unet_digits"].update(hidden=64),
     "key 'networks.unet_digits': unknown key 'hidden' for its kind (allowed: kind, label_dim, dropout"),
    (lambda p: p["overrides"].setdefault("x", {"match": {"dataset": ["two_gaussians"]},
                                               "set": {"network": {"model_channels": 8}}}),
     "key 'networks.mlp' of experiment two_gaussians-ict-ic-s0, after its overrides: unknown key 'model_channels' "
     "for its kind"),
    # settings checked against the coupling/objective they belong to
    (lambda p: p["couplings"]["ot"].update(mu=0.5), "key 'couplings.ot.mu': does not apply to coupling kind 'ot'"),
    (lambda p: p["objectives"]["ict"].update(form="official"),
     "key 'objectives.ict.form': does not apply to objective kind 'ict' (it applies to: ect)"),
])
def test_bad_params_name_the_key(mutate, fragment):
    params = load("smoke.yaml")
    mutate(params)
    with pytest.raises(UserError) as e:
        P.validate(params, "params/x.yaml")
    msg = str(e.value)
    assert msg.startswith("params/x.yaml: ") and fragment in msg and "\n" not in msg


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="params file not found"):
        P.load(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("threads: [1\n")
    with pytest.raises(UserError, match="not valid YAML at line"):
        P.load(bad)


def test_unknown_experiment_lists_the_grid():
    with pytest.raises(UserError, match="no experiment 'x' in the grid .*two_gaussians-ict-ic-s0"):
        P.experiment(load("smoke.yaml"), "x")


def test_bad_params_touch_no_artifact(tmp_path):
    """sigma_min above sigma_max used to validate, train to a negative loss and overwrite model.pt."""
    params = load("smoke.yaml")
    params["objectives"]["ict"]["kernel"]["sigma_min"] = 100.0
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(params))
    model = tmp_path / "runs" / "two_gaussians-ict-ic-s0" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"earlier weights")
    p = ctc("train", "--params", f, "--experiment", "two_gaussians-ict-ic-s0", cwd=tmp_path, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "sigma_min 100 must be below sigma_max 80" in p.stderr
    assert model.read_bytes() == b"earlier weights"


def test_cli_bad_params_is_one_line_without_traceback(tmp_path):
    params = load("smoke.yaml")
    params["train"]["lr"] = "fast"
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(params))
    p = ctc("validate", "--params", f, cwd=tmp_path, check=False)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    assert p.stderr.startswith(f"error: {f}: key 'train.lr'")


def test_every_command_has_help():
    from ctcoupling.cli import parser

    sub = next(a for a in parser()._actions if a.dest == "command")
    for name in sub.choices:
        p = ctc(name, "--help", cwd=ROOT)
        assert "usage: ctcoupling " + name in p.stdout and "--params" in p.stdout


@pytest.mark.parametrize("sample, fragment", [
    ({"steps": 2, "t_mid": []}, "0 times for 2 steps"),
    ({"steps": 3, "t_mid": [0.5, 1.0]}, "times must decrease"),
    ({"steps": 2, "t_mid": [90.0]}, "between sigma_min and sigma_max"),
    ({"steps": 2, "t_mid": [0.001]}, "between sigma_min and sigma_max"),
])
def test_t_mid_must_fit_the_steps(sample, fragment):
    params = load("smoke.yaml")
    params["sample"].update(sample)
    with pytest.raises(UserError, match=f"key 'sample.t_mid' of experiment two_gaussians-ict-ic-s0: .*{fragment}"):
        P.validate(params, "p.yaml")


@pytest.mark.parametrize("mutate, fragment", [
    (lambda p: p["theory"].update(datasets=["digits"]),
     "key 'theory.datasets': 'digits' has no IC run of objective 'ict' and seed 0"),
    (lambda p: p["theory"].update(datasets=["nope"]), "key 'theory.datasets': unknown dataset 'nope'"),
    (lambda p: p["theory"].update(times=[1.0, 0.5]), "key 'theory.times': times must increase"),
    (lambda p: p["theory"]["denoiser"].update(network="nope"), "key 'theory.denoiser.network': unknown network"),
    (lambda p: p["evaluate"]["fidelity"].update(features="classifier"),
     "two_gaussians is a 2-D point set; image metrics need images"),
    (lambda p: p["overrides"]["digits_unet"]["set"].update(evaluate={"fidelity": {"features": "inception",
                                                                                  "stream": True}}),
     "stream needs n, the images generated per seed"),
    (lambda p: p["overrides"]["digits_unet"]["set"].update(evaluate={"fidelity": {"stream": True, "n": 50,
                                                                                  "steps": [3],
                                                                                  "features": "classifier"}}),
     "steps [3] need 2 intermediate times in sample.t_mid (have 1)"),
    (lambda p: p.pop("classifier"), "features 'classifier' needs a top-level `classifier` section"),
])
def test_theory_and_fidelity_settings_are_cross_checked(mutate, fragment):
    params = load("smoke.yaml")
    mutate(params)
    with pytest.raises(UserError) as e:
        P.validate(params, "params/x.yaml")
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_ablations_pair_each_variant_with_the_main_names_and_name_the_change():
    params = P.load("params/default.yaml")
    found = {(a["objective"], a["coupling"]): a for a in P.ablations(params)}
    paired = found[("ict", "ot_paired")]
    assert (paired["ref_objective"], paired["ref_coupling"]) == ("ict", "ot")
    assert paired["change"] == {"sample.ot_pairing": (True, False)} and paired["seeds"] == [0, 1, 2]
    variant = copy.deepcopy(params)  # an objective variant: the change is read off the resolved configs
    variant["objectives"]["ict_s20"] = dict(variant["objectives"]["ict"], s1=20)
    variant["grid"].append({"dataset": ["eight_gaussians"], "objective": ["ict_s20"], "coupling": ["ic"], "seed": [0]})
    s20 = {(a["objective"], a["coupling"]): a for a in P.ablations(variant)}[("ict_s20", "ic")]
    assert (s20["ref_objective"], s20["ref_coupling"]) == ("ict", "ic") and s20["change"] == {"objective.s1": (20, 1280)}
    assert not any(c in ("gc_mu1", "vc_kl30") for _, c in found)  # the sweeps have sections of their own


def test_a_sweep_run_that_differs_in_more_than_the_swept_value_is_flagged():
    params = P.load("params/default.yaml")
    assert P.confounds(params) == []  # every kl_scale and mu run differs from vc / gc in that value only
    params["overrides"]["vc_clip"]["match"]["coupling"] = ["vc", "vcgc"]  # the clip no longer reaches vc_kl30
    (flagged,) = [c for c in P.confounds(params) if c["coupling"] == "vc_kl30"]
    assert flagged["ref_coupling"] == "vc" and flagged["change"] == {"coupling.kl_scale": (30, 10),
                                                                     "train.grad_clip": (None, 200.0)}


def test_theory_seeds_need_their_runs_and_the_cli_seed_must_be_one_of_them(tmp_path):
    params = load("smoke.yaml")
    params["theory"]["seeds"] = [0, 1]  # the smoke grid has two_gaussians runs of seed 0 only
    with pytest.raises(UserError, match="no IC run of objective 'ict' and seed 1"):
        P.validate(params, "p.yaml")
    params["theory"]["seeds"] = [0]
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(params))
    p = ctc("theory", "--params", f, "--dataset", "two_gaussians", "--seed", "3", cwd=tmp_path, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--seed 3 is not in theory.seeds ([0])" in p.stderr and not (tmp_path / "runs").exists()


def test_the_sampler_ablation_trains_once_as_its_base_runs():
    """default.yaml's ic_paired / ot_paired differ from ic / ot only in the sampler: each copies their run,
    and in the DAG its train stage depends on that run's training outputs."""
    params = P.load(ROOT / "params/default.yaml")
    twins = P.trained_by(params)
    assert twins == {f"digits-ict-{c}_paired-s{s}": f"digits-ict-{c}-s{s}" for c in ("ic", "ot") for s in range(3)}
    stage = {s.name: s for s in dag.stages(params, "params/default.yaml")}["train-digits-ict-ot_paired-s1"]
    assert {dag.run_file("digits-ict-ot-s1", n) for n in dag.TRAIN_OUTS} <= set(stage.deps)
    assert P.trained_by(P.load(ROOT / "params/smoke.yaml")) == {}


@pytest.mark.parametrize("script", ["workflow/scripts/sampler_diagnosis.py", "workflow/scripts/oracle_resolution.py",
                                    "workflow/scripts/predictor_range.py",
                                    "benchmarks/gpu_check.py",
                                    "benchmarks/job_seconds.py", "benchmarks/train_throughput.py"])
def test_every_script_imports_and_has_help(script):
    """The scripts outside the package import what they use at the top, so `--help` proves their imports
    resolve (a module moved by issue 27's layout once left one naming a path that no longer exists)."""
    p = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stdout.startswith("usage: ") and "--" in p.stdout


@pytest.mark.parametrize("script", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "workflow/scripts").glob("*.py")))
def test_every_workflow_script_pins_the_cpu_kernels_before_numpy_and_torch(script):
    """A script that scores runs imports the package first: its __init__ pins the CPU kernels (core/portable.py),
    which the libraries read once, when they load. numpy or torch imported before it computes with the
    machine's native kernels, other bits on an AVX-512 CPU than the suite's stages (only a Snakemake rule,
    whose environment the Snakefile's own import pinned, escaped that)."""
    import ast

    first = {}
    for node in ast.parse((ROOT / script).read_text()).body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for name in names:
            first.setdefault(name.split(".")[0], node.lineno)
    numeric = [first[m] for m in ("numpy", "torch", "scipy", "sklearn") if m in first]
    assert "ctcoupling" in first and all(first["ctcoupling"] < line for line in numeric), first


def _resolution_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("oracle_resolution", ROOT / dag.RESOLUTION_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_oracle_study_trains_the_default_suites_runs_on_fresh_seeds():
    """params/oracle.yaml (issue 26's confirmatory test) is like for like with the suite it serves: each run's
    resolved settings are the default suite's same run's but the seed, its seeds were never trained by the
    default suite or the pilot, its claims are the default's continuous family on its data set, and it shares
    the default's data/ files (prepared by params/default.yaml: data_params_file)."""
    default, oracle = P.load(ROOT / "params/default.yaml"), P.load(ROOT / "params/oracle.yaml")
    design, cont = oracle["resolution"], default["evidence"]["continuous"]
    assert design["for"] == "params/default.yaml" and design["dataset"] in cont["datasets"]
    assert (design["objective"], design["oracle"], design["couplings"]) == (cont["objective"], cont["oracle"],
                                                                           cont["couplings"])
    suite = {(e.dataset, e.objective, e.coupling): e for e in P.experiments(default)}
    runs = P.experiments(oracle)
    assert {(e.objective, e.coupling) for e in runs} == {(design["oracle"], "ic")} | {
        (design["objective"], c) for c in design["couplings"]}
    for e in runs:
        twin = suite[e.dataset, e.objective, e.coupling]
        assert {k: v for k, v in P.train_config(e).items() if k != "seed"} == \
            {k: v for k, v in P.train_config(twin).items() if k != "seed"}, e.name
        assert {k: v for k, v in e.config.items() if k != "seed"} == \
            {k: v for k, v in twin.config.items() if k != "seed"}, e.name
    seeds = {e.seed for e in runs}
    assert len(seeds) == 10 and not seeds & ({e.seed for e in P.experiments(default)} |
                                              set(default["evidence"]["pilot_seeds"]))
    assert dag.data_params_file(oracle, "params/oracle.yaml") == "params/default.yaml"
    assert dag.all_outputs(oracle) == [dag.run_file(e.name, "model.pt") for e in runs] + [dag.RESOLUTION_MD]
    assert dag.data_params_file(default, "params/default.yaml") == "params/default.yaml"


def test_a_study_with_other_data_settings_than_its_suite_is_refused():
    """A study shares its suite's data/ files; other data or classifier settings would overwrite them."""
    oracle = P.load(ROOT / "params/oracle.yaml")
    other = copy.deepcopy(oracle)
    other["datasets"]["two_gaussians"]["std"] = 0.1
    with pytest.raises(UserError, match="datasets.two_gaussians differs from params/default.yaml's"):
        dag.data_params_file(other, "params/oracle.yaml")
    other = copy.deepcopy(oracle)
    other["classifier"]["epochs"] = other["classifier"].get("epochs", 1) + 1
    with pytest.raises(UserError, match="classifier differs"):
        dag.data_params_file(other, "params/oracle.yaml")
    assert dag.data_params_file(P.load(ROOT / "params/pilot.yaml"), "params/pilot.yaml") == "params/default.yaml"


def test_the_oracle_tests_reference_holds_each_modes_exact_share_and_its_table_decides_by_holm():
    """oracle_resolution's stratified reference has exactly n / K points per mode around the mixture's means;
    its table decides each claim on the Holm-adjusted paired t, with the MDE where not significant, and a
    confirmatory design's n cannot be changed from the command line."""
    import numpy as np

    script = _resolution_script()
    means = np.array([[0.0, 0.5], [0.0, -0.5]])
    ref = script.stratified(means, 0.05, 1000, 7)
    assert ref.shape == (1000, 2) and ref.dtype == np.float32
    assert (ref[:, 1] > 0).sum() == 500 and np.allclose(ref[:500].mean(0), means[0], atol=0.01)
    assert np.array_equal(ref, script.stratified(means, 0.05, 1000, 7))

    oracle = P.load(ROOT / "params/oracle.yaml")
    d = script.design(oracle, "params/oracle.yaml", None)
    assert d["confirmatory"] and d["n"] == oracle["resolution"]["n"]
    with pytest.raises(UserError, match="pre-registers n"):
        script.design(oracle, "params/oracle.yaml", 2048)
    rng = np.random.default_rng(0)
    seeds = list(range(10))
    w2 = {("floor", s): 0.04 for s in seeds} | {("oracle", s): 0.05 + 0.001 * rng.standard_normal() for s in seeds}
    w2 |= {(c, s): (0.08 if c == "ot" else 0.05) + 0.001 * rng.standard_normal() for c in d["couplings"] for s in seeds}
    rows = {ln.split(" | ")[0].lstrip("| "): ln.split(" | ") for ln in script.table(d, seeds, w2, "x").splitlines()
            if ln.startswith("| sCT-")}
    assert rows["sCT-OT"][7] == "holds" and rows["sCT-OT"][2] == "10/10" and rows["sCT-OT"][8].strip(" |") == ""
    assert rows["sCT-IC"][7] == "not significant" and float(rows["sCT-IC"][8].rstrip(" |")) > 0
