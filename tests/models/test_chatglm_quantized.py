"""ChatGLM-6B's INT8 / INT4 checkpoints load into archzoo's quantized block.

The checkpoints here are written by the released format's own equations, in this file and
independently of archzoo's quantizer (THUDM chatglm-6b ``quantization.py`` /
``quantization_kernels.c``): per output row s = max|w| / (2^(b-1) - 1) in float16, q = round(w / s)
in int8; for 4 bits two codes per byte, column 2j in the high nibble, two's complement. The
reference they are compared with is the float model whose weights are W' = s q, loaded by the
float path."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

import archzoo
from archzoo.blocks.quant import QuantizedWeight
from archzoo.cli import main
from archzoo.errors import CheckpointError
from archzoo.models.hf import UnsupportedConfig
from archzoo.models.hf.chatglm_quant import chatglm_int4_to_archzoo
from archzoo.models.quantize import stored_weight_bytes

QUANTIZED = re.compile(r"transformer\.layers\.\d+\.(attention\.query_key_value|attention\.dense|mlp\.dense_h_to_4h|mlp\.dense_4h_to_h)\.weight")


def released_codes(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(stored weight, weight_scale, W') of one linear by the released rule (computed in float16 as THUDM's code does)."""
    w = weight.half()
    scale = (w.abs().amax(dim=-1) / (2 ** (bits - 1) - 1)).half()
    q = torch.round(w / scale[:, None]).to(torch.int8)
    assert int(q.abs().max()) <= 2 ** (bits - 1) - 1
    dequantized = scale.float()[:, None] * q.float()
    if bits == 4:  # compress_int4_weight: out[j] = (q[2j] << 4) | (q[2j+1] & 15), as unsigned char
        nibbles = q.to(torch.int16) & 0xF
        q = ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).to(torch.uint8).view(torch.int8)
    return q, scale, dequantized


def chatglm6b_checkpoints(tmp_path, bits: int):
    """(the quantized folder, the float folder holding W' = s q) of a random glm-tiny (ChatGLM-6B's layout)."""
    torch.manual_seed(0)
    model = archzoo.build_model("glm-tiny")
    float_dir = archzoo.save_pretrained(model, tmp_path / "float", architecture="ChatGLMModel")
    state = load_file(float_dir / "model.safetensors")
    hf = json.loads((float_dir / "config.json").read_text())
    quantized, twin = {}, {}
    for key, tensor in state.items():
        if QUANTIZED.fullmatch(key):
            codes, scale, dequantized = released_codes(tensor, bits)
            quantized[key], quantized[key.removesuffix("weight") + "weight_scale"] = codes, scale
            twin[key] = dequantized
        else:  # everything else is float16 in the released checkpoints
            quantized[key], twin[key] = tensor.half(), tensor.half().float()
    assert sum(bool(QUANTIZED.fullmatch(k)) for k in state) == 4 * model.config.model.n_layers
    q_dir, twin_dir = tmp_path / f"int{bits}", tmp_path / "twin"
    for folder, tensors, extra in ((q_dir, quantized, {"quantization_bit": bits, "quantization_embeddings": False,
                                                       "torch_dtype": "float16"}), (twin_dir, twin, {})):
        folder.mkdir()
        save_file(tensors, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({**hf, **extra}))
    return q_dir, twin_dir, quantized


def test_int4_bytes_convert_by_the_worked_example():
    # released bytes: 0x87 = (-8 high, 7 low), 0x1E = (1, -2); the block keeps column 2j low, offset by 8
    released = torch.tensor([[0x87, 0x1E]], dtype=torch.uint8).view(torch.int8)
    converted = chatglm_int4_to_archzoo(released)
    assert converted.dtype == torch.uint8 and converted.tolist() == [[0xF0, 0x69]]
    layer = QuantizedWeight((1, 4), "int4", None, torch.float16, symmetric=True)
    layer.qweight.copy_(converted)
    layer.scales.fill_(0.5)
    assert layer.codes().tolist() == [[0, 15, 9, 6]]  # q + 8
    assert layer.dequantize(torch.float32).tolist() == [[-4.0, 3.5, 0.5, -1.0]]  # 0.5 x (-8, 7, 1, -2)


GLM_IDS = [[7, 40, 500, 3, 504, 11, 12]]  # some text, [MASK], sop, then generated tokens


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("implementation", ["reference", "fast"])
def test_released_checkpoint_gives_the_logits_of_its_dequantized_weights(tmp_path, bits, implementation):
    q_dir, twin_dir, _ = chatglm6b_checkpoints(tmp_path, bits)
    model = archzoo.load_pretrained(q_dir, dtype=torch.float32, implementation=implementation).eval()
    twin = archzoo.load_pretrained(twin_dir, implementation=implementation).eval()
    layer = model.layers[0]
    assert layer.attn.q_proj.mode == f"int{bits}" and layer.mlp.down_proj.mode == f"int{bits}"
    assert not isinstance(model.lm_head, QuantizedWeight) and isinstance(model.embed, torch.nn.Embedding)  # float16 in the file
    if bits == 4:
        assert layer.attn.q_proj.symmetric and layer.attn.q_proj.group_size == 128  # one group per row
        assert layer.mlp.down_proj.group_size == 512
    ids = torch.tensor(GLM_IDS)
    with torch.no_grad():
        got, want = model(ids), twin(ids)
    if implementation == "reference":
        # W' = s (q - 8) or s q in float32 is exact (an 11-bit float16 scale times a small integer):
        # the very weights of the twin, the very same operations
        assert torch.equal(got, want)
    else:
        # a packed kernel may sum the 128- / 512-term products in another order: float32 rounding
        # ~512 eps of the largest partial sum per layer, through 2 layers and the head; 1e-4 of
        # the logits' scale is far above that and far below any real difference
        assert torch.allclose(got, want, atol=1e-4 * want.abs().max().item(), rtol=0)


@pytest.mark.parametrize("bits", [8, 4])
def test_memory_estimate_is_the_bytes_the_checkpoint_holds(tmp_path, bits):
    q_dir, _, tensors = chatglm6b_checkpoints(tmp_path, bits)
    held = sum(t.numel() * t.element_size() for t in tensors.values())
    model = archzoo.load_pretrained(q_dir)
    assert stored_weight_bytes(model) == held
    cfg = model.config
    mode = f"int{bits}"
    estimate = archzoo.estimate_memory(cfg, dtype=mode, group_size=None, symmetric=True).weight_bytes[mode]
    assert estimate == held
    # the CLI reads the recipe from the folder's config.json
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["params", str(q_dir), "--dtype", mode, "--json"]) == 0
    assert json.loads(out.getvalue())["memory"]["weight_bytes"][mode] == held


def test_saved_again_it_loads_back_in_archzoos_layout(tmp_path):
    q_dir, _, _ = chatglm6b_checkpoints(tmp_path, 4)
    model = archzoo.load_pretrained(q_dir)
    again = archzoo.load_pretrained(archzoo.save_pretrained(model, tmp_path / "again"))
    assert again.quantization == {"mode": "int4", "group_size": None, "skip": ["lm_head"], "embeddings": False,
                                  "symmetric": True}
    ids = torch.tensor(GLM_IDS)
    with torch.no_grad():
        assert torch.equal(again.float()(ids), model.float()(ids))


def test_a_float_weight_where_codes_belong_is_refused(tmp_path):
    q_dir, _, tensors = chatglm6b_checkpoints(tmp_path, 8)
    key = "transformer.layers.1.attention.dense.weight"
    tensors[key] = tensors[key].half()
    save_file(tensors, str(q_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match=re.escape(key) + ".*quantization_bit = 8"):
        archzoo.load_pretrained(q_dir)


def test_a_missing_scale_is_refused(tmp_path):
    q_dir, _, tensors = chatglm6b_checkpoints(tmp_path, 4)
    del tensors["transformer.layers.0.mlp.dense_4h_to_h.weight_scale"]
    save_file(tensors, str(q_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"dense_4h_to_h\.weight_scale is absent"):
        archzoo.load_pretrained(q_dir)


@pytest.mark.parametrize("fields, message", [({"quantization_bit": 3}, "quantization_bit = 3"),
                                             ({"quantization_bit": 4, "quantization_embeddings": True},
                                              "quantization_embeddings")])
def test_unsupported_quantization_fields_are_refused(tmp_path, fields, message):
    q_dir, _, _ = chatglm6b_checkpoints(tmp_path, 4)
    hf = json.loads((q_dir / "config.json").read_text())
    (q_dir / "config.json").write_text(json.dumps({**hf, **fields}))
    with pytest.raises(UnsupportedConfig, match=message):
        archzoo.load_pretrained(q_dir)
