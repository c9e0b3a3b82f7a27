"""Every veRL symbol siri_rl relies on, imported and shape-checked against the installed veRL, so that a veRL upgrade
which moves, renames or reshapes one (``verl.experimental.*`` included) fails here in seconds rather than in a run
on a GPU cluster: the modules and names siri_rl imports, the names the recipe config makes veRL load, the entry
points it runs, and the methods it overrides (coroutine or not, and the parameters veRL calls them with)."""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from pathlib import Path

import pytest

pytest.importorskip("verl", reason="veRL is not installed: pip install 'siri-rl[verl]'")

from omegaconf import OmegaConf  # noqa: E402

from siri_rl.engines.verl import AGENT_LOOP_YAML, CONFIG_DIR, CONFIG_NAME  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "siri_rl"
P = inspect.Parameter


def verl_imports() -> set[tuple[str, str | None]]:
    """``(module, name)`` for every ``from verl... import name`` and ``(module, None)`` for every ``import verl...``
    in siri_rl's sources, function-level imports included."""
    found: set[tuple[str, str | None]] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "verl":
                found.update((node.module, alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update((a.name, None) for a in node.names if a.name.split(".")[0] == "verl")
    return found


def test_every_verl_import_of_siri_rl_resolves():
    found = verl_imports()
    # the scan sees the imports the engine is built on (a scan that found nothing would pass vacuously)
    assert {
        ("verl.experimental.agent_loop", "AgentLoopManager"),
        ("verl.experimental.agent_loop.single_turn_agent_loop", "SingleTurnAgentLoop"),
        ("verl.experimental.reward_loop.reward_manager.naive", "NaiveRewardManager"),
        ("verl.utils.config", "validate_config"),
    } <= found
    missing = []
    for module, name in sorted(found, key=str):
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            missing.append(f"{module} ({err})")
            continue
        if name is not None and not hasattr(mod, name) and importlib.util.find_spec(f"{module}.{name}") is None:
            missing.append(f"{module}.{name}")
    assert not missing, f"veRL no longer provides: {missing}"


def test_names_the_recipe_config_makes_verl_load():
    """The recipe config names classes and modules that veRL imports by name, with its own loaders
    (verl/utils/import_utils.py: load_class_from_fqn for the manager, load_extern_object for the reward)."""
    from hydra.utils import get_class
    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
    from verl.utils.import_utils import load_class_from_fqn, load_extern_object, load_module

    from siri_rl.engines.verl.agent_loop import AGENT_NAME, SiriSingleTurnAgentLoop
    from siri_rl.engines.verl.manager import SiriAgentLoopManager
    from siri_rl.engines.verl.reward import compute_score
    from siri_rl.engines.verl.reward_manager import SiriRewardManager

    recipe = OmegaConf.load(CONFIG_DIR / f"{CONFIG_NAME}.yaml")
    assert list(recipe.defaults) == ["ppo_trainer", "_self_"]
    # the searchpath finds veRL's ppo_trainer.yaml in the installed package
    (searchpath,) = recipe.hydra.searchpath
    package = searchpath.removeprefix("pkg://")
    assert importlib.resources.files(package).joinpath("ppo_trainer.yaml").is_file()

    agent = recipe.actor_rollout_ref.rollout.agent
    assert load_class_from_fqn(agent.agent_loop_manager_class) is SiriAgentLoopManager
    (entry,) = OmegaConf.load(AGENT_LOOP_YAML)
    assert entry.name == agent.default_agent_loop == AGENT_NAME
    assert get_class(entry._target_) is SiriSingleTurnAgentLoop  # what hydra.utils.instantiate builds
    assert _agent_loop_registry[AGENT_NAME] == {"_target_": entry._target_}  # @register on import agrees

    rf = recipe.reward.custom_reward_function
    assert load_extern_object(module_path=rf.path, object_name=rf.name) is compute_score
    manager = recipe.reward.reward_manager
    assert manager.source == "importlib"
    assert getattr(load_module(manager.module.path), manager.name) is SiriRewardManager


def test_verl_entry_points_siri_runs(tmp_path, monkeypatch):
    """``python -m verl.trainer.main_ppo`` (a Hydra app) and ``python -m verl.model_merger merge`` with the flags
    merge.py passes, parsed by veRL's own argument parser (verl/model_merger/base_model_merger.py:34-79)."""
    from verl.model_merger.base_model_merger import generate_config_from_args, parse_args

    from siri_rl.engines.verl.merge import merge_command

    main_ppo = importlib.import_module("verl.trainer.main_ppo")
    assert callable(main_ppo.main) and importlib.util.find_spec("verl.model_merger.__main__") is not None

    actor = tmp_path / "global_step_4" / "actor"
    command = merge_command(actor, tmp_path / "merged", trust_remote_code=True)
    assert command[1:4] == ["-m", "verl.model_merger", "merge"]
    monkeypatch.setattr(sys, "argv", command[2:])  # argv[0] is the program, as under `python -m`
    config = generate_config_from_args(parse_args())
    assert (config.operation, config.backend, config.trust_remote_code) == ("merge", "fsdp", True)
    assert (config.local_dir, config.target_dir) == (str(actor), str(tmp_path / "merged"))
    assert config.hf_model_config_path == str(actor / "huggingface")  # the config and tokenizer veRL saves


def accepts_calls_of(ours, base) -> None:
    """``ours`` can stand in for ``base`` wherever veRL calls ``base``: the same wrapping (veRL's ``auto_await``
    wraps every wrapper in one code object), coroutine functions underneath, the same leading positional
    parameters, and every other parameter of ``base`` passed on by keyword (``ours`` takes ``**kwargs``)."""
    assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(base)
    if hasattr(base, "__wrapped__") and not inspect.iscoroutinefunction(base):
        assert getattr(ours, "__code__", None) is base.__code__, f"{ours} is not wrapped like {base}"
    assert inspect.iscoroutinefunction(inspect.unwrap(ours)) and inspect.iscoroutinefunction(inspect.unwrap(base))
    positional = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
    mine = list(inspect.signature(ours).parameters.values())
    theirs = list(inspect.signature(base).parameters.values())
    lead = [p.name for p in mine if p.kind in positional]
    assert [p.name for p in theirs[: len(lead)]] == lead, f"{base} now takes {theirs}"
    rest = [p for p in theirs[len(lead) :] if p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)]
    if rest:
        assert mine[-1].kind is P.VAR_KEYWORD and all(p.default is not P.empty for p in rest), rest


def test_overridden_methods_keep_verl_shape():
    from verl.experimental.agent_loop import AgentLoopManager
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput
    from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

    from siri_rl.engines.verl.agent_loop import SiriSingleTurnAgentLoop
    from siri_rl.engines.verl.manager import SiriAgentLoopManager

    # veRL's worker awaits agent_loop.run(sampling_params, **batch_fields) (agent_loop.py:694): the round's cap
    # reaches ours as the batch field siri_max_len, so the base methods must keep taking the fields as **kwargs.
    for base in (SingleTurnAgentLoop.run, AgentLoopBase.run):
        accepts_calls_of(SiriSingleTurnAgentLoop.run, base)
        assert list(inspect.signature(base).parameters)[:2] == ["self", "sampling_params"]
        assert list(inspect.signature(base).parameters.values())[-1].kind is P.VAR_KEYWORD
    assert {"response_ids", "extra_fields"} <= set(AgentLoopOutput.model_fields)  # what ours reads and writes
    assert "hf_model_type" in inspect.signature(AgentLoopBase.__init__).parameters  # ours picks the builder

    # The trainer calls manager.generate_sequences(batch) once per round; ours awaits the base's inside its own.
    accepts_calls_of(SiriAgentLoopManager.generate_sequences, AgentLoopManager.generate_sequences)
    assert list(inspect.signature(AgentLoopManager.__init__).parameters)[:2] == ["self", "config"]
    assert inspect.ismethod(AgentLoopManager.create)  # how veRL builds a manager class named in the config


def test_called_verl_functions_take_the_arguments_siri_passes():
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    from siri_rl.engines.verl.reward import compute_score

    inspect.signature(validate_config).bind(config=None, use_reference_policy=False, use_critic=False)
    inspect.signature(need_critic).bind(None)
    inspect.signature(need_reference_policy).bind(None)
    inspect.signature(create_continuous_token_builder).bind(None, hf_model_type="qwen2")
    # SiriRewardManager passes (config, tokenizer, compute_score) on; veRL's naive manager calls the reward with
    # these keywords plus the config's reward_kwargs (naive.py:66-83)
    assert list(inspect.signature(NaiveRewardManager.__init__).parameters)[:4] == [
        "self", "config", "tokenizer", "compute_score"
    ]  # fmt: skip
    inspect.signature(compute_score).bind(
        data_source="siri_math", solution_str="</think>\\boxed{1}", ground_truth="1", extra_info={},
        require_think_end=True,
    )  # fmt: skip


def test_shape_check_catches_a_reshaped_method():
    """The check above fails on the changes it guards against: a new required parameter, a sync override of a
    coroutine, an override that lost veRL's auto_await."""
    from verl.experimental.agent_loop import AgentLoopManager
    from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

    async def ours(self, sampling_params, **kwargs): ...
    async def reshaped(self, sampling_params, priority, **kwargs): ...
    def sync(self, sampling_params, **kwargs): ...
    async def unwrapped(self, prompts): ...

    accepts_calls_of(ours, SingleTurnAgentLoop.run)
    for mine, base in ((ours, reshaped), (sync, SingleTurnAgentLoop.run), (unwrapped, AgentLoopManager.generate_sequences)):
        with pytest.raises(AssertionError):
            accepts_calls_of(mine, base)
