"""Transfer to data-scarce domains: pre-train on a source, initialise target item embeddings,
choose what trains (strategies, adapters, LoRA) and train on the target with the shared loop.

- :mod:`warmrec.transfer.embeddings` -- target item-table initialisation (random, mean,
  popularity, text, item2vec);
- :mod:`warmrec.transfer.adapters` -- adapter-only directories (save, load on a base model); the
  bottleneck adapters and LoRA themselves (config + layer + injector, merge/unload) are network
  code in :mod:`warmrec.models.adapters`, re-exported here;
- :mod:`warmrec.transfer.strategies` -- scratch, fine-tune, freeze, adapters, LoRA,
  discriminative learning rates;
- :mod:`warmrec.transfer.transfer` -- :func:`transfer` and :func:`pretrain`.
"""

from warmrec.models.adapters import (
    AdapterConfig,
    LoraConfig,
    adapter_state_dict,
    inject_adapters,
    inject_lora,
    load_adapter_state,
    merge_and_unload,
    unload,
)
from warmrec.transfer.adapters import load_adapters, save_adapters
from warmrec.transfer.embeddings import METHODS, init_item_embeddings, titles_from_frame
from warmrec.transfer.strategies import STRATEGIES, StrategyOptions, apply_strategy
from warmrec.transfer.transfer import build_target_model, pretrain, transfer

__all__ = [
    "AdapterConfig",
    "LoraConfig",
    "METHODS",
    "STRATEGIES",
    "StrategyOptions",
    "adapter_state_dict",
    "apply_strategy",
    "build_target_model",
    "init_item_embeddings",
    "inject_adapters",
    "inject_lora",
    "load_adapter_state",
    "load_adapters",
    "merge_and_unload",
    "pretrain",
    "save_adapters",
    "titles_from_frame",
    "transfer",
    "unload",
]
