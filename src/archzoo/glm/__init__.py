"""GLM data preparation: blank-infilling training samples (GLM, Du et al. 2022), ChatGLM-6B's
prefix-LM inputs and how it decodes with them. Data, not model: the model side is the
``glm2d`` position kind (``blocks/rope_2d.py``) and the ``deepnorm`` wiring
(``blocks/residual.py``). The facts the tests rely on, with sources: ``docs/glm.md``.
"""

from .blank_infilling import (
    BlankInfillingSample,
    blank_infilling,
    collapsed_positions,
    infilling_attention_mask,
    shuffle_spans,
    trailing_generation,
)
from .decode import GLMPrefixPositions
from .prefix_lm import PrefixLMInputs, next_prefix_lm_positions, prefix_lm_inputs

__all__ = [
    "BlankInfillingSample",
    "GLMPrefixPositions",
    "PrefixLMInputs",
    "blank_infilling",
    "collapsed_positions",
    "infilling_attention_mask",
    "next_prefix_lm_positions",
    "prefix_lm_inputs",
    "shuffle_spans",
    "trailing_generation",
]
