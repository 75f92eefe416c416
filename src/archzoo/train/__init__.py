"""Training and fine-tuning: the loop, its data, checkpoints and resume, logs and plots.

    from archzoo.train import TrainSettings, train, resume
    result = train("llama-tiny", out="runs/tiny", settings=TrainSettings(steps=300))
    result = resume("runs/tiny")               # after an interruption: bit-exact continuation

``train(folder, ..., method=LoRATraining(rank=8) | PrefixTraining(length=16))`` fine-tunes
adapters on a frozen base (``archzoo train --lora / --prefix``). ``DEFAULT_CORPUS`` is the
text a run without ``text`` / ``ids`` trains on (``corpus/SOURCE.md``).
Lower level: ``Trainer(model, split, settings)`` runs steps on a model you hold;
``evaluate(model, ids, seq_len=...)`` gives loss and perplexity. Files, one idea each:
settings, data, schedule, precision, recompute (activation checkpointing), methods (what
trains, what is saved), loop, checkpoint, log, plot, progress, run (the run folder), evaluate.
"""

from .adapter_methods import LoRATraining, PrefixTraining
from .checkpoint import TrainerState
from .data import ByteTokenizer, Split, WindowSampler, tokenizer_for
from .evaluate import EvalResult, evaluate
from .loop import Trainer, next_token_loss
from .methods import METHODS, FullTraining
from .recompute import set_activation_checkpointing
from .run import DEFAULT_CORPUS, RunResult, resume, train
from .schedule import learning_rate
from .settings import PRECISIONS, TrainSettings

__all__ = [
    "DEFAULT_CORPUS",
    "METHODS",
    "PRECISIONS",
    "ByteTokenizer",
    "EvalResult",
    "FullTraining",
    "LoRATraining",
    "PrefixTraining",
    "RunResult",
    "Split",
    "TrainSettings",
    "Trainer",
    "TrainerState",
    "WindowSampler",
    "evaluate",
    "learning_rate",
    "next_token_loss",
    "resume",
    "set_activation_checkpointing",
    "tokenizer_for",
    "train",
]
