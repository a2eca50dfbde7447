"""Load and validate a params file; expand its grid into experiments with resolved settings.

An experiment is one (dataset, objective, coupling, seed) cell of the grid. Its settings are the
named sections it selects (`objectives.<o>`, `couplings.<c>`, `networks.<train.network>`) plus the
global `train`, `sample` and `evaluate`, with every matching override deep-merged on top, in file
order. `stage_param_keys` says which params keys each stage reads, for dvc.yaml.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from .data import TOY_SOURCES
from .errors import UserError

AXES = ("dataset", "objective", "coupling", "seed")
SECTIONS = ("objective", "coupling", "network", "train", "sample", "evaluate")


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
    if error.validator == "required":
        return f"key '{key}': {error.message}"
    return f"key '{key}': {error.message}"


def validate(params: dict, source: str = "params") -> dict:
    """Validate against workflow/schemas/params.schema.yaml and cross-check the names the grid uses."""
    if not isinstance(params, dict):
        raise UserError(f"{source}: expected a mapping of params at the top level")
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
    if theory:
        _check_theory(params, theory, source)
    for e in experiments(params):
        _check_fidelity(params, e, source)
        sample = e.config["sample"]
        if len(sample["t_mid"]) != sample["steps"] - 1:
            raise UserError(f"{source}: key 'sample.t_mid' of experiment {e.name}: {len(sample['t_mid'])} times "
                            f"for {sample['steps']} steps (give steps - 1 intermediate times)")
        if any(b >= a for a, b in zip(sample["t_mid"], sample["t_mid"][1:])) or any(
                t >= e.config["objective"]["kernel"]["sigma_max"] for t in sample["t_mid"]):
            raise UserError(f"{source}: key 'sample.t_mid' of experiment {e.name}: times must decrease "
                            "and stay below sigma_max")
    return params


def _check_fidelity(params: dict, e: Experiment, source: str) -> None:
    fid, key = e.config["evaluate"]["fidelity"], f"{source}: key 'evaluate.fidelity' of experiment {e.name}"
    if fid["features"] == "none":
        return
    if is_2d(params, e.dataset):
        raise UserError(f"{key}: {e.dataset} is a 2-D point set; image metrics need images (use features: none)")
    if fid["features"] == "classifier" and "classifier" not in params:
        raise UserError(f"{key}: features 'classifier' needs a top-level `classifier` section (epochs, batch, lr, seed)")
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
        if "ic" not in theory_runs(params, ds):
            raise UserError(f"{source}: key 'theory.datasets': '{ds}' has no IC run of objective "
                            f"'{theory['objective']}' and seed {theory['seed']} in the grid (add one, or remove "
                            "the data set from theory.datasets)")


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
            config["network"] = params["networks"][config["train"]["network"]]
            if "encoder" in config["coupling"]:
                config["encoder_network"] = params["networks"][config["coupling"]["encoder"]]
            for s in sets:
                config = deep_merge(config, {k: v for k, v in s.items() if k == "network"})
            out.append(Experiment(**cell, config=config, overrides=applied))
    return out


TRAIN_SECTIONS = ("dataset", "seed", "objective", "coupling", "network", "encoder_network", "train")


def train_config(exp: Experiment) -> dict:
    """The settings training reads (stored in model.pt): not the sample or evaluate sections, so that
    changing those neither re-trains nor changes the checkpoint."""
    return {k: v for k, v in exp.config.items() if k in TRAIN_SECTIONS}


def experiment(params: dict, name: str, source: str = "params") -> Experiment:
    for e in experiments(params):
        if e.name == name:
            return e
    names = [e.name for e in experiments(params)]
    raise UserError(f"{source}: no experiment '{name}' in the grid (have: {', '.join(names)})")


def theory_runs(params: dict, dataset: str) -> dict[str, Experiment]:
    """The runs the theory stage measures on a data set: the first of each coupling kind with the
    theory section's objective and seed, keyed by kind (ic, ot, vc, gc, vcgc)."""
    th, out = params["theory"], {}
    for e in experiments(params):
        if (e.dataset, e.objective, e.seed) == (dataset, th["objective"], th["seed"]):
            out.setdefault(e.config["coupling"]["kind"], e)
    return out


def dataset_names(params: dict) -> list[str]:
    return list(params["datasets"])


def is_2d(params: dict, dataset: str) -> bool:
    """Toy point sets (plotted as scatter) as opposed to images (plotted as grids)."""
    return params["datasets"][dataset]["source"] in TOY_SOURCES


def stage_param_keys(params: dict, stage: str, target: str) -> list[str]:
    """The exact params keys a stage reads (dvc.yaml `params:`), so `dvc repro` re-runs only what changed."""
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
        return ["threads", "theory", f"networks.{th['denoiser']['network']}"]
    exp = experiment(params, target)
    sections = {"train": ("objective", "coupling", "network", "train"), "sample": ("sample",),
                "evaluate": ("evaluate",)}[stage]
    keys = ["threads"]
    if stage == "train":
        keys += [f"objectives.{exp.objective}", f"couplings.{exp.coupling}",
                 f"networks.{exp.config['train']['network']}"]
        if "encoder" in exp.config["coupling"] and exp.config["coupling"]["encoder"] != exp.config["train"]["network"]:
            keys.append(f"networks.{exp.config['coupling']['encoder']}")
        keys.append("train")
    else:
        keys.append(stage)
    for name in exp.overrides:
        keys += [f"overrides.{name}.match"] + [
            f"overrides.{name}.set.{s}" for s in sections if s in params["overrides"][name]["set"]]
    return keys
