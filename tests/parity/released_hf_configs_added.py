"""Released ``config.json`` values of the configs added for issue 14 (dense models).

Official facts, one entry per archzoo config: the Hugging Face repository the
checkpoint lives in, and the keys of its ``config.json`` that fix the
architecture. The hub cannot be reached from here, so each entry also names
``copied_from``: the public copy of that file the values were read from (a
repository path), or ``"model card"`` where only the model card's own table
was at hand and the values are the ones that card and the release state.

They are data, not code: ``test_param_counts.py`` builds the ``transformers``
model of each one on the ``meta`` device and compares its parameter count with
``archzoo.count_params`` of the TOML; ``test_added_configs.py`` does the same
for the remote-code architectures (Baichuan 2, ChatGLM3, GLM-130B) by closed
forms.
"""

_QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu", "use_sliding_window": False}
_QWEN3 = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_act": "silu", "head_dim": 128,
          "attention_bias": False, "rope_scaling": None, "rope_theta": 1000000, "max_position_embeddings": 40960,
          "rms_norm_eps": 1e-06, "vocab_size": 151936}  # fmt: skip
_LLAMA3 = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "attention_bias": False,
           "mlp_bias": False, "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "vocab_size": 128256,
           "max_position_embeddings": 131072}  # fmt: skip
_LLAMA32_ROPE = {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                 "original_max_position_embeddings": 8192, "rope_type": "llama3"}  # fmt: skip
_MLC = "mlc-ai/mlc-llm python/mlc_llm/model/model_preset.py (copies of the released config.json files)"
_PROF = "citsjtu2020/LLM-Prof sglang/Model_Config.md (copies of the released config.json files)"
RECALLED = "no public copy found here: values as released, the count cross-checked with the hub's size"

RELEASED_ADDED = {
    # ---- Llama 3.2 (tied head, head_dim set, llama3 RoPE scaling x32) ----
    "llama3.2-1b": {"repo": "meta-llama/Llama-3.2-1B", "copied_from": _MLC, "config": _LLAMA3 | {
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "rope_scaling": _LLAMA32_ROPE, "tie_word_embeddings": True}},
    "llama3.2-3b": {"repo": "meta-llama/Llama-3.2-3B", "copied_from": _PROF, "config": _LLAMA3 | {
        "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
        "num_key_value_heads": 8, "head_dim": 128, "rope_scaling": _LLAMA32_ROPE, "tie_word_embeddings": True}},
    # ---- Qwen1.5 (Qwen2ForCausalLM; no GQA below 32B) ----
    "qwen1.5-7b": {"repo": "Qwen/Qwen1.5-7B", "copied_from": RECALLED, "config": _QWEN2 | {
        "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": False}},
    "qwen1.5-14b": {"repo": "Qwen/Qwen1.5-14B", "copied_from": RECALLED, "config": _QWEN2 | {
        "vocab_size": 152064, "hidden_size": 5120, "intermediate_size": 13696, "num_hidden_layers": 40,
        "num_attention_heads": 40, "num_key_value_heads": 40, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": False}},
    "qwen1.5-72b": {"repo": "Qwen/Qwen1.5-72B", "copied_from": RECALLED + "; the layer keys also match the Qwen1.5-72B-Chat"
        " config a public frankenmerge script copies (hidden 8192, intermediate 24576, 64/64 heads, eps 1e-6, theta 1e6)", "config": _QWEN2 | {
        "vocab_size": 152064, "hidden_size": 8192, "intermediate_size": 24576, "num_hidden_layers": 80,
        "num_attention_heads": 64, "num_key_value_heads": 64, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": False}},
    # ---- Qwen2.5 ----
    "qwen2.5-14b": {"repo": "Qwen/Qwen2.5-14B", "copied_from": _PROF, "config": _QWEN2 | {
        "vocab_size": 152064, "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 48,
        "num_attention_heads": 40, "num_key_value_heads": 8, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "tie_word_embeddings": False}},
    "qwen2.5-32b": {"repo": "Qwen/Qwen2.5-32B", "copied_from": _PROF, "config": _QWEN2 | {
        "vocab_size": 152064, "hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64,
        "num_attention_heads": 40, "num_key_value_heads": 8, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "tie_word_embeddings": False}},
    # ---- Qwen3 dense ----
    "qwen3-1.7b": {"repo": "Qwen/Qwen3-1.7B", "copied_from": _MLC, "config": _QWEN3 | {
        "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
        "num_key_value_heads": 8, "tie_word_embeddings": True}},
    "qwen3-4b": {"repo": "Qwen/Qwen3-4B", "copied_from": _PROF, "config": _QWEN3 | {
        "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
        "num_key_value_heads": 8, "tie_word_embeddings": True}},
    "qwen3-14b": {"repo": "Qwen/Qwen3-14B", "copied_from": _PROF, "config": _QWEN3 | {
        "hidden_size": 5120, "intermediate_size": 17408, "num_hidden_layers": 40, "num_attention_heads": 40,
        "num_key_value_heads": 8, "tie_word_embeddings": False}},
    "qwen3-32b": {"repo": "Qwen/Qwen3-32B", "copied_from": _PROF, "config": _QWEN3 | {
        "hidden_size": 5120, "intermediate_size": 25600, "num_hidden_layers": 64, "num_attention_heads": 64,
        "num_key_value_heads": 8, "tie_word_embeddings": False}},
    # ---- Qwen (v1) 14B: remote code, intermediate_size counts both SwiGLU halves ----
    "qwen-14b": {"repo": "Qwen/Qwen-14B", "copied_from": RECALLED, "config": {
        "architectures": ["QWenLMHeadModel"], "model_type": "qwen",
        "vocab_size": 152064, "hidden_size": 5120, "intermediate_size": 27392,
        "num_hidden_layers": 40, "num_attention_heads": 40, "kv_channels": 128,
        "max_position_embeddings": 8192, "seq_length": 2048,
        "layer_norm_epsilon": 1e-06, "rotary_pct": 1.0, "rotary_emb_base": 10000,
        "use_dynamic_ntk": True, "use_logn_attn": True, "no_bias": True,
        "tie_word_embeddings": False}},
    # ---- Yi (LlamaForCausalLM) ----
    "yi-9b": {"repo": "01-ai/Yi-9B", "copied_from": RECALLED, "config": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 64000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False}},
    "yi-1.5-6b": {"repo": "01-ai/Yi-1.5-6B", "copied_from": RECALLED, "config": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 64000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 4,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-06, "rope_theta": 5000000.0,
        "hidden_act": "silu", "tie_word_embeddings": False}},
    "yi-1.5-34b": {"repo": "01-ai/Yi-1.5-34B", "copied_from": RECALLED, "config": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 64000, "hidden_size": 7168, "intermediate_size": 20480,
        "num_hidden_layers": 60, "num_attention_heads": 56, "num_key_value_heads": 8,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-06, "rope_theta": 5000000.0,
        "hidden_act": "silu", "tie_word_embeddings": False}},
    # ---- DeepSeek-R1 distills: Qwen2.5-Math / Llama 3.1 shapes, DeepSeek's weights ----
    "deepseek-r1-distill-qwen-1.5b": {"repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "copied_from": RECALLED,
        "config": _QWEN2 | {
        "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
        "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-06, "rope_theta": 10000, "tie_word_embeddings": False}},
    "deepseek-r1-distill-qwen-7b": {"repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "copied_from": RECALLED,
        "config": _QWEN2 | {
        "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-06, "rope_theta": 10000, "tie_word_embeddings": False}},
    "deepseek-r1-distill-llama-8b": {"repo": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "copied_from": RECALLED,
        "config": _LLAMA3 | {
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "tie_word_embeddings": False}},
}  # fmt: skip
"""archzoo config name -> {"repo", "copied_from", "config": released config.json subset}."""

REMOTE_CODE_ADDED = {
    # Baichuan 2: BaichuanForCausalLM (remote code). The 7B's modeling_baichuan.py uses RoPE,
    # the 13B's ALiBi; both end in a NormHead. vocab 125696.
    "baichuan2-7b": {"repo": "baichuan-inc/Baichuan2-7B-Base", "copied_from": _MLC, "config": {
        "architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", "vocab_size": 125696,
        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
        "max_position_embeddings": 4096, "model_max_length": 4096, "rms_norm_eps": 1e-06,
        "hidden_act": "silu", "tie_word_embeddings": False}},
    "baichuan2-13b": {"repo": "baichuan-inc/Baichuan2-13B-Base",
        "copied_from": "inclusionAI/Ling mindie_config/.../baichuan/v2_13b/config_baichuan.py (the config's values)",
        "config": {
        "architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", "vocab_size": 125696,
        "hidden_size": 5120, "intermediate_size": 13696, "num_hidden_layers": 40, "num_attention_heads": 40,
        "model_max_length": 4096, "rms_norm_eps": 1e-06, "hidden_act": "silu", "tie_word_embeddings": False}},
    # ChatGLM3-6B: ChatGLMModel, the ChatGLM2 layer; seq_length 8192 (ChatGLM2-6B: 32768)
    "chatglm3-6b": {"repo": "THUDM/chatglm3-6b", "copied_from": _MLC, "config": {
        "architectures": ["ChatGLMModel"], "model_type": "chatglm", "add_bias_linear": False, "add_qkv_bias": True,
        "apply_residual_connection_post_layernorm": False, "ffn_hidden_size": 13696, "hidden_size": 4096,
        "kv_channels": 128, "layernorm_epsilon": 1e-05, "multi_query_attention": True, "multi_query_group_num": 2,
        "num_attention_heads": 32, "num_layers": 28, "original_rope": True, "padded_vocab_size": 65024,
        "post_layer_norm": True, "rmsnorm": True, "seq_length": 8192, "tie_word_embeddings": False,
        "eos_token_id": 2, "pad_token_id": 0}},
    # GLM-130B: no config.json; its launch script configs/model_glm_130b.sh (THUDM/GLM-130B) and the
    # SwissArmyTransformer model (GLM130B: DeepNorm + GeGLU mixin, 1-D RoPE, head = word embeddings)
    "glm-130b": {"repo": "THUDM/GLM-130B", "copied_from": "THUDM/GLM-130B configs/model_glm_130b.sh", "config": {
        "num_layers": 70, "hidden_size": 12288, "inner_hidden_size": 32768, "vocab_size": 150528,
        "num_attention_heads": 96, "max_sequence_length": 2048, "layernorm_order": "post"}},
    # DeepSeek-MoE 16B: DeepseekForCausalLM (remote code; transformers has no class): MHA, 64 routed
    # experts (top 6) + 2 shared, first layer dense
    "deepseek-moe-16b": {"repo": "deepseek-ai/deepseek-moe-16b-base", "copied_from": _MLC, "config": {
        "architectures": ["DeepseekForCausalLM"], "model_type": "deepseek", "first_k_dense_replace": 1,
        "hidden_size": 2048, "intermediate_size": 10944, "max_position_embeddings": 4096,
        "moe_intermediate_size": 1408, "moe_layer_freq": 1, "n_routed_experts": 64, "n_shared_experts": 2,
        "norm_topk_prob": False, "num_attention_heads": 16, "num_experts_per_tok": 6, "num_hidden_layers": 28,
        "num_key_value_heads": 16, "rms_norm_eps": 1e-06, "rope_theta": 10000, "scoring_func": "softmax",
        "tie_word_embeddings": False, "vocab_size": 102400, "bos_token_id": 100000, "eos_token_id": 100001}},
}  # fmt: skip
"""Architectures ``transformers`` lacks: counted by closed forms in ``test_added_configs.py``."""

HUB_SIZES = {
    # the parameter count the Hugging Face hub shows for each checkpoint (from its safetensors), in billions
    "qwen1.5-7b": 7.72, "qwen1.5-14b": 14.2, "qwen1.5-72b": 72.3, "qwen-14b": 14.2,
    "yi-9b": 8.83, "yi-1.5-6b": 6.06, "yi-1.5-34b": 34.4,
    "deepseek-r1-distill-qwen-1.5b": 1.78, "deepseek-r1-distill-qwen-7b": 7.62, "deepseek-r1-distill-llama-8b": 8.03,
}  # fmt: skip
"""Independent sizes for the entries whose config.json was not found in a stored copy."""
