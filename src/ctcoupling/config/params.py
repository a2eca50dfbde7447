"""Load and validate a params file; expand its grid into experiments with resolved settings.

An experiment is one (dataset, objective, coupling, seed) cell of the grid. Its settings are the
named sections it selects (`objectives.<o>`, `couplings.<c>`, `networks.<train.network>`) plus the
global `train`, `sample` and `evaluate`, with every matching override deep-merged on top, in file
order. `stage_param_keys` says which params keys each stage reads, for dvc.yaml.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from ctcoupling.data.datasets import TOY_SOURCES
from ctcoupling.core.errors import UserError

AXES = ("dataset", "objective", "coupling", "seed")
SECTIONS = ("objective", "coupling", "network", "train", "sample", "evaluate")

# The keys that apply to each coupling and objective kind. In a named section (`couplings.<c>`,
# `objectives.<o>`) any other key is an error; an override that sets one for a cell of another kind
# (e.g. `coupling.encoder` on every digits run) is ignored there and listed in `Experiment.ignored`,
# so no setting is ever silently used where it does not apply.
_GC_KEYS = ("mu", "mu_ramp_steps", "predictor", "checkpoint", "prediction_range")
COUPLING_KEYS = {"ic": ("kind",), "ot": ("kind", "scope"), "vc": ("kind", "encoder", "kl_scale"),
                 "gc": ("kind",) + _GC_KEYS, "vcgc": ("kind", "encoder", "kl_scale") + _GC_KEYS}
_SCT_KEYS = ("kind", "kernel", "P_mean", "P_std", "tangent_c", "warmup_steps", "c_noise_scale", "logvar_channels")
OBJECTIVE_KEYS = {"ict": ("kind", "kernel", "s0", "s1", "P_mean", "P_std", "huber_c", "huber_per_element"),
                  "ect": ("kind", "kernel", "P_mean", "P_std", "q", "k", "b", "n_stages", "huber_c", "weighting",
                          "form"),
                  "sct": _SCT_KEYS, "scd_exact": _SCT_KEYS + ("teacher",)}

# Optional settings and their values when a params file leaves them out (the schema describes each).
DEFAULTS = {
    "objective": {"ect": {"form": "boundary"},
                  "sct": {"tangent_c": 0.1, "warmup_steps": 10000, "c_noise_scale": 1.0, "logvar_channels": 128},
                  "scd_exact": {"tangent_c": 0.1, "warmup_steps": 10000, "c_noise_scale": 1.0, "logvar_channels": 128,
                                "teacher": "auto"}},
    "coupling": {"ot": {"scope": "global"}, "gc": {"mu_ramp_steps": 0, "prediction_range": None},
                 "vcgc": {"mu_ramp_steps": 0, "prediction_range": None}},
    "train": {"hflip": False, "ema_warmup": None, "ema_update_every": 1, "nonfinite_grad": "abort",
              "snapshot_every": None, "gpus": 1, "minibatch": "epoch"},
    "sample": {"ot_pairing": False},
    "evaluate": {"fidelity": {"protocol": "standard"}, "curve": {"n": 1024, "kid_subsets": 100}},
}


@lru_cache(maxsize=1)
def schema() -> dict:
    text = resources.files("ctcoupling").joinpath("schemas/params.schema.yaml").read_text()
    return yaml.safe_load(text)


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key and what is wrong with it."""
    key = _key_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        if extra and allowed:
            return f"key '{key}': unknown key '{extra[0]}' (allowed: {', '.join(allowed)})"
    if error.validator == "enum" and "propertyNames" in error.schema_path:  # a key of another kind of section
        return f"key '{key}': unknown key {error.instance!r} for its kind (allowed: {', '.join(error.validator_value)})"
    if error.validator == "required":
        return f"key '{key}': {error.message}"
    return f"key '{key}': {error.message}"


def validate(params: dict, source: str = "params") -> dict:
    """Validate against workflow/schemas/params.schema.yaml and cross-check the names the grid uses."""
    if not isinstance(params, dict):
        raise UserError(f"{source}: expected a mapping of params at the top level")
    _check_finite(params, source)
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        best = jsonschema.exceptions.best_match(errors, key=jsonschema.exceptions.by_relevance())
        # best_match prefers shallow errors; descend into if/then/allOf to the concrete cause.
        while best.context:
            best = jsonschema.exceptions.best_match(best.context)
        raise UserError(f"{source}: {_describe(best)}")
    tables = {"dataset": "datasets", "objective": "objectives", "coupling": "couplings"}
    for where, block in [(f"grid[{i}]", b) for i, b in enumerate(params["grid"])] + [
        (f"overrides.{n}.match", o["match"]) for n, o in params.get("overrides", {}).items()
    ]:
        for axis, table in tables.items():
            for name in block.get(axis, []):
                if name not in params[table]:
                    raise UserError(f"{source}: key '{where}.{axis}': unknown {axis} '{name}' "
                                    f"(defined under {table}: {', '.join(sorted(params[table]))})")
    overrides = params.get("overrides", {})
    networks = [("train.network", params["train"]["network"])] + [
        (f"overrides.{n}.set.train.network", o["set"]["train"]["network"]) for n, o in overrides.items()
        if "network" in o["set"].get("train", {})
    ] + [(f"couplings.{n}.encoder", c["encoder"]) for n, c in params["couplings"].items() if "encoder" in c] + [
        (f"overrides.{n}.set.coupling.encoder", o["set"]["coupling"]["encoder"]) for n, o in overrides.items()
        if "encoder" in o["set"].get("coupling", {})
    ]
    theory = params.get("theory")
    if theory:
        networks.append(("theory.denoiser.network", theory["denoiser"]["network"]))
    for key, name in networks:
        if name not in params["networks"]:
            raise UserError(f"{source}: key '{key}': unknown network '{name}' "
                            f"(defined under networks: {', '.join(sorted(params['networks']))})")
    for table, allowed in (("couplings", COUPLING_KEYS), ("objectives", OBJECTIVE_KEYS)):
        for name, spec in params[table].items():
            extra = [k for k in spec if k not in allowed[spec["kind"]]]
            if extra:
                users = sorted(kind for kind, keys in allowed.items() if extra[0] in keys)
                raise UserError(f"{source}: key '{table}.{name}.{extra[0]}': does not apply to {table[:-1]} kind "
                                f"'{spec['kind']}' (it applies to: {', '.join(users) or 'none'}); remove it")
    if theory:
        _check_theory(params, theory, source)
    if "official" in params:
        _check_official(params, source)
    if "evidence" in params:
        _check_evidence(params, source)
    if "pilot" in params:
        _check_pilot(params, source)
    for e in experiments(params):
        _check_fidelity(params, e, source)
        _check_order(e, source)
        _check_networks(e, source)
    return params


def _unknown(source: str, key: str, what: str, name: str, table: dict, where: str) -> UserError:
    return UserError(f"{source}: key '{key}': unknown {what} '{name}' (defined under {where}: "
                     f"{', '.join(sorted(table))})")


def _check_evidence(params: dict, source: str) -> None:
    """The protocol names what exists, and the pilot's seeds never decide a claim."""
    spec = params["evidence"]["primary"]
    if spec["objective"] not in params["objectives"]:
        raise _unknown(source, "evidence.primary.objective", "objective", spec["objective"], params["objectives"],
                       "objectives")
    for i, c in enumerate(spec["claims"]):
        for ds in c.get("datasets", []):
            if ds not in spec["datasets"]:
                raise UserError(f"{source}: key 'evidence.primary.claims[{i}].datasets': '{ds}' is not one of "
                                f"evidence.primary.datasets ({', '.join(spec['datasets'])})")
        for side in ("a", "b"):
            if side in c and c[side] not in params["couplings"]:
                raise _unknown(source, f"evidence.primary.claims[{i}].{side}", "coupling", c[side],
                               params["couplings"], "couplings")
    for ds in spec["datasets"]:
        if ds not in params["datasets"]:
            raise _unknown(source, "evidence.primary.datasets", "data set", ds, params["datasets"], "datasets")
    pilot = set(params["evidence"]["pilot_seeds"])
    for i, block in enumerate(params["grid"]):
        shared = sorted(pilot & set(block["seed"]))
        if shared and "pilot" not in params:
            raise UserError(f"{source}: key 'grid[{i}].seed': seed {shared[0]} is one of evidence.pilot_seeds, where "
                            "knobs were tuned; a test seed must be another")


def _check_pilot(params: dict, source: str) -> None:
    """A pilot's candidates are objectives and couplings of this file."""
    spec = params["pilot"]
    for ds, names in spec["schedule"]["candidates"].items():
        if ds not in params["datasets"]:
            raise _unknown(source, "pilot.schedule.candidates", "data set", ds, params["datasets"], "datasets")
        for name in names:
            if name not in params["objectives"]:
                raise _unknown(source, f"pilot.schedule.candidates.{ds}", "objective", name, params["objectives"],
                               "objectives")
    for kind, names in spec["knobs"].items():
        for name in names:
            if name not in params["couplings"]:
                raise _unknown(source, f"pilot.knobs.{kind}", "coupling", name, params["couplings"], "couplings")
    if not Path(spec["for"]).is_file():
        raise UserError(f"{source}: key 'pilot.for': no params file {spec['for']} (the suite this pilot serves)")


def _check_official(params: dict, source: str) -> None:
    from ctcoupling.config.official import RUNS

    for coupling, run in params["official"]["runs"].items():
        key = f"{source}: key 'official.runs.{coupling}'"
        if coupling not in params["couplings"]:
            raise UserError(f"{key}: unknown coupling '{coupling}' (defined under couplings: "
                            f"{', '.join(sorted(params['couplings']))})")
        if run not in RUNS:
            raise UserError(f"{key}: unknown official run '{run}' (have: {', '.join(sorted(RUNS))})")
        kind = params["couplings"][coupling]["kind"]
        if kind not in RUNS[run]["couplings"]:
            raise UserError(f"{key}: official run '{run}' has no {kind} coupling "
                            f"(has: {', '.join(RUNS[run]['couplings'])})")


def _check_finite(node, source: str, path=()) -> None:
    """Every number finite: YAML's .nan and .inf pass JSON-schema bounds (NaN compares false)."""
    if isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, source, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, source, path + (i,))
    elif isinstance(node, float) and not math.isfinite(node):
        raise UserError(f"{source}: key '{_key_path(path)}': {node} is not a finite number")


def _check_order(e: Experiment, source: str) -> None:
    """Pairs of one experiment's resolved settings that must be ordered (an override may set either)."""
    c = e.config

    def key(k: str) -> str:
        return f"{source}: key '{k}' of experiment {e.name}"

    kernel, obj = c["objective"]["kernel"], c["objective"]
    trig = kernel.get("kind") == "trigflow"  # TrigFlow time runs over (0, arctan(sigma_max / sigma_data))
    lo, hi = (0.0, math.atan(kernel["sigma_max"] / kernel["sigma_data"])) if trig else (kernel["sigma_min"],
                                                                                        kernel["sigma_max"])
    if not trig and not kernel["sigma_min"] < kernel["sigma_max"]:
        raise UserError(f"{key(f'objectives.{e.objective}.kernel')}: sigma_min {kernel['sigma_min']:g} must be "
                        f"below sigma_max {kernel['sigma_max']:g}")
    if obj["kind"] == "ict" and obj["s0"] > obj["s1"]:
        raise UserError(f"{key(f'objectives.{e.objective}')}: s0 {obj['s0']} must not exceed s1 {obj['s1']}")
    lo_hi = c["coupling"].get("prediction_range")
    if lo_hi is not None and not lo_hi[0] < lo_hi[1]:
        raise UserError(f"{key(f'couplings.{e.coupling}.prediction_range')}: {lo_hi[0]:g} must be below {lo_hi[1]:g}")
    if c["coupling"].get("mu_ramp_steps", 0) > c["train"]["steps"]:
        raise UserError(f"{key(f'couplings.{e.coupling}.mu_ramp_steps')}: {c['coupling']['mu_ramp_steps']} ramps "
                        f"past the end of training ({c['train']['steps']} steps)")
    train = c["train"]
    if train["ema_gamma"] is not None and train["ema_warmup"] is not None:
        raise UserError(f"{key('train')}: ema_gamma and ema_warmup are two EMA schedules; set one of them")
    sample = c["sample"]
    if len(sample["t_mid"]) != sample["steps"] - 1:
        raise UserError(f"{key('sample.t_mid')}: {len(sample['t_mid'])} times for {sample['steps']} steps "
                        "(give steps - 1 intermediate times)")
    if any(b >= a for a, b in zip(sample["t_mid"], sample["t_mid"][1:])) or any(
            not lo < t < hi for t in sample["t_mid"]):
        raise UserError(f"{key('sample.t_mid')}: times must decrease and stay between " + (
            f"0 and t_max = arctan(sigma_max / sigma_data) = {hi:.4f} (TrigFlow time; the paper's 2-step: [1.1])"
            if trig else "sigma_min and sigma_max"))


@lru_cache(maxsize=1)
def _network_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/network", "$defs": schema()["$defs"]})


def _check_networks(e: Experiment, source: str) -> None:
    """The experiment's networks as its overrides leave them (`set.network` may add any network key)
    against the schema of their kind: a key of another kind is an error here, not in the train job."""
    validator = _network_validator()
    for section, name in (("network", e.config["train"]["network"]), ("encoder_network", e.config["coupling"].get("encoder"))):
        if section in e.config:
            error = jsonschema.exceptions.best_match(validator.iter_errors(e.config[section]))
            if error is not None:
                while error.context:
                    error = jsonschema.exceptions.best_match(error.context)
                raise UserError(f"{source}: key 'networks.{name}' of experiment {e.name}, after its overrides: "
                                f"{_describe(error).split(': ', 1)[1]}")


def _check_fidelity(params: dict, e: Experiment, source: str) -> None:
    fid, key = e.config["evaluate"]["fidelity"], f"{source}: key 'evaluate.fidelity' of experiment {e.name}"
    if fid["features"] == "none":
        return
    if is_2d(params, e.dataset):
        raise UserError(f"{key}: {e.dataset} is a 2-D point set; image metrics need images (use features: none)")
    if fid["features"] == "classifier" and "classifier" not in params:
        raise UserError(f"{key}: features 'classifier' needs a top-level `classifier` section (epochs, batch, lr, seed)")
    if fid["protocol"] != "standard" and not fid["stream"]:
        raise UserError(f"{key}: protocol '{fid['protocol']}' converts the generated floats itself; it needs "
                        "stream: true (samples.npz holds images already rounded by the standard protocol)")
    if fid["stream"]:
        if fid["n"] is None:
            raise UserError(f"{key}: stream needs n, the images generated per seed (the papers: 50000)")
        if max(fid["steps"]) - 1 > len(e.config["sample"]["t_mid"]):
            raise UserError(f"{key}: steps {fid['steps']} need {max(fid['steps']) - 1} intermediate times in "
                            f"sample.t_mid (have {len(e.config['sample']['t_mid'])})")


def _check_theory(params: dict, theory: dict, source: str) -> None:
    """The theory stage needs an IC run of its objective and seed on every data set it measures."""
    times = theory["times"]
    if any(b <= a for a, b in zip(times, times[1:])):
        raise UserError(f"{source}: key 'theory.times': times must increase")
    th = theory["theorem1"]
    if th["t_max"] <= th["t_min"]:
        raise UserError(f"{source}: key 'theory.theorem1': t_max must exceed t_min")
    for ds in theory["datasets"]:
        if ds not in params["datasets"]:
            raise UserError(f"{source}: key 'theory.datasets': unknown dataset '{ds}' "
                            f"(defined under datasets: {', '.join(sorted(params['datasets']))})")
        for seed in theory_seeds(params):
            if "ic" not in theory_runs(params, ds, seed):
                raise UserError(f"{source}: key 'theory.datasets': '{ds}' has no IC run of objective "
                                f"'{theory['objective']}' and seed {seed} (theory.seed or theory.seeds) in the grid "
                                "(add one, or remove the seed or the data set)")


def load(path: str | Path) -> dict:
    """Read and validate a params YAML file; every problem becomes one UserError line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: params file not found") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read params file ({e.strerror})") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return validate(params, str(path))


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in update.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


@dataclass(frozen=True)
class Experiment:
    dataset: str
    objective: str
    coupling: str
    seed: int
    config: dict = field(compare=False, repr=False)
    overrides: tuple[str, ...] = field(default=(), compare=False)
    ignored: tuple[str, ...] = field(default=(), compare=False)  # settings that do not apply to this cell

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.objective}-{self.coupling}-s{self.seed}"


def _matches(match: dict, cell: dict) -> bool:
    return all(cell[axis] in values for axis, values in match.items())


def experiments(params: dict) -> list[Experiment]:
    """The grid's cells in file order, each with its resolved settings (duplicates removed)."""
    seen, out = set(), []
    for block in params["grid"]:
        for cell in itertools.product(*(block[a] for a in AXES)):
            cell = dict(zip(AXES, cell))
            key = tuple(cell.values())
            if key in seen:
                continue
            seen.add(key)
            config = {
                "dataset": cell["dataset"],
                "seed": cell["seed"],
                "objective": params["objectives"][cell["objective"]],
                "coupling": params["couplings"][cell["coupling"]],
                "train": params["train"],
                "sample": params["sample"],
                "evaluate": params["evaluate"],
            }
            applied = tuple(n for n, o in params.get("overrides", {}).items() if _matches(o["match"], cell))
            sets = [params["overrides"][n]["set"] for n in applied]
            for s in sets:  # train.network may be overridden, so resolve it before the network section
                config = deep_merge(config, {k: v for k, v in s.items() if k != "network"})
            config = deep_merge({k: DEFAULTS[k] for k in ("train", "sample", "evaluate")}, config)
            for section in ("objective", "coupling"):
                config[section] = deep_merge(DEFAULTS[section].get(config[section]["kind"], {}), config[section])
            config, ignored = _applicable(config, is_2d(params, cell["dataset"]))
            config["network"] = params["networks"][config["train"]["network"]]
            if "encoder" in config["coupling"]:
                config["encoder_network"] = params["networks"][config["coupling"]["encoder"]]
            for s in sets:
                config = deep_merge(config, {k: v for k, v in s.items() if k == "network"})
            config, ignored = _class_labels(config, ignored)
            out.append(Experiment(**cell, config=config, overrides=applied, ignored=ignored))
    return out


def _applicable(config: dict, points: bool) -> tuple[dict, tuple[str, ...]]:
    """Drop the settings that do not apply to this cell (set by an override or a shared section), and
    name them: coupling and objective keys of another kind, flips of 2-D points. (`sample.ot_pairing`
    applies to every coupling: VCT uses it on OT runs, and it changes IC's 2-step samples as much.)"""
    ignored = []
    for section, allowed in (("coupling", COUPLING_KEYS), ("objective", OBJECTIVE_KEYS)):
        spec = config[section] = dict(config[section])  # never the params' own section
        for k in [k for k in spec if k not in allowed[spec["kind"]]]:
            ignored.append(f"{section}.{k} (not a setting of {section} kind {spec['kind']})")
            del spec[k]
    if config["train"]["hflip"] and points:
        ignored.append("train.hflip (2-D points are not images)")
        config["train"]["hflip"] = False
    if "ema_form" in config["train"] and config["train"].get("ema_gamma") is None:
        config["train"] = {k: v for k, v in config["train"].items() if k != "ema_form"}
        ignored.append("train.ema_form (applies to the power EMA, train.ema_gamma, which is unset)")
    if config["train"].get("ema_warmup") is not None and "ema_start" not in config["train"]:
        config["train"] = {**config["train"], "ema_start": 0}
    elif "ema_start" in config["train"] and config["train"].get("ema_warmup") is None:
        config["train"] = {k: v for k, v in config["train"].items() if k != "ema_start"}
        ignored.append("train.ema_start (applies to ema-pytorch's warm-up, train.ema_warmup, which is unset)")
    return config, tuple(ignored)


def _class_labels(config: dict, ignored: tuple[str, ...]) -> tuple[dict, tuple[str, ...]]:
    """`sample.labels` (how a class-conditional model's samples take their classes) defaults to
    balanced where the network has a label_dim, and is dropped, and named, where it has none."""
    sample = config["sample"] = dict(config["sample"])
    if config["network"].get("label_dim"):
        sample.setdefault("labels", "balanced")
    elif "labels" in sample:
        del sample["labels"]
        ignored = (*ignored, "sample.labels (the network is unconditional: label_dim 0)")
    return config, ignored


TRAIN_SECTIONS = ("dataset", "seed", "objective", "coupling", "network", "encoder_network", "train")


def train_config(exp: Experiment) -> dict:
    """The settings training reads (stored in model.pt): not the sample or evaluate sections, so that
    changing those neither re-trains nor changes the checkpoint."""
    return {k: v for k, v in exp.config.items() if k in TRAIN_SECTIONS}


def trained_by(params: dict) -> dict[str, str]:
    """Experiments whose training is another's, bit for bit: the same train_config (data set, seed,
    objective, coupling, networks, train), differing only in how they are sampled or scored (the
    sampler ablation's ic_paired and ot_paired are ic and ot re-sampled). Each maps to the first such
    experiment in grid order, whose run it copies instead of training again (stages.train)."""
    first, out = {}, {}
    for e in experiments(params):
        key = json.dumps(train_config(e), sort_keys=True, default=str)
        if key in first:
            out[e.name] = first[key]
        else:
            first[key] = e.name
    return out


def experiment(params: dict, name: str, source: str = "params") -> Experiment:
    for e in experiments(params):
        if e.name == name:
            return e
    names = [e.name for e in experiments(params)]
    raise UserError(f"{source}: no experiment '{name}' in the grid (have: {', '.join(names)})")


def theory_seeds(params: dict) -> list[int]:
    """The seeds whose runs the theory claims are decided over: `theory.seed` first, then the others of
    `theory.seeds`."""
    th = params["theory"]
    return [th["seed"]] + [s for s in th.get("seeds", []) if s != th["seed"]]


def theory_runs(params: dict, dataset: str, seed: int | None = None) -> dict[str, Experiment]:
    """The runs the theory stage measures on a data set: of each coupling kind, the coupling named as
    the kind (else the first) with the theory section's objective and seed (or `seed`), keyed by kind."""
    th, out = params["theory"], {}
    seed = th["seed"] if seed is None else seed
    for e in experiments(params):  # the coupling named as its kind first (not a sweep's gc_mu1)
        if (e.dataset, e.objective, e.seed) == (dataset, th["objective"], seed):
            kind = e.config["coupling"]["kind"]
            if kind not in out or (e.coupling == kind and out[kind].coupling != kind):
                out[kind] = e
    return out


def mu_values(couplings: dict) -> dict[str, float]:
    """GC's mu sweep (GC paper Fig. 5): coupling name -> mu; IC (the coupling named `ic`) is mu = 0,
    and every GC-kind coupling with a constant mu is in it."""
    out = {n: 0.0 for n, c in couplings.items() if c["kind"] == "ic" and n == "ic"}
    return out | {n: float(c["mu"]) for n, c in couplings.items() if c["kind"] == "gc" and not c.get("mu_ramp_steps")}


def kl_values(couplings: dict) -> dict[str, float]:
    """VC's kl_scale ablation: coupling name -> kl_scale for every VC-kind coupling."""
    return {n: float(c["kl_scale"]) for n, c in couplings.items() if c["kind"] == "vc"}


def sweeps(params: dict) -> dict[str, list[tuple[str, str]]]:
    """The (data set, objective) pairs of the grid that hold a mu sweep (>= 3 mu values) and a
    kl_scale ablation (>= 2 kl_scale values on a two-Gaussian set)."""
    found: dict[str, dict] = {"mu": {}, "kl": {}}
    mus, kls = mu_values(params["couplings"]), kl_values(params["couplings"])
    for e in experiments(params):
        key = (e.dataset, e.objective)
        if e.coupling in mus:
            found["mu"].setdefault(key, set()).add(mus[e.coupling])
        if e.coupling in kls and params["datasets"][e.dataset]["source"] == "two_gaussians":
            found["kl"].setdefault(key, set()).add(kls[e.coupling])
    return {"mu": [k for k, v in found["mu"].items() if len(v) >= 3],
            "kl": [k for k, v in found["kl"].items() if len(v) >= 2]}


MAIN = ("ic", "ot", "vc", "gc", "vcgc")  # the coupling kinds, in the order tables and figures show them
def continuous_spec(params: dict) -> dict | None:
    """`evidence.continuous`, or where params have none (the smoke params) the one inferred from the grid:
    the first objectives of kind sct and scd_exact, every coupling, every data set."""
    spec = (params.get("evidence") or {}).get("continuous")
    if spec:
        return spec
    kinds = {}
    for e in experiments(params):
        kinds.setdefault(e.config["objective"]["kind"], e.objective)
    if not {"sct", "scd_exact"} <= set(kinds):
        return None
    return {"objective": kinds["sct"], "oracle": kinds["scd_exact"], "datasets": dataset_names(params),
            "couplings": list(MAIN)}


def continuous_runs(params: dict, dataset: str, seed: int) -> tuple["Experiment | None", dict[str, Experiment]]:
    """(the oracle's run, {coupling kind: sCT run}) of `evidence.continuous` on a data set and seed: what
    the theory stage measures the continuous-time discrepancy on; (None, {}) without them."""
    spec = continuous_spec(params)
    if not spec or dataset not in spec["datasets"]:
        return None, {}
    oracle, out = None, {}
    for e in experiments(params):
        if (e.dataset, e.seed) != (dataset, seed):
            continue
        if e.objective == spec["oracle"] and e.coupling == "ic":
            oracle = e
        elif e.objective == spec["objective"] and e.coupling in spec["couplings"]:
            out[e.config["coupling"]["kind"]] = e
    return (oracle, out) if oracle is not None and "ic" in out else (None, {})


LABEL = {"ic": "IC", "ot": "OT", "vc": "VC", "gc": "GC", "vcgc": "VC+GC"}


def is_main(e: Experiment) -> bool:
    """A run of the main names: objective and coupling named as their kinds (not a sweep's gc_mu1 or
    an ablation's ict_s320), the runs the samples and curves figures show."""
    return e.objective == e.config["objective"]["kind"] and e.coupling == e.config["coupling"]["kind"]


def _flat(node: dict, prefix: str = "") -> dict:
    """{'a.b': value} for every leaf of a nested dict."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def variants(params: dict) -> list[dict]:
    """Every variant cell of the grid, a run whose objective or coupling has a name other than its kind
    (`ict_s320`, `ic_paired`, `gc_mu1`), against the run of the main names (`ict`, `ic`, `gc`) of the
    same data set and seed, where the grid has both. Each: dataset, objective, coupling, ref_objective,
    ref_coupling, seeds (those both have), change ({key: (variant's value, reference's value)} of the
    resolved settings that differ) and swept: the key a sweep varies (`coupling.mu`, `coupling.kl_scale`)
    for a sweep's coupling, else None."""
    runs = {(e.dataset, e.objective, e.coupling, e.seed): e for e in experiments(params)}
    swept = {n: "coupling.mu" for n in mu_values(params["couplings"])}
    swept |= {n: "coupling.kl_scale" for n in kl_values(params["couplings"])}
    groups: dict[tuple, dict] = {}
    for (ds, obj, cpl, seed), e in runs.items():
        ref_obj, ref_cpl = e.config["objective"]["kind"], e.config["coupling"]["kind"]
        if (obj, cpl) == (ref_obj, ref_cpl) or (ds, ref_obj, ref_cpl, seed) not in runs:
            continue
        a, b = _flat(e.config), _flat(runs[(ds, ref_obj, ref_cpl, seed)].config)
        change = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        g = groups.setdefault((ds, obj, cpl), {"dataset": ds, "objective": obj, "coupling": cpl, "ref_objective":
                                               ref_obj, "ref_coupling": ref_cpl, "seeds": [], "change": change,
                                               "swept": swept.get(cpl) if cpl != ref_cpl else None})
        g["seeds"].append(seed)
    return list(groups.values())


def ablations(params: dict) -> list[dict]:
    """The one-change ablations: the variants that are not a sweep's (those have sections of their own)."""
    return [v for v in variants(params) if not v["swept"]]


def confounds(params: dict) -> list[dict]:
    """The sweeps' couplings that differ from their main coupling in more than the swept key (say, an
    override that matches `vc` by name and not `vc_kl30`): their sweep then measures two changes."""
    return [v for v in variants(params) if v["swept"] and set(v["change"]) - {v["swept"]}]


def dataset_names(params: dict) -> list[str]:
    return list(params["datasets"])


def is_2d(params: dict, dataset: str) -> bool:
    """Toy point sets (plotted as scatter) as opposed to images (plotted as grids)."""
    return params["datasets"][dataset]["source"] in TOY_SOURCES


def stage_param_keys(params: dict, stage: str, target: "str | Experiment") -> list[str]:
    """The exact params keys a stage reads (dvc.yaml `params:`), so `dvc repro` re-runs only what changed.
    `target`: a data set's name, or an experiment (its name, or the Experiment itself, which spares
    expanding the grid again: `pipeline.stages` does this once per stage of every experiment)."""
    if stage == "prepare":
        return ["threads", f"datasets.{target}"]
    if stage == "report":
        return ["grid", "report"] + (["theory.datasets"] if params.get("theory") else [])
    if stage == "classifier":
        return ["threads", "classifier"]
    if stage == "audit":
        return ["grid"]
    if stage == "theory":
        th = params["theory"]
        cont = ["evidence.continuous"] if (params.get("evidence") or {}).get("continuous") else []
        return ["threads", "theory", f"networks.{th['denoiser']['network']}"] + cont
    exp = target if isinstance(target, Experiment) else experiment(params, target)
    sections = {"train": ("objective", "coupling", "network", "train"), "sample": ("sample",),
                "evaluate": ("evaluate",), "curve": ("sample", "evaluate")}[stage]
    keys = ["threads"]
    if stage == "train":
        keys += [f"objectives.{exp.objective}", f"couplings.{exp.coupling}",
                 f"networks.{exp.config['train']['network']}"]
        if "encoder" in exp.config["coupling"] and exp.config["coupling"]["encoder"] != exp.config["train"]["network"]:
            keys.append(f"networks.{exp.config['coupling']['encoder']}")
        keys.append("train")
    else:
        keys += list(sections)
    for name in exp.overrides:
        keys += [f"overrides.{name}.match"] + [
            f"overrides.{name}.set.{s}" for s in sections if s in params["overrides"][name]["set"]]
    return keys
