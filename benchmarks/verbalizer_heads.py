"""Which verbalizer learns on a backbone without an MLM head? (README, "The pipeline").

Trains the same soft prompt on the same data with two ways of scoring label words and prints the
test accuracy of each next to the majority-class baseline:

- cosine: 20 x cosine(mean-pooled output, mean-pooled encoding of the label words) (our default);
- tied:   dot product of the [MASK] output with the label words' tied input embeddings.

    TRANSFERBENCH_CACHE=... python benchmarks/verbalizer_heads.py [--task rt_sentiment] [--steps 150]
"""

from __future__ import annotations

import argparse
import time

import torch

from transferbench.model.backbone import Backbone
from transferbench.model.prompt import PromptConfig, Verbalizer, accuracy, encode_split, predict, train_prompt
from transferbench.tasks import load_suite, load_task, load_task_data


class TiedEmbeddingVerbalizer:
    """Label logit = <h_[MASK], mean tied input embedding of the label's words>."""

    def __init__(self, backbone: Backbone, label_words: list[list[str]]):
        embeddings = backbone.word_embeddings.weight
        ids = [[backbone.tokenizer.convert_tokens_to_ids(w) for w in words] for words in label_words]
        self.matrix = torch.stack([embeddings[i].mean(0) for i in ids]).detach()

    def logits(self, output) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return output.mask_hidden.float() @ self.matrix.T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="rt_sentiment")
    parser.add_argument("--suite", default="default", help="suite whose split sizes are used")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    spec = load_task(args.task)
    data = load_task_data(spec, load_suite(args.suite))
    backbone = Backbone("minilm")
    config = PromptConfig(steps=args.steps)
    train, dev, test = (encode_split(backbone, split, config.max_length) for split in (data.train, data.dev, data.test))
    words = [spec.verbalizers[label] for label in spec.label_names]
    heads = {"cosine": Verbalizer(backbone, words, config.cosine_scale), "tied": TiedEmbeddingVerbalizer(backbone, words)}
    print(f"task {args.task}: {len(train)} train / {len(test)} test, {args.steps} steps, seed {args.seed}, "
          f"majority-class test accuracy {data.majority_accuracy():.3f}")
    for name, verbalizer in heads.items():
        started = time.perf_counter()
        trained = train_prompt(backbone, train, dev, verbalizer, config, seed=args.seed)
        test_acc = accuracy(predict(backbone, trained.prompt, test, verbalizer, config), test.labels)
        print(f"{name:7s} test accuracy {test_acc:.3f}  dev {trained.dev_accuracy:.3f} (best step {trained.best_step})"
              f"  train {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
