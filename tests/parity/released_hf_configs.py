"""Released Hugging Face ``config.json`` values of the dense models archzoo ships configs for.

These are official facts, copied from each model repository's ``config.json``
(the repository is named next to each entry); only the keys that fix the
architecture are kept (dropout rates, dtypes, token ids and the like are left
out). Key spellings follow the released files: BLOOM's small models say
``n_embed`` and ``num_attention_heads``, BLOOM-176B says ``hidden_size`` and
``n_head``; LLaMA 1 and Baichuan-7B have no ``rope_theta`` (it defaulted to
10000); Qwen-7B (v1) and Baichuan use their own remote-code configs.

They are data, not code: ``test_param_counts.py`` builds the ``transformers``
models from them and compares with ``archzoo.count_params``.
"""

RELEASED = {
    # ---- LLaMA (huggyllama conversions of Meta's weights, transformers 4.28) ----
    "llama-7b": {
        "repo": "huggyllama/llama-7b",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
            "num_hidden_layers": 32, "num_attention_heads": 32,
            "max_position_embeddings": 2048, "max_sequence_length": 2048,
            "rms_norm_eps": 1e-06, "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "llama-13b": {
        "repo": "huggyllama/llama-13b",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 32000, "hidden_size": 5120, "intermediate_size": 13824,
            "num_hidden_layers": 40, "num_attention_heads": 40,
            "max_position_embeddings": 2048, "max_sequence_length": 2048,
            "rms_norm_eps": 1e-06, "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "llama-33b": {
        "repo": "huggyllama/llama-30b",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 32000, "hidden_size": 6656, "intermediate_size": 17920,
            "num_hidden_layers": 60, "num_attention_heads": 52,
            "max_position_embeddings": 2048, "max_sequence_length": 2048,
            "rms_norm_eps": 1e-06, "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "llama-65b": {
        "repo": "huggyllama/llama-65b",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 32000, "hidden_size": 8192, "intermediate_size": 22016,
            "num_hidden_layers": 80, "num_attention_heads": 64,
            "max_position_embeddings": 2048, "max_sequence_length": 2048,
            "rms_norm_eps": 1e-05, "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    # ---- Llama 2 ----
    "llama2-7b": {
        "repo": "meta-llama/Llama-2-7b-hf",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_scaling": None,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "llama2-13b": {
        "repo": "meta-llama/Llama-2-13b-hf",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 32000, "hidden_size": 5120, "intermediate_size": 13824,
            "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 40,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_scaling": None,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "llama2-70b": {
        "repo": "meta-llama/Llama-2-70b-hf",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 32000, "hidden_size": 8192, "intermediate_size": 28672,
            "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_scaling": None,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    # ---- Llama 3 / 3.1 ----
    "llama3-8b": {
        "repo": "meta-llama/Meta-Llama-3-8B",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-05,
            "rope_theta": 500000.0, "rope_scaling": None, "attention_bias": False,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "llama3-70b": {
        "repo": "meta-llama/Meta-Llama-3-70B",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 128256, "hidden_size": 8192, "intermediate_size": 28672,
            "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-05,
            "rope_theta": 500000.0, "rope_scaling": None, "attention_bias": False,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "llama3.1-405b": {
        "repo": "meta-llama/Llama-3.1-405B",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 128256, "hidden_size": 16384, "intermediate_size": 53248,
            "num_hidden_layers": 126, "num_attention_heads": 128, "num_key_value_heads": 8,
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192, "rope_type": "llama3",
            },
            "attention_bias": False, "mlp_bias": False,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    # ---- BLOOM (tie_word_embeddings is absent: BloomConfig defaults it to True) ----
    "bloom-560m": {
        "repo": "bigscience/bloom-560m",
        "config": {
            "architectures": ["BloomForCausalLM"], "model_type": "bloom",
            "vocab_size": 250880, "n_embed": 1024, "n_layer": 24, "num_attention_heads": 16,
            "layer_norm_epsilon": 1e-05,
        },
    },
    "bloom-7b1": {
        "repo": "bigscience/bloom-7b1",
        "config": {
            "architectures": ["BloomForCausalLM"], "model_type": "bloom",
            "vocab_size": 250880, "n_embed": 4096, "n_layer": 30, "num_attention_heads": 32,
            "layer_norm_epsilon": 1e-05,
        },
    },
    "bloom-176b": {
        "repo": "bigscience/bloom",
        "config": {
            "architectures": ["BloomForCausalLM"], "model_type": "bloom",
            "vocab_size": 250880, "hidden_size": 14336, "n_layer": 70, "n_head": 112,
            "layer_norm_epsilon": 1e-05,
        },
    },
    # ---- Qwen (v1): remote code; intermediate_size counts both halves of the SwiGLU ----
    "qwen-7b": {
        "repo": "Qwen/Qwen-7B",
        "config": {
            "architectures": ["QWenLMHeadModel"], "model_type": "qwen",
            "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
            "num_hidden_layers": 32, "num_attention_heads": 32, "kv_channels": 128,
            "max_position_embeddings": 32768, "seq_length": 8192,
            "layer_norm_epsilon": 1e-06, "rotary_pct": 1.0, "rotary_emb_base": 10000,
            "use_dynamic_ntk": True, "use_logn_attn": True, "no_bias": True,
            "tie_word_embeddings": False,
        },
    },
    # ---- Qwen2 / Qwen2.5 (q, k, v carry a bias; o does not) ----
    "qwen2-7b": {
        "repo": "Qwen/Qwen2-7B",
        "config": {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
            "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "qwen2.5-0.5b": {
        "repo": "Qwen/Qwen2.5-0.5B",
        "config": {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
            "hidden_act": "silu", "tie_word_embeddings": True,
        },
    },
    "qwen2.5-7b": {
        "repo": "Qwen/Qwen2.5-7B",
        "config": {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
            "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "qwen2.5-72b": {
        "repo": "Qwen/Qwen2.5-72B",
        "config": {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "vocab_size": 152064, "hidden_size": 8192, "intermediate_size": 29568,
            "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    # ---- Qwen3 (qk-norm; head_dim set apart from hidden_size / heads) ----
    "qwen3-0.6b": {
        "repo": "Qwen/Qwen3-0.6B",
        "config": {
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
            "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072,
            "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
            "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-06,
            "rope_theta": 1000000, "rope_scaling": None, "attention_bias": False,
            "hidden_act": "silu", "tie_word_embeddings": True,
        },
    },
    "qwen3-8b": {
        "repo": "Qwen/Qwen3-8B",
        "config": {
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
            "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288,
            "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-06,
            "rope_theta": 1000000, "rope_scaling": None, "attention_bias": False,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    # ---- Baichuan (remote code) ----
    "baichuan-7b": {
        "repo": "baichuan-inc/Baichuan-7B",
        "config": {
            "architectures": ["BaiChuanForCausalLM"], "model_type": "baichuan",
            "vocab_size": 64000, "hidden_size": 4096, "intermediate_size": 11008,
            "num_hidden_layers": 32, "num_attention_heads": 32,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-06,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "baichuan-13b": {
        "repo": "baichuan-inc/Baichuan-13B-Base",
        "config": {
            "architectures": ["BaichuanForCausalLM"], "model_type": "baichuan",
            "vocab_size": 64000, "hidden_size": 5120, "intermediate_size": 13696,
            "num_hidden_layers": 40, "num_attention_heads": 40, "model_max_length": 4096,
            "rms_norm_eps": 1e-06, "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    # ---- Yi (first released as YiForCausalLM, later re-tagged LlamaForCausalLM; same keys) ----
    "yi-6b": {
        "repo": "01-ai/Yi-6B",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 64000, "hidden_size": 4096, "intermediate_size": 11008,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 4,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 5000000.0,
            "rope_scaling": None, "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
    "yi-34b": {
        "repo": "01-ai/Yi-34B",
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 64000, "hidden_size": 7168, "intermediate_size": 20480,
            "num_hidden_layers": 60, "num_attention_heads": 56, "num_key_value_heads": 8,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 5000000.0,
            "rope_scaling": None, "hidden_act": "silu", "tie_word_embeddings": False,
        },
    },
}
"""archzoo config name -> {"repo": Hugging Face repository, "config": released config.json subset}."""

PUBLISHED_PARAM_COUNTS = {
    # model.safetensors.index.json "total_size" in bytes, 2 bytes per 16-bit weight.
    # Llama-2-7b-hf (converted with transformers 4.31) also stored each layer's float32
    # RoPE buffer rotary_emb.inv_freq (head_dim / 2 = 64 entries): 32 * 64 * 4 bytes.
    "llama2-7b": (13_476_839_424 - 32 * 64 * 4) // 2,
    "llama3-8b": 16_060_522_496 // 2,
    # the "Parameters" line of the BigScience model cards
    "bloom-560m": 559_214_592,
    "bloom-7b1": 7_069_016_064,
}
"""Exact parameter counts published by the model owners, independent of any code."""
