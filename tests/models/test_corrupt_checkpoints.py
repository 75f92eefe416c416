"""Corrupted or contradictory checkpoint folders fail with an archzoo error naming the folder or file.

Built from tiny models saved by save_pretrained (llama-tiny: untied head; bloom-tiny: tied, fused QKV;
deepseek-tiny: MLA + MoE + an MTP layer count; glm-tiny: ChatGLM-6B's layout; baichuan-tiny: W_pack and
the norm_head flag). Each case changes one thing; none may load.

Two kinds of change are not errors, and are tested for what they are instead:
* a field left out of config.json takes the default transformers' config class gives it (a folder means
  here what it means there): DeepSeek's routed_scaling_factor, GLM-4's partial_rotary_factor;
* a head count the weights cannot tell: BLOOM's, ChatGLM-6B's and Baichuan's fused QKV is [3 d, d] for
  every head count that divides d, and no other tensor's shape depends on it, so a doubled n_head loads
  (transformers splits by the same field); where head_dim or the kv heads are in the shapes it is refused.
"""

from __future__ import annotations

import json
import re
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

import archzoo
from archzoo.errors import ArchzooError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    folders = {}
    for name in ("llama-tiny", "bloom-tiny", "deepseek-tiny", "deepseek-v2-tiny", "glm-tiny", "chatglm2-tiny", "baichuan-tiny"):
        torch.manual_seed(0)
        folders[name] = archzoo.save_pretrained(archzoo.build_model(archzoo.load_config(name)), root / name)
    return folders


def _state(folder):
    return load_file(folder / "model.safetensors")


def _put_state(folder, state):
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def _config(folder, change):
    path = folder / "config.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _bytes(folder, change):
    path = folder / "model.safetensors"
    path.write_bytes(change(path.read_bytes()))


def _shard(folder, drop_second=False):
    state = _state(folder)
    (folder / "model.safetensors").unlink()
    keys = sorted(state)
    files = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for file, part in files.items():
        save_file({k: state[k] for k in part}, folder / file)
    weight_map = {k: f for f, part in files.items() for k in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    if drop_second:
        (folder / "model-00002-of-00002.safetensors").unlink()


def _some_matrix(state):
    return sorted(k for k, v in state.items() if v.ndim == 2 and ".1." in k)[0]


def _reshaped(folder):
    state = _state(folder)
    key = _some_matrix(state)
    state[key] = state[key][:-1].contiguous()
    _put_state(folder, state)


def _retyped(folder):
    state = _state(folder)
    key = _some_matrix(state)
    state[key] = state[key].to(torch.int32)
    _put_state(folder, state)


def _nan(folder, value=float("nan")):
    state = _state(folder)
    key = _some_matrix(state)
    state[key] = state[key].clone()
    state[key].view(-1)[5] = value
    _put_state(folder, state)


def _drop_tensor(folder):
    state = _state(folder)
    del state[_some_matrix(state)]
    _put_state(folder, state)


def _extra_tensor(folder):
    _put_state(folder, {**_state(folder), "model.layers.0.mystery.weight": torch.zeros(3)})


def _untied_head(folder, equal=False):
    _config(folder, lambda c: {**c, "tie_word_embeddings": True})
    state = _state(folder)
    embed = next(k for k in state if "embed" in k and "norm" not in k)
    state["lm_head.weight"] = state[embed].clone() if equal else state[embed] + 0.5
    _put_state(folder, state)


def _without(config, key):
    return {k: v for k, v in config.items() if k != key}


def _layers(folder, delta):
    key = "n_layer" if "n_layer" in json.loads((folder / "config.json").read_text()) else "num_hidden_layers"
    _config(folder, lambda c: {**c, key: c[key] + delta})


CASES = {  # name -> (families, corrupt(folder), a regex the message must match besides naming the folder)
    "truncated to 0 bytes": (("llama-tiny",), lambda f: _bytes(f, lambda b: b""), "model.safetensors"),
    "truncated header": (("llama-tiny",), lambda f: _bytes(f, lambda b: b[:100]), "model.safetensors"),
    "truncated data": (("llama-tiny",), lambda f: _bytes(f, lambda b: b[: len(b) // 2]), "model.safetensors"),
    "one byte short": (("llama-tiny",), lambda f: _bytes(f, lambda b: b[:-1]), "model.safetensors"),
    "random bytes": (("llama-tiny",), lambda f: _bytes(f, lambda b: bytes(reversed(b))), "model.safetensors"),
    "header too large": (("llama-tiny",), lambda f: _bytes(f, lambda b: struct.pack("<Q", 2**40) + b[8:]), "model.safetensors"),
    "weights missing": (("llama-tiny",), lambda f: (f / "model.safetensors").unlink(), "model.safetensors"),
    "missing tensor": (("llama-tiny", "bloom-tiny", "deepseek-tiny"), _drop_tensor, "absent|missing"),
    "extra tensor": (("llama-tiny", "bloom-tiny"), _extra_tensor, "mystery"),
    "reshaped tensor": (("llama-tiny", "bloom-tiny", "deepseek-tiny"), _reshaped, "shapes disagree|do not fit the shapes"),
    "retyped tensor": (("llama-tiny",), _retyped, "int32"),
    "NaN weight": (("llama-tiny", "deepseek-tiny"), _nan, "NaN/inf"),
    "inf weight": (("bloom-tiny",), lambda f: _nan(f, float("inf")), "NaN/inf"),
    "config.json is a list": (("llama-tiny",), lambda f: (f / "config.json").write_text("[]"), "JSON object"),
    "config.json is not JSON": (("llama-tiny",), lambda f: (f / "config.json").write_text("{"), "not valid JSON"),
    "config.json is not UTF-8": (("llama-tiny",), lambda f: (f / "config.json").write_bytes(b'{"a": "\xff"}'), "UTF-8"),
    "config.json missing": (("llama-tiny",), lambda f: (f / "config.json").unlink(), "config.json"),
    "missing key": (("llama-tiny",), lambda f: _config(f, lambda c: {k: v for k, v in c.items() if k != "hidden_size"}), "hidden_size"),
    "wrong type": (("llama-tiny",), lambda f: _config(f, lambda c: {**c, "hidden_size": "128"}), "hidden_size"),
    "float size": (("bloom-tiny",), lambda f: _config(f, lambda c: {**c, "n_head": 4.5}), "n_head"),
    "bool flag as string": (("llama-tiny",), lambda f: _config(f, lambda c: {**c, "tie_word_embeddings": "no"}), "tie_word_embeddings"),
    "NaN eps": (("llama-tiny",), lambda f: _config(f, lambda c: {**c, "rms_norm_eps": float("nan")}), "rms_norm_eps"),
    "architectures not a list": (("llama-tiny",), lambda f: _config(f, lambda c: {**c, "architectures": "LlamaForCausalLM"}), "architectures"),
    "contradictory width": (("llama-tiny", "deepseek-tiny"), lambda f: _config(f, lambda c: {**c, "hidden_size": 2 * c["hidden_size"]}), "config.json"),
    "contradictory aliases": (("bloom-tiny",), lambda f: _config(f, lambda c: {**c, "num_attention_heads": 2 * c["n_head"]}), "n_head"),
    "one layer too many": (("llama-tiny", "bloom-tiny"), lambda f: _layers(f, +1), "absent"),
    "one layer short": (("llama-tiny", "bloom-tiny"), lambda f: _layers(f, -1), "does not have"),
    "DeepSeek layer count one short is not MTP": (("deepseek-tiny",), lambda f: _layers(f, -1), "multi-token-prediction"),
    "missing shard": (("llama-tiny",), lambda f: _shard(f, drop_second=True), "model-00002-of-00002.safetensors"),
    "index not JSON": (("llama-tiny",), lambda f: (_shard(f), (f / "model.safetensors.index.json").write_text("{")), r"index\.json"),
    "untied head against the tie flag": (("llama-tiny",), _untied_head, "tie_word_embeddings"),
    "tie flag on a separate head": (("glm-tiny",), lambda f: _config(f, lambda c: {**c, "tie_word_embeddings": True}), "tie_word_embeddings"),
    "norm_head not a bool": (("baichuan-tiny",), lambda f: _config(f, lambda c: {**c, "norm_head": "false"}), "norm_head"),
    "norm_head a number": (("baichuan-tiny",), lambda f: _config(f, lambda c: {**c, "norm_head": 1}), "norm_head"),
    "null group count": (("deepseek-tiny",), lambda f: _config(f, lambda c: {**c, "topk_group": None}), "topk_group is null"),
    "doubled heads, head_dim given": (("chatglm2-tiny",), lambda f: _config(f, lambda c: {**c, "num_attention_heads": 2 * c["num_attention_heads"]}), "q_proj"),
    "doubled heads, kv heads kept": (("chatglm2-tiny",), lambda f: _config(f, lambda c: {**_without(c, "head_dim"), "num_attention_heads": 2 * c["num_attention_heads"]}), "k_proj"),
}
PARAMS = [pytest.param(fam, case, id=f"{case}-{fam}") for case, (fams, _, _) in CASES.items() for fam in fams]


@pytest.mark.parametrize(("family", "case"), PARAMS)
def test_corrupt_folder_fails_naming_it(saved, tmp_path, family, case):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(saved[family], folder)
    _, corrupt, must_say = CASES[case]
    corrupt(folder)
    with pytest.raises(ArchzooError) as err:
        archzoo.load_pretrained(folder)
    message = str(err.value)
    assert str(folder) in message, message
    assert re.search(must_say, message), message
    assert "\n" not in message  # the CLI prints it as one line


def test_a_head_equal_to_the_embedding_loads_under_the_tie_flag(saved, tmp_path):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(saved["llama-tiny"], folder)
    reference = archzoo.load_pretrained(folder)
    _untied_head(folder, equal=True)  # the embedding saved twice: nothing is discarded by tying
    # (turning the flag on changes the model: its head is now the embedding, which the file's head equals)
    model = archzoo.load_pretrained(folder)
    assert model.lm_head.weight is model.embed.weight
    assert torch.equal(model.embed.weight, reference.embed.weight)


def test_a_sharded_folder_loads_the_same_model(saved, tmp_path):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(saved["deepseek-tiny"], folder)
    reference = archzoo.load_pretrained(folder).state_dict()
    _shard(folder)
    loaded = archzoo.load_pretrained(folder).state_dict()
    assert reference.keys() == loaded.keys()
    assert all(torch.equal(reference[k], loaded[k]) for k in reference)


def test_a_real_mtp_layer_is_still_dropped(saved, tmp_path):
    """A layer past num_hidden_layers that has the MTP-only tensors is the MTP module (as in DeepSeek-V3's release)."""
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(saved["deepseek-tiny"], folder)
    n = json.loads((folder / "config.json").read_text())["num_hidden_layers"]
    state = _state(folder)
    mtp = {k.replace(f"model.layers.{n - 1}.", f"model.layers.{n}."): v.clone() for k, v in state.items() if f"layers.{n - 1}." in k}
    d = state["model.embed_tokens.weight"].shape[1]
    mtp |= {f"model.layers.{n}.enorm.weight": torch.ones(d), f"model.layers.{n}.hnorm.weight": torch.ones(d),
            f"model.layers.{n}.eh_proj.weight": torch.zeros(d, 2 * d)}
    reference = archzoo.load_pretrained(folder).state_dict()
    _put_state(folder, {**state, **mtp})
    loaded = archzoo.load_pretrained(folder).state_dict()
    assert all(torch.equal(reference[k], loaded[k]) for k in reference)


def _copy(saved, name, tmp_path):
    import shutil

    return shutil.copytree(saved[name], tmp_path / "ckpt")


DEEPSEEK_ABSENT = [  # (config, config.json field, transformers' config class, where archzoo keeps it)
    ("deepseek-tiny", "routed_scaling_factor", "DeepseekV3Config", "routed_scaling_factor"),  # 2.5, the released value
    ("deepseek-v2-tiny", "routed_scaling_factor", "DeepseekV2Config", "routed_scaling_factor"),  # 1.0
    ("deepseek-tiny", "first_k_dense_replace", "DeepseekV3Config", "first_dense_layers"),  # 3
    ("deepseek-v2-tiny", "first_k_dense_replace", "DeepseekV2Config", "first_dense_layers"),  # 0
    ("deepseek-tiny", "n_group", "DeepseekV3Config", "n_groups"),  # 8
    ("deepseek-tiny", "topk_group", "DeepseekV3Config", "topk_groups"),  # 4
]


@pytest.mark.parametrize(("name", "field", "config_class", "ours"), DEEPSEEK_ABSENT)
def test_an_absent_deepseek_field_is_transformers_default(saved, tmp_path, name, field, config_class, ours):
    """Read as transformers reads it; where that default does not fit the tiny model (3 dense layers of 2,
    8 groups of 8 experts), loading then fails with an archzoo error naming the folder."""
    import transformers

    from archzoo.models.hf.deepseek import v2_from_hf, v3_from_hf

    folder = _copy(saved, name, tmp_path)
    _config(folder, lambda c: _without(c, field))
    hf = json.loads((folder / "config.json").read_text())
    default = getattr(getattr(transformers, config_class)(), field)
    assert (v3_from_hf if config_class == "DeepseekV3Config" else v2_from_hf)(hf, name)["moe"][ours] == default
    try:
        model = archzoo.load_pretrained(folder)
    except ArchzooError as err:
        assert str(folder) in str(err)
    else:
        assert getattr(model.config.moe, ours) == default


def test_an_absent_rms_norm_eps_is_glm_configs(saved, tmp_path):
    import transformers

    folder = _copy(saved, "chatglm2-tiny", tmp_path)
    _config(folder, lambda c: _without(c, "rms_norm_eps"))
    assert archzoo.load_pretrained(folder).config.norm.eps == transformers.GlmConfig().rms_norm_eps  # 1.5625e-7


def test_an_absent_partial_rotary_factor_is_glm_configs_half(saved, tmp_path):
    import transformers

    folder = _copy(saved, "chatglm2-tiny", tmp_path)
    reference = archzoo.load_pretrained(folder)
    _config(folder, lambda c: _without(c, "rope_parameters"))
    hf = transformers.GlmConfig(**json.loads((folder / "config.json").read_text()))
    model = archzoo.load_pretrained(folder)
    assert model.config.position.rotary_fraction == hf.rope_parameters["partial_rotary_factor"] == 0.5
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    assert torch.equal(model(ids), reference(ids))  # the saved folder said 0.5 outright: the same model


@pytest.mark.parametrize(("name", "field"), [("bloom-tiny", "n_head"), ("glm-tiny", "num_attention_heads"), ("baichuan-tiny", "num_attention_heads")])
def test_a_head_count_the_weights_cannot_tell_loads_as_config_json_says(saved, tmp_path, name, field):
    """Not detectable, and why: with n_head doubled every tensor keeps its shape (a fused QKV, per head or
    Baichuan's [Q | K | V] W_pack, is [3 d, d] for any head count dividing d), so the file cannot
    contradict config.json; the model follows the field, as transformers' (or the remote code's) split does."""
    folder = _copy(saved, name, tmp_path)
    reference = archzoo.load_pretrained(folder)
    _config(folder, lambda c: {**c, field: 2 * c[field]})
    model = archzoo.load_pretrained(folder)
    assert model.config.n_heads == 2 * reference.config.n_heads
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_every_non_finite_value_is_found_wherever_it_is(dtype, tmp_path):
    from archzoo.models.hf.io import check_tensor

    finite = torch.tensor([torch.finfo(dtype).max, torch.finfo(dtype).min, 0.0, -1.0, 1.0], dtype=dtype).repeat(3)
    check_tensor("w", finite, tmp_path)  # the largest finite values are finite
    for value in (float("nan"), float("inf"), float("-inf")):
        for at in (0, 7, finite.numel() - 1):
            bad = finite.clone()
            bad[at] = value
            with pytest.raises(ArchzooError, match="1 NaN/inf values of 15"):
                check_tensor("w", bad.view(3, 5), tmp_path)
