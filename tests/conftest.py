"""Shared fixtures: the shared data beside the checkout, the real R1-distill tokenizer, a tiny random Qwen2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--shared-dir", default=None, help="path to the shared data folder (default: ../shared)")


@pytest.fixture(scope="session")
def shared_dir(request: pytest.FixtureRequest) -> Path:
    """The shared data folder (``--shared-dir``, ``$SIRI_SHARED_DIR`` or ``../shared`` beside the checkout)."""
    path = Path(request.config.getoption("--shared-dir") or os.environ.get("SIRI_SHARED_DIR") or REPO.parent / "shared")
    if not (path / "data").is_dir():
        if os.environ.get("SIRI_REQUIRE_SHARED") == "1":  # .ci/run: missing data must fail the run, not skip
            pytest.fail(f"shared data not found at {path} but SIRI_REQUIRE_SHARED=1 (set SIRI_SHARED_DIR)")
        pytest.skip(f"shared data not found at {path} (set SIRI_SHARED_DIR or --shared-dir)")
    return path


@pytest.fixture(scope="session")
def benchmarks_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "benchmarks"


@pytest.fixture(scope="session")
def r1_tokenizer_dir(shared_dir: Path) -> Path:
    path = shared_dir / "tokenizers" / "deepseek-r1-distill-qwen"
    if not path.is_dir():
        pytest.skip(f"R1-distill tokenizer not found at {path}")
    return path


@pytest.fixture(scope="session")
def r1_tokenizer(r1_tokenizer_dir: Path):
    from siri_rl.prompts import load_tokenizer

    return load_tokenizer(r1_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory, r1_tokenizer) -> Path:
    """A randomly initialised ~5M-parameter Qwen2 with the real R1-distill tokenizer, saved with
    ``save_pretrained`` so that anything taking a model path can load it."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(r1_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=r1_tokenizer.bos_token_id,
        eos_token_id=r1_tokenizer.eos_token_id,
        pad_token_id=r1_tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-qwen2")
    model.save_pretrained(path)
    r1_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tokenizer(tiny_qwen2_dir: Path):
    """The R1-distill tokenizer as the engines load it: ``AutoTokenizer`` on a model directory whose config.json says
    qwen2 (loaded from the bare tokenizer folder, transformers 5 picks a LlamaTokenizer that drops whitespace)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    assert tok.encode("a\nb", add_special_tokens=False) == [64, 198, 65]
    return tok


@pytest.fixture(scope="session")
def vllm_qwen2_dir(tmp_path_factory: pytest.TempPathFactory, r1_tokenizer) -> Path:
    """A random ~40M-parameter Qwen2 that vLLM's CPU attention accepts (head_dim 64; it rejects the 8 of
    ``tiny_qwen2_dir``), with the real R1-distill tokenizer and an end-of-sequence habit: every token embedding
    carries a constant feature that the untied output row of EOS reads, so about a quarter of the samples stop
    within 24 tokens and the rest run to the cap (both finish reasons occur)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(r1_tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
        bos_token_id=r1_tokenizer.bos_token_id, eos_token_id=r1_tokenizer.eos_token_id,
        pad_token_id=r1_tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 3.0
        model.lm_head.weight[r1_tokenizer.eos_token_id, 0] = 0.42
    path = tmp_path_factory.mktemp("vllm-qwen2")
    model.save_pretrained(path)
    r1_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def vllm_env() -> dict[str, str]:
    """Environment for a vLLM engine on this CPU: a small KV cache (GiB). Fails instead of skipping where CI says
    vLLM must be there (``SIRI_REQUIRE_VLLM=1``), so a broken install cannot turn the vLLM tests into skips."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("SIRI_REQUIRE_VLLM") == "1":
            pytest.fail("vLLM is not installed but SIRI_REQUIRE_VLLM=1 (see .ci/run for the CPU install)")
        pytest.skip("vLLM is not installed (CPU machines: see the README's test command)")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return dict(os.environ)


@pytest.fixture(scope="session")
def think_special_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2_dir: Path) -> Path:
    """The tiny Qwen2 with two changes some real models have: its tokenizer marks ``</think>`` special
    (R1-distill's own keeps it an ordinary added token, id 151649), and its generation_config.json ends a response
    on two ids, R1's end of sentence and ``<|EOT|>`` (151647, an ordinary added token of the R1 tokenizer)."""
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    path = tmp_path_factory.mktemp("think-special")
    shutil.copytree(tiny_qwen2_dir, path, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    tok.add_special_tokens({"additional_special_tokens": ["</think>"]})
    tok.save_pretrained(path)
    eot = tok.convert_tokens_to_ids("<|EOT|>")
    GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id, eot],
                     pad_token_id=tok.pad_token_id).save_pretrained(path)
    reloaded = AutoTokenizer.from_pretrained(path)
    think_end = reloaded.convert_tokens_to_ids("</think>")
    assert think_end == 151649 and reloaded.added_tokens_decoder[think_end].special, "</think> did not stay special"
    return path


def _toy_qwen2(path: Path, *, hidden_size: int, intermediate_size: int, tie: bool = True,
               lm_head_scale: float = 1.0) -> Path:
    """A random one-layer Qwen2 with two heads and the toy tokenizer, saved at ``path``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from siri_rl.toy.tokenizer import build_toy_tokenizer

    torch.manual_seed(0)
    tok = build_toy_tokenizer()
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=hidden_size,
                                         intermediate_size=intermediate_size, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                         tie_word_embeddings=tie, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id))
    if lm_head_scale != 1.0:
        with torch.no_grad():
            model.lm_head.weight.mul_(lm_head_scale)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 (hidden 16) with the toy tokenizer: TRL engine runs in seconds."""
    return _toy_qwen2(tmp_path_factory.mktemp("tiny-toy"), hidden_size=16, intermediate_size=32)


@pytest.fixture(scope="session")
def vllm_toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random Qwen2 with the toy tokenizer that vLLM's CPU attention accepts (head_dim 64), with an output layer
    sharp enough (untied, x10) that a change of the weights moves the log-probs measurably."""
    return _toy_qwen2(tmp_path_factory.mktemp("vllm-toy"), hidden_size=128, intermediate_size=128, tie=False,
                      lm_head_scale=10.0)


@pytest.fixture(scope="session")
def answering_toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 with the toy tokenizer, fine-tuned (seconds) to answer every prompt with
    ``</think>\\n\\boxed{3}`` or ``</think>\\n\\boxed{4}`` (then EOS), each about half the time: 8 tokens, so under a
    cap of 8 or more it ends on its own and, with gold answer 3, about half of its completions score 1 — a run with
    reward variance in most groups (healthy for the no-learning guard), and a cap below 8 truncates every one."""
    import torch
    from transformers import AutoModelForCausalLM

    from siri_rl.prompts import build_messages
    from siri_rl.toy.tokenizer import build_toy_tokenizer

    path = _toy_qwen2(tmp_path_factory.mktemp("answering-toy"), hidden_size=32, intermediate_size=64)
    tok = build_toy_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    torch.manual_seed(0)
    prompts = [tok.apply_chat_template(build_messages(f"Compute {a} + {b}."), add_generation_prompt=True,
                                       tokenize=True) for a in range(2) for b in range(4)]
    prompts = [list(p["input_ids"]) if not isinstance(p, list) else p for p in prompts]
    answers = [tok(f"</think>\n\\boxed{{{d}}}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
               for d in (3, 4)]
    # Every prompt has the same length ("Compute a + b." with one-digit a, b), and so every sequence: one batch.
    ids = torch.tensor([p + a for p in prompts for a in answers])
    labels = torch.tensor([[-100] * len(p) + a for p in prompts for a in answers])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(path)
    return path
